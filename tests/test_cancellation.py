"""Cancellation the way asyncio apps do it: Task.cancel (once, twice), wait_for, timeout, trio.

Every test runs the simulator as a real loopback HTTP server, so a request that has left keeps
being processed whatever happens to the client (as on the real network), and judges by the
simulator's own counters and job states, not by what the client believes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest
from server_view import server_states
from sim_helpers import deletes, served

from flowmusic_async import Event, FlowMusic, JobFailed, NotFoundError, Timing
from flowmusic_async.testing import Simulator
from flowmusic_async.testing.pytest_plugin import MakeClient, MakeSim

SCALE = 0.01  # a 40-150 s song takes 0.4-1.5 s
LATENCY = 0.3  # real seconds the server takes before it handles any request
# The simulators this module's tests build (flowmusic_make_sim) start from these.
pytestmark = pytest.mark.flowmusic_sim(
    time_scale=SCALE, seed=5, latency=LATENCY, account_email="cancel{i}@example.com"
)


class Recorder:
    """Collects events and lets a test wait for the first one of a kind."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._waiting: dict[str, anyio.Event] = {}

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if event.kind in self._waiting:
            self._waiting[event.kind].set()

    async def first(self, kind: str, timeout: float = 10.0) -> None:
        if any(e.kind == kind for e in self.events):
            return
        self._waiting[kind] = anyio.Event()
        with anyio.fail_after(timeout):
            await self._waiting[kind].wait()

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for the simulator to reach a state (it serves requests in its own tasks)."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


def posts_answered(sim: Simulator) -> int:
    return sum(n for (ep, _), n in sim.stats.requests.items() if ep == "POST /music")


def native_task(coro: Any) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(coro)


async def cancelled_result(task: asyncio.Task[Any]) -> BaseException:
    """The exception the task ended with (its cancellation, or whatever replaced it)."""
    try:
        await task
    except BaseException as exc:  # the assertion is about which one it is
        return exc
    raise AssertionError("the task was expected to end with an exception")


# ----- Task.cancel() while the paid POST's answer is on its way ---------------------------------


@pytest.mark.anyio
async def test_task_cancel_during_the_post_cancels_the_job_that_post_created(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """A bot's task is cancelled while POST /music is in flight: the paid job is deleted."""
    sim = flowmusic_make_sim(2)
    rec = Recorder()
    async with served(sim) as url:
        async with flowmusic_make_client(sim, base_url=url, event_hooks=[rec]) as fm:
            task = native_task(fm.generate("cancelled while posting"))
            await rec.first("submitting")
            await anyio.sleep(LATENCY / 3)  # the request is out; the server is working on it
            task.cancel()
            error = await cancelled_result(task)
        await until(lambda: posts_answered(sim) == 1)  # the request had left: it is served
        states = await server_states(sim)
    assert isinstance(error, asyncio.CancelledError)
    assert sim.stats.jobs_created == 1
    assert deletes(sim) == 1
    assert list(states.values()) == ["user_cancelled"]
    [submitted] = [e for e in rec.events if e.kind == "submitted"]
    assert submitted.jobid in states  # the engine learned the jobid although the caller left


@pytest.mark.anyio
async def test_a_second_task_cancel_during_the_delete_does_not_break_the_cleanup(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """discord.py cancels twice on shutdown: the job is cancelled and reported exactly once."""
    sim = flowmusic_make_sim(2, latency=0.0)
    rec = Recorder()
    async with served(sim) as url:
        async with flowmusic_make_client(sim, base_url=url, event_hooks=[rec]) as fm:
            task = native_task(fm.generate("cancelled twice"))
            await rec.first("submitted")
            sim.faults.latency_s = LATENCY  # the DELETE of the cleanup will be slow
            task.cancel()
            await anyio.sleep(LATENCY / 3)  # the DELETE is on its way: cancel again
            task.cancel()
            error = await cancelled_result(task)
        await until(lambda: deletes(sim) == 1)
        states = await server_states(sim)
    assert isinstance(error, asyncio.CancelledError)
    assert sim.stats.jobs_created == 1
    assert list(states.values()) == ["user_cancelled"]
    [submitted] = [e for e in rec.events if e.kind == "submitted"]
    ends = [e for e in rec.events if e.kind in ("completed", "failed", "cancelled")]
    assert [(e.kind, e.jobid) for e in ends] == [("cancelled", submitted.jobid)]


async def warmed_up(fm: FlowMusic, sim: Simulator) -> None:
    """One song without latency, so the account list is known; then every request is slow."""
    await fm.generate("warm-up")
    sim.faults.latency_s = LATENCY


def slow_accounts_refresh() -> Timing:
    return msgspec.structs.replace(Timing.scaled(SCALE), accounts_refresh=600.0)


@pytest.mark.anyio
async def test_asyncio_wait_for_times_out_and_the_job_is_cancelled_server_side(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """`asyncio.wait_for(fm.generate(...), t)` raises TimeoutError and leaves nothing running."""
    sim = flowmusic_make_sim(2, latency=0.0)
    async with served(sim) as url:
        async with flowmusic_make_client(sim, base_url=url, timing=slow_accounts_refresh()) as fm:
            await warmed_up(fm, sim)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(fm.generate("wait_for"), LATENCY / 3)
        await until(lambda: posts_answered(sim) == 2)
        states = await server_states(sim)
    assert sim.stats.jobs_created == 2 and deletes(sim) == 1
    assert sorted(states.values()) == ["completed", "user_cancelled"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is new in 3.11")
@pytest.mark.anyio
async def test_asyncio_timeout_block_cancels_the_job_and_becomes_timeout_error(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """`async with asyncio.timeout(t)` around generate: TimeoutError out, job cancelled."""
    sim = flowmusic_make_sim(2, latency=0.0)
    async with served(sim) as url:
        async with flowmusic_make_client(sim, base_url=url, timing=slow_accounts_refresh()) as fm:
            await warmed_up(fm, sim)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(LATENCY / 3):  # type: ignore[attr-defined]
                    await fm.generate("asyncio.timeout")
        await until(lambda: posts_answered(sim) == 2)
        states = await server_states(sim)
    assert sim.stats.jobs_created == 2 and deletes(sim) == 1
    assert sorted(states.values()) == ["completed", "user_cancelled"]


@pytest.mark.anyio
async def test_task_cancel_while_waiting_for_the_song_deletes_it(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Cancelled after acceptance, during the long wait: DELETE /jobs/{jobid}, slot freed."""
    sim = flowmusic_make_sim(1, latency=0.0)
    rec = Recorder()
    async with served(sim) as url:
        async with flowmusic_make_client(sim, base_url=url, event_hooks=[rec]) as fm:
            task = native_task(fm.generate("cancelled while waiting"))
            await rec.first("submitted")
            task.cancel()
            error = await cancelled_result(task)
            assert deletes(sim) == 1  # done before the caller was released
            assert fm.capacity().accounts["cancel0@example.com"].in_flight == 0
        states = await server_states(sim)
    assert isinstance(error, asyncio.CancelledError)
    assert list(states.values()) == ["user_cancelled"]


@pytest.mark.serial
@pytest.mark.anyio
async def test_a_failing_delete_does_not_replace_the_cancellation(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """The cleanup's DELETE fails: the caller still gets its CancelledError, within the bound."""
    sim = flowmusic_make_sim(1, latency=0.0)
    sim.faults.error_rate["DELETE /jobs/{jobid}"] = 1.0
    rec = Recorder()
    timing = Timing.scaled(SCALE)
    async with (
        served(sim) as url,
        flowmusic_make_client(sim, base_url=url, event_hooks=[rec], timing=timing) as fm,
    ):
        task = native_task(fm.generate("undeletable"))
        await rec.first("submitted")
        started = anyio.current_time()
        task.cancel()
        error = await cancelled_result(task)
        released_after = anyio.current_time() - started
        await rec.first("cancel_failed")
    assert isinstance(error, asyncio.CancelledError)
    assert released_after < timing.cleanup_timeout + 1.0
    [failed] = [e for e in rec.events if e.kind == "cancel_failed"]
    assert failed.jobid and failed.error is not None


# ----- closing the client while work is under way -------------------------------------------------


@pytest.mark.anyio
async def test_cancelling_a_task_group_around_the_client_deletes_every_accepted_job(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Ctrl-C shape: the scope around `async with FlowMusic()` is cancelled with songs running.

    The callers' cleanups (DELETEs) run before the client's background work is torn down.
    """
    sim = flowmusic_make_sim(5, latency=0.0)
    rec = Recorder()
    async with served(sim) as url:
        with anyio.CancelScope() as scope:
            async with (
                anyio.create_task_group() as tg,
                flowmusic_make_client(sim, base_url=url, event_hooks=[rec]) as fm,
            ):
                for i in range(5):
                    tg.start_soon(fm.generate, f"interrupted {i}")
                while rec.kinds().count("submitted") < 5:
                    await rec.first("submitted")
                    await anyio.sleep(0.01)
                scope.cancel()
                await anyio.sleep_forever()
        states = await server_states(sim)
    assert sim.stats.jobs_created == 5
    assert sorted(states.values()) == ["user_cancelled"] * 5
    assert deletes(sim) == 5


# ----- trio ------------------------------------------------------------------------------------


@pytest.mark.anyio_backends("trio")
@pytest.mark.anyio
async def test_under_trio_a_cancelled_scope_during_the_post_cancels_the_job(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Structured cancellation on trio: the POST's job is deleted, the client shuts down clean."""
    sim = flowmusic_make_sim(2)
    rec = Recorder()
    async with served(sim) as url:
        async with flowmusic_make_client(sim, base_url=url, event_hooks=[rec]) as fm:
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(fm.generate, "trio cancel")
                    await rec.first("submitting")
                    scope.cancel()
        states = await server_states(sim)
    assert sim.stats.jobs_created == 1 and deletes(sim) == 1
    assert list(states.values()) == ["user_cancelled"]


# ----- waiting ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_handle_awaited_after_its_deadline_returns_the_job_that_completed(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """The deadline limits the wait, not the answer: a known result is returned late too."""
    sim = flowmusic_make_sim(1, latency=0.0)
    async with served(sim) as url, flowmusic_make_client(sim, base_url=url) as fm:
        handle = await fm.submit("late reader", deadline=3.0)
        job = await handle
        await anyio.sleep(max(0.0, handle.accepted_at + 3.0 - anyio.current_time()) + 0.1)
        assert (await handle).jobid == job.jobid
        assert (await handle.result()).is_completed


@pytest.mark.anyio
async def test_every_waiter_gets_its_own_exception_object(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Six tasks wait on one failed job: six distinct exceptions, same class and fields."""
    sim = flowmusic_make_sim(1, latency=0.0, job_failure_rate=1.0)
    caught: list[BaseException] = []
    async with served(sim) as url, flowmusic_make_client(sim, base_url=url) as fm:
        handle = await fm.submit("fails for everyone")

        async def wait() -> None:
            try:
                await handle
            except JobFailed as exc:
                caught.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(wait)
    assert len(caught) == 6 and len({id(e) for e in caught}) == 6
    assert {e.jobid for e in caught} == {handle.jobid}  # type: ignore[attr-defined]
    assert all(_frames(e) < 10 for e in caught)


@pytest.mark.anyio
async def test_waiters_of_an_unknown_job_each_get_their_own_not_found(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """One 404 shared by several waiters is not one object raised in several tasks."""
    sim = flowmusic_make_sim(1, latency=0.0)
    caught: list[BaseException] = []
    uid = sim.token.split("-")[0]  # "user:<digits>": the job would be ours, but is unknown
    missing = f"job:00000000-0000-4000-8000-000000000000-{uid}-x@example.com-bot:flowmusic"
    async with served(sim) as url, flowmusic_make_client(sim, base_url=url) as fm:

        async def wait() -> None:
            try:
                await fm.wait(missing)
            except NotFoundError as exc:
                caught.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(wait)
    assert len(caught) == 4 and len({id(e) for e in caught}) == 4


def _frames(error: BaseException) -> int:
    tb, count = error.__traceback__, 0
    while tb is not None:
        count, tb = count + 1, tb.tb_next
    return count


Hook = Callable[[Event], None]


# ----- batches and many jobs ------------------------------------------------------------------


@pytest.mark.anyio
async def test_leaving_a_batch_early_sends_no_new_paid_post(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Once the consumer leaves, no POST leaves: slots freed by the teardown are not refilled."""
    sim = flowmusic_make_sim(4, 4, latency=0.0)
    rec = Recorder()
    async with served(sim) as url:
        prompts = [f"left early {i}" for i in range(120)]
        async with (
            flowmusic_make_client(sim, base_url=url, event_hooks=[rec]) as fm,
            fm.generate_many(prompts) as outcomes,
        ):
            async for _first in outcomes:
                left_at = time.time()
                break
        states = await server_states(sim)
    posts = [e for e in rec.events if e.kind == "submitting"]
    assert posts and all(e.at <= left_at for e in posts)
    assert sim.stats.jobs_created == len(posts)
    assert "running" not in states.values()  # every job left behind was cancelled
    # One DELETE per job left running (a job may complete just before its DELETE lands).
    cancelled = sum(1 for state in states.values() if state == "user_cancelled")
    assert cancelled <= deletes(sim) <= sim.stats.jobs_created - 1


@pytest.mark.anyio
async def test_leaving_a_batch_cancels_its_jobs_a_chunk_per_turn_of_the_loop(
    monkeypatch: pytest.MonkeyPatch, flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Hundreds of jobs in progress must not all run their cleanup in one turn of the event
    loop (a bot sharing it would freeze): with chunks of 4, 16 jobs take several turns, and
    every one of them is still cancelled server-side."""
    import flowmusic_async._batch as batch_module
    from flowmusic_async._tracker import JobTracker

    monkeypatch.setattr(batch_module, "CANCEL_CHUNK", 4)
    turns = 0
    asked_at: dict[str, int] = {}  # jobid -> the turn its cancellation was first asked for
    request_cancel = JobTracker.request_cancel

    def spy(self: JobTracker, watch: Any) -> anyio.Event:
        asked_at.setdefault(watch.jobid, turns)
        return request_cancel(self, watch)

    monkeypatch.setattr(JobTracker, "request_cancel", spy)

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await anyio.lowlevel.checkpoint()
            turns += 1

    sim = flowmusic_make_sim(16, latency=0.0)
    async with served(sim) as url, flowmusic_make_client(sim, base_url=url) as fm:
        async with anyio.create_task_group() as tg:
            tg.start_soon(count_turns)
            async with fm.generate_many([f"chunked {i}" for i in range(16)]):
                while sim.stats.jobs_created < 16:
                    await anyio.sleep(0.01)
                asked_at.clear()
                # Leaving before any song can end: 16 jobs in progress.
            tg.cancel_scope.cancel()
        states = await server_states(sim)
    assert len(asked_at) == 16
    turns_seen = list(asked_at.values())
    per_turn = [turns_seen.count(turn) for turn in sorted(set(turns_seen))]
    # The counter task runs once per turn but may land in the middle of a chunk, so a turn
    # can see the end of one chunk and the start of the next: at most two chunks' worth.
    # Without chunks (all 16 in one turn) this read [15, 1].
    assert max(per_turn) <= 8 and len(per_turn) >= 3, per_turn
    assert list(states.values()).count("user_cancelled") == 16


@pytest.mark.anyio
async def test_a_batch_whose_task_is_cancelled_twice_still_cancels_every_running_job(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """A second Task.cancel() pierces anyio's shields at the next checkpoint, so leaving a
    batch hands its running jobs to the client before any: none is left running. (When the
    DELETEs were asked for after a checkpoint, all 8 jobs here ran on, paid and unwatched.)"""
    sim = flowmusic_make_sim(8, latency=0.0)
    async with served(sim) as url, flowmusic_make_client(sim, base_url=url) as fm:

        async def consume() -> None:
            async with fm.generate_many([f"cancelled twice {i}" for i in range(30)]) as outcomes:
                async for _outcome in outcomes:
                    pass

        task = native_task(consume())
        await until(lambda: sim.stats.jobs_created >= 8)
        task.cancel()
        await asyncio.sleep(0)  # the first cancellation reaches the batch's exit
        task.cancel()
        assert isinstance(await cancelled_result(task), asyncio.CancelledError)
        await until(lambda: deletes(sim) >= sim.stats.jobs_created - 1)
        states = await server_states(sim)
    assert "running" not in states.values(), states
    assert list(states.values()).count("user_cancelled") >= sim.stats.jobs_created - 1


@pytest.mark.anyio
async def test_every_job_gets_exactly_one_terminal_event_under_random_cancellation(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """60 songs, about half cancelled at random moments (anyio scopes and Task.cancel)."""
    sim = flowmusic_make_sim(8, 8, latency=0.0)
    rec = Recorder()
    rng = random.Random(4)
    async with (
        served(sim) as url,
        flowmusic_make_client(sim, base_url=url, event_hooks=[rec]) as fm,
    ):

        async def one(i: int) -> None:
            with anyio.move_on_after(rng.uniform(0.0, 2.0) if i % 2 else 60):
                with contextlib.suppress(JobFailed):
                    await fm.generate(f"random cancel {i}")

        async def native(i: int) -> None:
            task = native_task(fm.generate(f"native cancel {i}"))
            await anyio.sleep(rng.uniform(0.0, 2.0))
            task.cancel()
            await cancelled_result(task) if not task.done() else None

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(one, i)
            for i in range(20):
                tg.start_soon(native, i)
    states = await server_states(sim)
    by_ref: dict[str, list[Event]] = {}
    for event in rec.events:
        assert event.client_ref, event
        by_ref.setdefault(event.client_ref, []).append(event)
    assert len(by_ref) == 60
    for ref, events in by_ref.items():
        ends = [e for e in events if e.kind in ("completed", "failed", "cancelled")]
        assert len(ends) == 1, (ref, [e.kind for e in events])
        accepted = [i for i, e in enumerate(events) if e.kind == "submitted"]
        if accepted:
            assert all(e.jobid for e in events[accepted[0] :]), (ref, events)
            jobid = events[accepted[0]].jobid
            assert jobid is not None
            expected = {"completed": "completed", "cancelled": "user_cancelled"}
            assert states[jobid] == expected.get(ends[0].kind, states[jobid])
    assert "running" not in states.values()


@pytest.mark.anyio
async def test_a_post_still_waiting_for_a_connection_when_its_caller_leaves_is_not_sent(
    monkeypatch: pytest.MonkeyPatch, flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """A submission that has its slot but waits for a free place among the API requests in
    flight has not sent anything: its caller leaving must keep it from ever leaving (a POST
    sent then is paid for a job nobody wants, and DELETE refunds nothing)."""
    import httpx

    sim = flowmusic_make_sim(4, latency=0.0)
    release = anyio.Event()
    rec = Recorder()
    inner_send = httpx.AsyncHTTPTransport.handle_async_request

    async def send(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> Any:
        if request.method == "GET" and request.url.path.endswith("/jobs/job:held"):
            await release.wait()  # holds its place among the requests in flight
        return await inner_send(self, request)

    # In a lane's connection pool: past the point where the lanes gave it a place.
    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", send)

    async def held_read(fm: FlowMusic) -> None:
        with contextlib.suppress(Exception):
            await fm.jobs.get("job:held")

    async with (
        served(sim) as url,
        flowmusic_make_client(sim, base_url=url, event_hooks=[rec]) as fm,
    ):
        await fm.generate("warm up")  # the accounts read, before every place is taken
        rec.events.clear()
        async with anyio.create_task_group() as tg:
            for _ in range(200):  # more than every place: the rest queue behind them
                tg.start_soon(held_read, fm)
            await anyio.sleep(0.05)
            async with anyio.create_task_group() as caller:
                caller.start_soon(fm.generate, "queued behind the reads")
                await rec.first("placed")  # it has its slot; its POST waits for a place
                await anyio.sleep(0.05)
                caller.cancel_scope.cancel()  # the caller leaves
            release.set()
        await anyio.sleep(0.2)
    assert "submitting" not in rec.kinds()  # "on its way" only once it has its place
    assert rec.kinds().count("cancelled") == 1  # its outcome: nothing was paid
    assert sim.stats.jobs_created == 1  # the warm-up's: the queued POST never left
