"""Progress state: the per-song rows follow engine events and never linger after a song ends."""

from __future__ import annotations

import io
import time
from typing import Any

from flowmusic_async import Event, SlotUsage
from flowmusic_async._cli._output import Output
from flowmusic_async._cli._progress import BatchProgress, RichProgress, make_progress

JOBID = "job:1234abcd-0000-user:1-a@example.com-bot:flowmusic"


def _event(kind: Any, **fields: Any) -> Event:
    return Event(kind=kind, at=time.time(), **fields)


def _capacity() -> dict[str, SlotUsage]:
    return {
        "a@example.com": SlotUsage(max_jobs=3, in_flight=1, healthy=True),
        "b@example.com": SlotUsage(max_jobs=2, in_flight=0, healthy=False, reason="596"),
    }


def test_a_song_row_lives_from_slot_to_completion() -> None:
    """Rows appear when a slot is taken and go when the poller reports the end by jobid."""
    progress = BatchProgress(2, 1.0, _capacity)
    progress.on_event(_event("placed", client_ref="r1", email="a@example.com", attempt=1))
    progress.on_event(_event("submitted", client_ref="r1", jobid=JOBID, email="a@example.com"))
    assert progress.state.songs["r1"].jobid == JOBID
    progress.on_event(_event("completed", jobid=JOBID, email="a@example.com"))
    assert progress.state.songs == {}


def test_a_refused_submission_does_not_leave_a_row_behind() -> None:
    """A 422 at submission has no jobid and no end event; its row must still go."""
    progress = BatchProgress(2, 1.0, _capacity)
    progress.on_event(_event("placed", client_ref="r1", email="a@example.com"))
    progress.on_event(_event("placed", client_ref="r2", email="b@example.com"))
    progress.on_outcome(False, resumed=False, text="refused", email="b@example.com")
    assert set(progress.state.songs) == {"r1"}
    assert progress.state.failed == 1


def test_rich_display_draws_songs_and_account_slots() -> None:
    """The rich view shows the overall bar, each song, and every account's slot usage."""
    stderr = io.StringIO()
    progress = make_progress(
        "rich", Output(stderr=stderr), total=2, expected_s=1.9, capacity=_capacity
    )
    progress.on_event(_event("submitted", client_ref="r1", jobid=JOBID, email="a@example.com"))
    progress.on_outcome(True, resumed=False, text="ok line 1")
    progress.close()
    text = stderr.getvalue()
    assert "1/2, 0 failed" in text
    assert "job 1234abcd" in text and "/1.9s on a@example.com" in text
    assert "a@example.com" in text and "out: 596" in text
    assert "ok line 1" in text


def test_json_mode_gets_no_progress_unless_asked() -> None:
    """Automation reading --json must see a quiet stderr by default."""
    progress = make_progress(
        "auto", Output(json_mode=True), total=1, expected_s=1.0, capacity=_capacity
    )
    assert type(progress) is BatchProgress


def test_rich_display_does_not_redraw_per_outcome() -> None:
    """The timer redraws; a redraw per outcome cost 18 ms of CPU per song in a big batch."""
    stderr = io.StringIO()
    progress = make_progress(
        "rich", Output(stderr=stderr), total=500, expected_s=1.0, capacity=_capacity
    )
    assert isinstance(progress, RichProgress)
    renders = 0
    real_render = progress.render

    def counting_render() -> Any:
        nonlocal renders
        renders += 1
        return real_render()

    progress.render = counting_render  # type: ignore[method-assign]
    for n in range(500):
        progress.on_event(_event("completed", client_ref=f"r{n}", jobid=f"job:{n}"))
        progress.on_outcome(True, resumed=False, text=f"ok line {n}")
    assert renders == 0
    progress.draw()  # what the timer does every REFRESH_S
    assert renders == 1
    progress.close()
    text = stderr.getvalue()
    assert all(f"ok line {n}\n" in text for n in (0, 250, 499))  # no outcome line is lost
    assert "500/500, 0 failed" in text
