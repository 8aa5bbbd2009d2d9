"""The waiting room: a batch's accepted requests, held as records until their jobs end."""

from __future__ import annotations

from typing import Any, cast

import anyio
import pytest

from flowmusic_async import FlowMusicError, JobTimeout
from flowmusic_async._handles import JobHandle, watch_of
from flowmusic_async._models import Job
from flowmusic_async._waiting import Waiting, WaitingRoom
from flowmusic_async._watch import Watch


class FakeTracker:
    """The two tracker calls the room makes, without a client behind them."""

    def result_of(self, watch: Watch) -> Job:
        assert watch.error is not None  # these tests end watches with an error
        raise watch.error

    def deadline_passed(self, watch: Watch, *, deadline: float, email: str | None) -> JobTimeout:
        return JobTimeout(watch.jobid, email=email)


def waiting(jobid: str, *, deadline_in: float) -> Waiting:
    watch = Watch(jobid, "a@example.com", owned=True, check_from=0.0)
    handle = JobHandle(
        cast(Any, FakeTracker()), watch, email="a@example.com", client_ref=None, timeout=deadline_in
    )
    return Waiting(0, jobid, {"prompt": jobid}, handle, token=object())


def room_and_ends() -> tuple[WaitingRoom, list[tuple[str, str]]]:
    ends: list[tuple[str, str]] = []

    def on_end(w: Waiting, job: Job | None, error: FlowMusicError | None) -> None:
        ends.append((w.key, type(error).__name__))

    return WaitingRoom(cast(Any, FakeTracker()), on_end), ends


@pytest.mark.anyio
async def test_each_request_is_handed_over_once_by_its_job_or_its_deadline() -> None:
    """A job that ends hands its request over at once; the others as their deadlines pass,
    earliest first; a job ending after its deadline hands nothing over a second time."""
    room, ends = room_and_ends()
    late = waiting("late", deadline_in=0.15)
    early = waiting("early", deadline_in=0.05)
    ended = waiting("ended", deadline_in=0.1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(room.run_deadlines)
        for w in (late, early, ended):  # parked in another order than their deadlines
            assert room.park(w)
        watch_of(ended.handle).resolve(error=FlowMusicError("failed", jobid="ended"))
        assert ends == [("ended", "FlowMusicError")]
        await anyio.sleep(0.3)
        watch_of(late.handle).resolve(error=FlowMusicError("failed late", jobid="late"))  # too late
        room.stop()  # empty now: the timer returns and the task group closes
    assert ends == [
        ("ended", "FlowMusicError"),
        ("early", "JobTimeout"),
        ("late", "JobTimeout"),
    ]
    assert len(room) == 0


@pytest.mark.anyio
async def test_the_deadline_heap_drops_requests_that_ended() -> None:
    """With the default 20-minute deadline, ended requests must not pile up in the heap."""
    room, ends = room_and_ends()
    parked = [waiting(f"job{i}", deadline_in=1200) for i in range(500)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(room.run_deadlines)
        for w in parked:
            room.park(w)
        for w in parked[:490]:
            watch_of(w.handle).resolve(error=FlowMusicError("failed", jobid=w.key))
        room.park(waiting("earliest", deadline_in=0.01))  # wakes the timer, which compacts
        await anyio.sleep(0.1)
        assert len(room) == 10 and len(room._deadlines) <= 2 * 10 + 64
        tg.cancel_scope.cancel()
    assert len(ends) == 491


@pytest.mark.anyio
async def test_a_request_parked_after_the_room_was_left_is_refused() -> None:
    """The batch was left: nothing would ever hand it over, so its caller must deal with it."""
    room, ends = room_and_ends()
    first = waiting("first", deadline_in=60)
    assert room.park(first)
    assert room.leave() == [first]
    assert not room.park(waiting("late", deadline_in=60))
    watch_of(first.handle).resolve(error=FlowMusicError("failed", jobid="first"))
    assert ends == []  # a left request is the leaver's: its end is not handed over


@pytest.mark.anyio
async def test_a_listener_that_raises_does_not_keep_the_others_from_hearing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    heard: list[str] = []

    def broken(watch: Watch) -> None:
        raise RuntimeError("listener bug")

    watch = Watch("job1", None, owned=False, check_from=0.0)
    watch.add_listener(broken)
    watch.add_listener(lambda w: heard.append(w.jobid))
    watch.resolve(error=FlowMusicError("failed", jobid="job1"))
    assert heard == ["job1"] and watch.done.is_set()
    assert "a listener of job job1 failed" in caplog.text
