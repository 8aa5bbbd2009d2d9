"""The `flowmusic` command line: generate songs, run batches, manage jobs and accounts.

`main()` is the console-script entry point (and `python -m flowmusic_async`). It parses the
arguments, runs one subcommand under anyio, prints a typed error's message if one ends it,
and returns an exit code from one table (see `flowmusic --help`). `run()` is the same as a
coroutine, with a hidden `transport=` so tests can drive every command against the
in-process simulator.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import TextIO

import anyio
import httpx

from .._errors import FlowMusicError
from ._args import parse_args
from ._commands import COMMANDS, TOKEN_ENV, Command, Context
from ._exit import CommandError, ExitCode, exit_code_for
from ._output import Output

__all__ = ["main", "run"]


def main(
    argv: Sequence[str] | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> int:
    """Run the CLI and return its exit code (the console script passes it to sys.exit).

    Args:
        argv: the arguments without the program name; default sys.argv[1:].
        transport: an httpx transport to use instead of the network (tests).
    """
    try:
        return anyio.run(_run_positional, argv, transport)
    except KeyboardInterrupt:
        Output().note("flowmusic: interrupted")
        return ExitCode.INTERRUPTED
    except BaseException as exc:  # an exception group holding only Ctrl-C is still Ctrl-C
        if isinstance(_unwrap(exc), KeyboardInterrupt):
            Output().note("flowmusic: interrupted")
            return ExitCode.INTERRUPTED
        raise


async def _run_positional(
    argv: Sequence[str] | None, transport: httpx.AsyncBaseTransport | None
) -> int:
    """Run the command; Ctrl-C cancels it (running its cleanup) and exits 130.

    Ctrl-C is taken as a signal inside the event loop rather than left to surface as
    KeyboardInterrupt, which some Python versions (3.10's asyncio runner) turn into a bare
    CancelledError: the exit code must not depend on the interpreter.
    """
    if sys.platform == "win32":  # anyio has no signal receivers there; KeyboardInterrupt works
        return await run(argv, transport=transport)
    result: list[int] = []
    interrupted = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def watch_for_ctrl_c() -> None:
            with anyio.open_signal_receiver(signal.SIGINT) as signals:
                async for _ in signals:
                    interrupted.set()
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(watch_for_ctrl_c)
        result.append(await run(argv, transport=transport))
        tg.cancel_scope.cancel()
    if interrupted.is_set():
        Output().note("flowmusic: interrupted")
        return ExitCode.INTERRUPTED
    return result[0]


async def run(
    argv: Sequence[str] | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Parse `argv`, run the subcommand, return the exit code (see `main`)."""
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, message printed)
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    out = Output(
        json_mode=args.json,
        stdout=stdout,
        stderr=stderr,
        secrets=(args.token, os.environ.get(TOKEN_ENV)),
    )
    ctx = Context(args=args, out=out, transport=transport)
    try:
        return int(await _command(args.command)(ctx))
    except BaseException as exc:
        error = _unwrap(exc)
        if not isinstance(error, (FlowMusicError, CommandError)):
            raise
        report_error(out, error)
        return int(exit_code_for(error))


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
