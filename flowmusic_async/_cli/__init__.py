"""The `flowmusic` command line: generate songs, run batches, manage jobs and accounts.

`main()` is the console-script entry point (and `python -m flowmusic_async`). It parses the
arguments, runs one subcommand under anyio, prints a typed error's message if one ends it,
and returns an exit code from one table (see `flowmusic --help`). `run()` is the same as a
coroutine, with a hidden `transport=` so tests can drive every command against the
in-process simulator.

Ctrl-C (SIGINT) and SIGTERM are handled alike: the command is cancelled (the library cancels
what it started, within its bounds), a report says what was cancelled, what still runs and
how to resume or recover, and the exit code is 128 + the signal (130, 143). A second signal
during that cleanup exits at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TextIO

import anyio
import httpx

from .. import _logs
from .._errors import FlowMusicError
from ._args import TOKEN_ENV, parse_args
from ._commands import COMMANDS, Command, Context
from ._exit import CommandError, ExitCode, exit_code_for
from ._interrupt import Interrupt, left_running_in_cli_words, report
from ._output import Output

__all__ = ["main", "run"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def main(
    argv: Sequence[str] | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> int:
    """Run the CLI and return its exit code (the console script passes it to sys.exit).

    Args:
        argv: the arguments without the program name; default sys.argv[1:].
        transport: an httpx transport to use instead of the network (tests).
    """
    if argv is None:
        argv = sys.argv[1:]
    try:
        return anyio.run(_run_with_signals, argv, transport)
    except KeyboardInterrupt:
        Output().warn("flowmusic: interrupted")
        return ExitCode.INTERRUPTED
    except BaseException as exc:  # an exception group holding only Ctrl-C is still Ctrl-C
        if isinstance(_unwrap(exc), KeyboardInterrupt):
            Output().warn("flowmusic: interrupted")
            return ExitCode.INTERRUPTED
        raise


async def _run_with_signals(argv: Sequence[str], transport: httpx.AsyncBaseTransport | None) -> int:
    """Run the command; SIGINT or SIGTERM cancels it (running its cleanup) and is reported.

    Signals are taken inside the event loop rather than left to surface as KeyboardInterrupt,
    which some Python versions (3.10's asyncio runner) turn into a bare CancelledError: the
    exit code must not depend on the interpreter.
    """
    if sys.platform == "win32":  # anyio has no signal receivers there; KeyboardInterrupt works
        return await run(argv, transport=transport)
    interrupt = Interrupt(argv=tuple(argv))
    result: list[int] = []
    work = anyio.CancelScope()
    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            with anyio.open_signal_receiver(*_SIGNALS) as signals:
                async for signum in signals:
                    if interrupt.signum is not None:
                        # Second signal: the user does not want to wait for the cleanup.
                        Output().warn("flowmusic: second signal, exiting without cleanup")
                        os._exit(interrupt.exit_code)
                    interrupt.signum = signum
                    work.cancel()

        tg.start_soon(watch_signals)
        with work:
            result.append(await run(argv, transport=transport, interrupt=interrupt))
        tg.cancel_scope.cancel()
    if interrupt.signum is not None:
        return interrupt.exit_code
    return result[0]


async def run(
    argv: Sequence[str] | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    interrupt: Interrupt | None = None,
) -> int:
    """Parse `argv`, run the subcommand, return the exit code (see `main`).

    Args:
        interrupt: set by the signal handler of `main`; when the run is cancelled because of
            it, the report of what the run leaves behind is printed here.
    """
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, message printed)
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    out = Output(
        json_mode=args.json,
        stdout=stdout,
        stderr=stderr,
        secrets=(args.token, os.environ.get(TOKEN_ENV)),
        quiet=args.quiet,
        wide=args.wide,
    )
    interrupt = interrupt if interrupt is not None else Interrupt()
    interrupt.command = args.command
    ctx = Context(args=args, out=out, transport=transport, interrupt=interrupt)
    try:
        with _logging(out, args.verbose, args.quiet), left_running_in_cli_words(interrupt):
            code = int(await _command(args.command)(ctx))
    except BaseException as exc:
        error = _unwrap(exc)
        if interrupt.signum is not None and not isinstance(error, (FlowMusicError, CommandError)):
            # Cancelled by the signal (whatever shape the cancellation took on its way out).
            report(out, interrupt)
            raise
        if not isinstance(error, (FlowMusicError, CommandError)):
            raise
        report_error(out, error)
        if interrupt.signum is not None:  # an error on the way out of a cancelled command
            report(out, interrupt)
            return int(interrupt.exit_code)
        return int(exit_code_for(error))
    if interrupt.signum is not None:  # the signal landed as the command was finishing
        report(out, interrupt)
        return int(interrupt.exit_code)
    return code


def _logging(out: Output, verbose: int, quiet: bool) -> AbstractContextManager[None]:
    """Library warnings on stderr as `flowmusic: WARNING: ...`; -v/-vv (or FLOWMUSIC_LOG)
    add info/debug records, with timestamps; -q keeps errors only."""
    from_env = _logs.configure_from_env(apply=False) or logging.WARNING
    asked = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    level = logging.ERROR if quiet else min(from_env, asked)
    if level >= logging.WARNING:
        fmt = "flowmusic: %(levelname)s: %(message)s"
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    return _logs.enabled(level, fmt=fmt, stream=out.stderr)


def _command(name: str) -> Command:
    if name in ("demo", "simulate"):
        # Imported on demand: only these two need the simulator package.
        from . import _demo

        return _demo.demo if name == "demo" else _demo.simulate
    return COMMANDS[name]


def report_error(out: Output, error: FlowMusicError | CommandError) -> None:
    """The error's own message on stderr; in JSON mode also a JSON document on stdout."""
    from ._runner import error_document

    if out.json_mode:
        out.json({"error": error_document(error)})
    out.error(str(error))


def _unwrap(error: BaseException) -> BaseException:
    # Task groups wrap what ends them in exception groups; a group of one is that one error.
    while True:
        inner = getattr(error, "exceptions", None)
        if not (isinstance(inner, tuple) and len(inner) == 1):
            return error
        error = inner[0]
