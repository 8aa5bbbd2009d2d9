"""Live progress of a batch on stderr: songs done, each song in flight, account slots in use.

The engine reports through event hooks (called inline on the event loop) and the batch loop
reports each outcome; both only update plain state here. Drawing happens elsewhere:
`RichProgress` redraws from that state on a timer task only (never from rich's own refresh
thread, so no state is read while the loop changes it; never per event or outcome, so its cost
does not grow with the batch), `PlainProgress` prints one line per milestone for logs and pipes.
Progress goes to stderr so that stdout carries only results.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from .._events import Event
from ._output import Output, rich_available

if TYPE_CHECKING:
    from .._client import FlowMusic

# Rows of in-flight songs drawn at most; 50 accounts x 16 slots would not fit a screen.
MAX_SONG_ROWS = 12
REFRESH_S = 0.2
BAR_WIDTH = 24


@dataclass
class SongState:
    """One song the engine is working on, keyed by its client_ref (or jobid)."""

    started: float  # monotonic; when the slot was taken
    email: str | None = None
    jobid: str | None = None
    attempt: int = 0


@dataclass
class BatchState:
    """What the display shows; updated by events and outcomes, read by the renderers."""

    total: int
    expected_s: float  # typical song duration, already scaled
    started: float = field(default_factory=time.monotonic)
    ok: int = 0
    failed: int = 0
    resumed: int = 0
    retries: int = 0
    songs: dict[str, SongState] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return self.ok + self.failed


CapacityGetter = Callable[[], Mapping[str, Any]]  # fm.capacity().accounts: email -> SlotUsage


def _secs(value: float) -> str:
    return f"{value:.1f}s" if value < 10 else f"{value:.0f}s"


def song_label(song: SongState) -> str:
    """A song's row label: its job's short id once the server has accepted it."""
    if song.jobid is None:
        return "submitting…"
    # "job:<uuid>-user:<uid>-<email>-bot:flowmusic" -> the uuid's first 8 characters
    return "job " + song.jobid.removeprefix("job:")[:8]


class BatchProgress:
    """Base: keeps BatchState current. Subclasses draw it; this one draws nothing.

    Args:
        total: songs in the batch.
        expected_s: how long a song usually takes (Timing.typical_job_seconds).
        capacity: fm.capacity().accounts, for the account rows.
    """

    def __init__(self, total: int, expected_s: float, capacity: CapacityGetter) -> None:
        self.state = BatchState(total=total, expected_s=expected_s)
        self.capacity = capacity

    def on_event(self, event: Event) -> None:
        """Event hook for fm.add_event_hook: track each song from slot to end."""
        key = event.client_ref or event.jobid
        if key is None:
            return
        songs = self.state.songs
        if event.kind in ("placed", "submitting", "submitted", "reconciled"):
            song = songs.get(key)
            if song is None:
                song = songs[key] = SongState(started=time.monotonic())
            song.email = event.email or song.email
            song.jobid = event.jobid or song.jobid
            song.attempt = event.attempt
        elif event.kind == "retrying":
            self.state.retries += 1
            if key in songs:
                songs[key].attempt = event.attempt + 1
        elif event.kind in ("completed", "failed", "cancelled", "timeout"):
            songs.pop(key, None)
            if event.jobid:  # the end may be reported by jobid alone
                for other, song in list(songs.items()):
                    if song.jobid == event.jobid:
                        del songs[other]
        self.milestone(event)

    def on_outcome(
        self,
        ok: bool,
        *,
        resumed: bool,
        text: str,
        jobid: str | None = None,
        email: str | None = None,
    ) -> None:
        """One request of the batch has its final outcome (the batch loop calls this)."""
        if ok:
            self.state.ok += 1
        else:
            self.state.failed += 1
            if jobid is None:
                self._forget_refused_submission(email)
        if resumed:
            self.state.resumed += 1
        self.finished(text)

    def _forget_refused_submission(self, email: str | None) -> None:
        # A submission refused for good (422, 400) ends without an engine event naming its
        # client_ref, so its row would linger. Drop the oldest row still waiting for a jobid
        # (on the same account when known); if that guess is wrong, the right song's next
        # event simply recreates its row.
        waiting = [
            (song.started, key)
            for key, song in self.state.songs.items()
            if song.jobid is None and (email is None or song.email == email)
        ]
        if waiting:
            del self.state.songs[min(waiting)[1]]

    # Hooks for subclasses.
    def milestone(self, event: Event) -> None:
        """An engine event worth reporting (plain output prints some)."""

    def finished(self, text: str) -> None:
        """An outcome line (plain output prints it)."""

    async def run(self) -> None:
        """Redraw until cancelled (rich only); started in the batch's task group."""

    def close(self) -> None:
        """Stop drawing and leave the final picture on screen."""


class PlainProgress(BatchProgress):
    """One line per submission, retry and outcome: readable in logs and CI output."""

    def __init__(
        self, total: int, expected_s: float, capacity: CapacityGetter, out: Output
    ) -> None:
        super().__init__(total, expected_s, capacity)
        self.out = out

    def milestone(self, event: Event) -> None:
        if event.kind == "submitted":
            self.out.note(f"  submitted {event.jobid} on {event.email}")
        elif event.kind == "retrying":
            reason = f": {event.error}" if event.error is not None else ""
            self.out.note(f"  retrying (attempt {event.attempt + 1}){reason}")

    def finished(self, text: str) -> None:
        s = self.state
        self.out.note(f"[{s.done}/{s.total}] {text}")


class RichProgress(BatchProgress):
    """Rich bars: overall, one per song in flight (elapsed against expected), one per account."""

    def __init__(
        self, total: int, expected_s: float, capacity: CapacityGetter, out: Output
    ) -> None:
        super().__init__(total, expected_s, capacity)
        from rich.console import Console
        from rich.live import Live

        self.out = out
        self.console = Console(file=out.stderr, force_terminal=True)
        # auto_refresh=False: rich's refresh thread would read state while the loop changes it.
        self.live = Live(console=self.console, auto_refresh=False, transient=False)
        self._pending: list[str] = []
        self.live.start()

    def finished(self, text: str) -> None:
        # Outcome lines scroll above the live area, like a log. They wait for the next timer
        # tick: printing redraws the whole live area, and doing that per outcome cost 18 ms
        # of CPU per song on a 2,000-song batch (benchmarks/bench_progress.py).
        self._pending.append(self.out.scrub(text))

    async def run(self) -> None:
        while True:
            self.draw()
            await anyio.sleep(REFRESH_S)

    def draw(self) -> None:
        """Print the outcome lines queued since the last draw, and redraw the live area once."""
        self.live.update(self.render(), refresh=not self._pending)
        if self._pending:
            lines, self._pending = self._pending, []
            # One print for all of them; the live area is redrawn below them as part of it.
            self.console.print("\n".join(lines), markup=False, highlight=False)

    def close(self) -> None:
        self.draw()
        self.live.stop()

    def render(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        grid = Table.grid(padding=(0, 1))
        grid.add_column(min_width=22, max_width=40, no_wrap=True)
        grid.add_column(width=BAR_WIDTH)
        grid.add_column(no_wrap=True, overflow="ellipsis")

        def row(label: str, total: float, done: float, text: str) -> None:
            bar = ProgressBar(total=max(total, 1e-9), completed=done, width=BAR_WIDTH)
            grid.add_row(label, bar, text)

        s = self.state
        now = time.monotonic()
        row(
            "[bold]songs[/]",
            max(s.total, 1),
            s.done,
            f"{s.done}/{s.total}, {s.failed} failed, {now - s.started:.0f}s",
        )
        songs = sorted(s.songs.values(), key=lambda song: song.started)
        for song in songs[:MAX_SONG_ROWS]:
            elapsed = now - song.started
            retry = f", try {song.attempt + 1}" if song.attempt else ""
            # A song may run past the typical time; its bar then waits at 99% rather than lie.
            row(
                f"  {song_label(song)}",
                s.expected_s,
                min(elapsed, s.expected_s * 0.99),
                f"{elapsed:.1f}/{_secs(s.expected_s)} on {song.email or '?'}{retry}",
            )
        if len(songs) > MAX_SONG_ROWS:
            grid.add_row(f"  … {len(songs) - MAX_SONG_ROWS} more in flight", "", "")
        for email, usage in sorted(self.capacity().items()):
            health = "" if usage.healthy else f"  out: {usage.reason or 'unhealthy'}"
            row(
                f"[dim]slots[/] {email}",
                usage.max_jobs,
                usage.in_flight,
                f"{usage.in_flight}/{usage.max_jobs}{health}",
            )
        return grid


def make_progress(
    mode: str,
    out: Output,
    *,
    total: int,
    expected_s: float,
    capacity: CapacityGetter,
    plain_by_default: bool = True,
) -> BatchProgress:
    """The display for --progress MODE; "auto" is rich on a terminal when rich is installed,
    else plain lines (or nothing, without `plain_by_default`).

    JSON mode gets no progress unless asked for explicitly, so automation sees a quiet stderr.
    """
    if mode == "auto":
        isatty = getattr(out.stderr, "isatty", None)
        if out.json_mode:
            mode = "off"
        elif isatty is not None and isatty() and rich_available():
            mode = "rich"
        else:
            mode = "plain" if plain_by_default else "off"
    if mode == "rich" and rich_available():
        return RichProgress(total, expected_s, capacity, out)
    if mode in ("plain", "rich"):
        return PlainProgress(total, expected_s, capacity, out)
    return BatchProgress(total, expected_s, capacity)


@asynccontextmanager
async def showing_progress(
    fm: FlowMusic,
    out: Output,
    mode: str,
    *,
    total: int,
    expected_s: float,
    plain_by_default: bool = True,
) -> AsyncIterator[BatchProgress]:
    """Show progress of the client's jobs while the body runs; report outcomes to the result.

    Args:
        fm: an entered client; its events feed the display.
        out: the output (progress goes to its stderr).
        mode: --progress: auto, rich, plain or off.
        total: songs expected.
        expected_s: the typical song duration (scaled), for the per-song bars.
        plain_by_default: in "auto" mode off a terminal, print plain lines (else nothing).
    """
    progress = make_progress(
        mode,
        out,
        total=total,
        expected_s=expected_s,
        capacity=lambda: fm.capacity().accounts,
        plain_by_default=plain_by_default,
    )
    fm.add_event_hook(progress.on_event)
    try:
        async with anyio.create_task_group() as display:
            display.start_soon(progress.run)
            try:
                yield progress
            finally:
                display.cancel_scope.cancel()
    finally:
        progress.close()
