"""What a run leaves behind when a signal stops it: the report printed on Ctrl-C or SIGTERM.

`SongEvents` is an event hook on the command's client. It follows each submission through
the library's events (`submitting`, `submitted` with the jobid, one terminal event) and never
looks inside the engine, so the report says what the library reported: jobs it cancelled
server-side, jobs still running (accepted, no end seen), submissions whose POST was in flight,
and songs never sent. `report` turns that into lines for people (stderr) and a JSON document.
"""

from __future__ import annotations

import logging
import shlex
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from .._errors import ClientClosedError
from .._events import Event
from ._exit import ExitCode
from ._output import Output

# A song's state as the events tell it.
_WAITING, _SENDING, _RUNNING = "waiting", "sending", "running"
_COMPLETED, _FAILED, _CANCELLED = "completed", "failed", "cancelled"


@dataclass
class Tracked:
    """One submission (keyed by client_ref) or job (by jobid) seen in the events."""

    state: str = _WAITING
    jobid: str | None = None
    email: str | None = None
    credits: float = 0.0  # what its job costs, once accepted (events say; 0 before)


class SongEvents:
    """Follows every job of one client through its events (an `fm.add_event_hook` hook)."""

    def __init__(self) -> None:
        self.songs: dict[str, Tracked] = {}
        self._by_jobid: dict[str, Tracked] = {}

    def on_event(self, event: Event) -> None:
        song = self._find(event)
        if song is None:
            return
        song.email = event.email or song.email
        if event.jobid and song.jobid is None:
            song.jobid = event.jobid
            self._by_jobid[event.jobid] = song
        kind = event.kind
        if event.credits is not None and (kind == "submitted" or song.jobid is not None):
            # Accepted: its reserved price; ended: what it is counted as having cost.
            song.credits = event.credits
        if kind in ("queued", "placed", "retrying"):
            song.state = _WAITING  # a retry follows an attempt that created no job
        elif kind == "submitting":
            song.state = _SENDING
        elif kind in ("submitted", "reconciled"):
            song.state = _RUNNING if song.jobid else _WAITING
        elif kind == "completed":
            song.state = _COMPLETED
        elif kind == "cancelled":
            song.state = _CANCELLED
        elif kind == "failed":
            # A wait ended by the client closing says nothing about the job: still running.
            closed = isinstance(event.error, ClientClosedError)
            song.state = _RUNNING if closed and song.jobid else _FAILED
        elif kind == "timeout":
            song.state = _RUNNING if song.jobid else _FAILED  # a timed-out job keeps running

    def _find(self, event: Event) -> Tracked | None:
        if event.jobid and event.jobid in self._by_jobid:
            return self._by_jobid[event.jobid]
        key = event.client_ref or event.jobid
        if key is None:
            return None
        return self.songs.setdefault(key, Tracked())

    def in_state(self, state: str) -> list[Tracked]:
        return [song for song in self.songs.values() if song.state == state]

    @property
    def credits_spent(self) -> float:
        """Credits of every job accepted so far (a cancelled one too: DELETE refunds nothing)."""
        return sum(song.credits for song in self.songs.values() if song.jobid)


@dataclass
class Interrupt:
    """The signal that stopped a run, and what the run needs to report on it."""

    signum: int | None = None
    tracker: SongEvents = field(default_factory=SongEvents)
    command: str | None = None
    journal: str | None = None
    total: int | None = None  # songs in a batch
    argv: Sequence[str] = ()

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "signal"

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.TERMINATED if self.signum == signal.SIGTERM else ExitCode.INTERRUPTED


class _LeftRunningInCliWords(logging.Filter):
    """The library's "closing with N job(s) still running" warning, as the CLI says it.

    Interrupted, the report lists every such job with `flowmusic wait`, so the warning is
    dropped. Otherwise it is put in one short line: the count, up to three jobids, and the CLI
    command that collects them (the library's wording cites `fm.wait`, which a CLI user has not
    got, and lists every jobid).
    """

    def __init__(self, interrupt: Interrupt) -> None:
        super().__init__()
        self._interrupt = interrupt

    def filter(self, record: logging.LogRecord) -> bool:
        jobids = getattr(record, "left_running", None)
        if not isinstance(jobids, list):
            return True
        if self._interrupt.signum is not None:
            return False
        shown = " ".join(shlex.quote(str(j)) for j in jobids[:3])
        more = f" (and {len(jobids) - 3} more)" if len(jobids) > 3 else ""
        record.msg = "%s left running (paid); collect with: flowmusic wait %s%s --out DIR"
        record.args = (_songs(len(jobids)), shown, more)
        return True


@contextmanager
def left_running_in_cli_words(interrupt: Interrupt) -> Iterator[None]:
    """Apply `_LeftRunningInCliWords` to the library's log for the length of a CLI run."""
    logger = logging.getLogger("flowmusic_async")
    words = _LeftRunningInCliWords(interrupt)
    logger.addFilter(words)
    try:
        yield
    finally:
        logger.removeFilter(words)


def rerun_command(argv: Sequence[str]) -> str:
    """The command line to run again, without a --token value (the variable is the safe way)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--token":
            skip = True
        elif not arg.startswith("--token="):
            kept.append(arg)
    return shlex.join(["flowmusic", *kept])


def report(out: Output, interrupt: Interrupt) -> None:
    """Say what was cancelled, what still runs, and how to resume or recover."""
    if interrupt.command == "simulate":  # the normal way to stop a server: nothing to report
        out.note(f"flowmusic: simulator stopped ({interrupt.name})")
        return
    tracker = interrupt.tracker
    cancelled = [s for s in tracker.in_state(_CANCELLED) if s.jobid]
    running = [s for s in tracker.in_state(_RUNNING) if s.jobid]
    sending = tracker.in_state(_SENDING)
    finished = len(tracker.in_state(_COMPLETED)) + len(tracker.in_state(_FAILED))
    not_started = None
    if interrupt.total is not None:
        known = len(cancelled) + len(running) + len(sending) + finished
        not_started = max(0, interrupt.total - known)
    journal = interrupt.journal
    resume = rerun_command(interrupt.argv) if journal else None

    if out.json_mode:
        out.json(
            {
                "type": "interrupted",
                "signal": interrupt.name,
                "cancelled": [s.jobid for s in cancelled],
                "running": [{"jobid": s.jobid, "email": s.email} for s in running],
                "in_flight": len(sending),
                "finished": finished,
                "not_started": not_started,
                "credits_spent": tracker.credits_spent,
                "resume": resume,
                "exit_code": int(interrupt.exit_code),
            }
        )
    lines = [f"flowmusic: interrupted by {interrupt.name}"]
    if cancelled:
        lines.append(
            f"  cancelled {_songs(len(cancelled))} server-side (their credits are not refunded):"
        )
        lines += [f"    {s.jobid}" for s in cancelled]
    if running:
        why = " (left for the journal)" if journal else ""
        lines.append(f"  still running server-side{why}, {_songs(len(running))}:")
        lines += [f"    {s.jobid}" + (f"  on {s.email}" if s.email else "") for s in running]
    if sending:
        lines.append(
            f"  {_songs(len(sending))} had a paid POST in flight: it may have created a job; "
            "see `flowmusic jobs list`"
        )
    if finished and interrupt.total is not None:
        lines.append(f"  {finished} of {interrupt.total} songs had finished")
    if not_started:
        lines.append(f"  {not_started} songs were not started (nothing paid for them)")
    if tracker.credits_spent:
        lines.append(f"  credits spent on the jobs accepted: {tracker.credits_spent:g}")
    if resume is not None:
        lines.append(f"  resume (finished songs are kept, running ones awaited): {resume}")
    elif running:
        shown = " ".join(shlex.quote(s.jobid or "") for s in running)
        jobids = shown if len(running) <= 3 else "JOBID... (the jobids above)"
        lines.append(f"  collect them: flowmusic wait {jobids} --out DIR")
        lines.append("  or stop them: flowmusic jobs cancel JOBID")
    if resume is None and interrupt.command == "batch":
        lines.append("  (a batch run with --journal PATH can be resumed instead of started over)")
    out.warn("\n".join(lines))


def _songs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"
