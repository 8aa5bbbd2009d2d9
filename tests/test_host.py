"""The host (flowmusic_async/_host.py) owns the client's task groups: a client opens in one
task and closes in another, a cancelled open ends closed, and closing fails the waits still
open with their jobid and leaves their jobs running."""

from __future__ import annotations

import math
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import msgspec
import pytest
from mock_api import TOKEN
from server_view import server_states
from sim_helpers import deletes, served

from flowmusic_async import ClientClosedError, FlowMusic, JobHandle, SubmissionUncertain, Timing
from flowmusic_async.testing.pytest_plugin import MakeClient, MakeSim

SCALE = 0.01  # a 40-150 s song takes 0.4-1.5 s
LATENCY = 0.3  # real seconds the server takes before it handles any request
# The simulators this module's tests build (flowmusic_make_sim) start from these.
pytestmark = pytest.mark.flowmusic_sim(
    time_scale=SCALE, seed=5, latency=LATENCY, account_email="cancel{i}@example.com"
)


@pytest.mark.anyio
async def test_the_client_can_be_opened_in_one_task_and_closed_in_another(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """A bot's setup hook opens it, its commands use it, its shutdown hook closes it."""
    sim = flowmusic_make_sim(2, latency=0.0)
    async with served(sim) as url:
        fm = flowmusic_make_client(sim, base_url=url)
        holder: dict[str, Any] = {}

        async def setup_hook() -> None:
            await fm.open()

        async def command() -> None:
            holder["job"] = await fm.generate("across tasks")

        async def shutdown_hook() -> None:
            await fm.aclose()
            await fm.aclose()  # idempotent

        for step in (setup_hook, command, shutdown_hook):
            async with anyio.create_task_group() as tg:
                tg.start_soon(step)
        assert fm.closed and holder["job"].is_completed
        with pytest.raises(ClientClosedError):
            await fm.jobs.list()


@pytest.mark.anyio
async def test_async_with_entered_in_one_task_can_be_exited_in_another(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """`await fm.__aenter__()` in one task and `__aexit__` in another (httpx allows it too)."""
    sim = flowmusic_make_sim(1, latency=0.0)
    async with served(sim) as url:
        fm = flowmusic_make_client(sim, base_url=url)
        async with anyio.create_task_group() as tg:
            tg.start_soon(fm.__aenter__)
        assert not fm.closed and await fm.jobs.list() == {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(fm.__aexit__, None, None, None)
        assert fm.closed


@pytest.mark.anyio_backends("trio")
@pytest.mark.anyio
async def test_under_trio_the_client_opens_and_closes_in_different_tasks(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """The service host is a trio system task: no cancel scope crosses tasks."""
    sim = flowmusic_make_sim(1, latency=0.0)
    async with served(sim) as url:
        fm = flowmusic_make_client(sim, base_url=url)
        async with anyio.create_task_group() as tg:
            tg.start_soon(fm.open)
        job = await fm.generate("trio across tasks")
        async with anyio.create_task_group() as tg:
            tg.start_soon(fm.aclose)
    assert job.is_completed and fm.closed


@pytest.mark.anyio
async def test_a_client_cancelled_while_opening_closes_without_hanging(
    flowmusic_make_sim: MakeSim,
) -> None:
    """Cancelled in the middle of open(): the client ends closed, nothing is left running."""
    sim = flowmusic_make_sim(1, latency=0.0)
    fm = FlowMusic(token=sim.token, base_url=sim.base_url, transport=sim.transport())
    with anyio.fail_after(5), anyio.CancelScope() as scope:
        scope.cancel()  # the first checkpoint inside open() is cancelled
        await fm.open()
    with anyio.fail_after(5):
        await fm.aclose()
    assert fm.closed


@pytest.mark.anyio
async def test_closing_fails_open_waits_with_their_jobid_and_leaves_the_jobs_running(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Jobs nobody cancelled keep running (they are paid) and can be resumed by jobid."""
    sim = flowmusic_make_sim(3, latency=0.0)
    async with served(sim) as url:
        fm = flowmusic_make_client(sim, base_url=url)
        await fm.open()
        handles = [await fm.submit(f"left running {i}") for i in range(3)]
        errors: list[BaseException] = []

        async def wait(handle: Any) -> None:
            try:
                await handle
            except ClientClosedError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for handle in handles:
                tg.start_soon(wait, handle)
            await anyio.wait_all_tasks_blocked()
            await fm.aclose()
        states = await server_states(sim)
        assert sorted(fm.left_running) == sorted((h.jobid, h.email) for h in handles)
        async with flowmusic_make_client(sim, base_url=url) as again:
            resumed = await again.wait(handles[0].jobid)
    assert sorted(e.jobid for e in errors) == sorted(h.jobid for h in handles)  # type: ignore[attr-defined]
    assert all(e.email for e in errors)  # type: ignore[attr-defined]
    assert set(states.values()) == {"running"} and deletes(sim) == 0
    assert resumed.is_completed


@pytest.mark.flowmusic_sim(time_scale=0.002, seed=7, account_email="acct{i}@example.com")
@pytest.mark.anyio
async def test_closing_the_client_fails_outstanding_waits_clearly(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Clean shutdown: a wait in flight ends with ClientClosedError, not a hang."""
    sim = flowmusic_make_sim(1, time_scale=1.0)
    outcome: list[BaseException] = []
    waiting = anyio.Event()
    async with anyio.create_task_group() as tg, flowmusic_make_client(sim) as fm:
        handle = await fm.submit("never finishes in time")

        async def waiter() -> None:
            waiting.set()
            try:
                await handle
            except ClientClosedError as error:
                outcome.append(error)

        tg.start_soon(waiter)
        await waiting.wait()
    assert outcome and isinstance(outcome[0], ClientClosedError)


def _hanging_post_server(post_delay: float | None) -> tuple[httpx.MockTransport, anyio.Event]:
    """GET /accounts and GET /jobs answer empty (the server chooses accounts); the paid POST
    answers after `post_delay` seconds, or never (None)."""
    post_arrived = anyio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return httpx.Response(200, json={})
        post_arrived.set()
        await anyio.sleep(math.inf if post_delay is None else post_delay)
        return httpx.Response(
            201,
            json={"jobid": "job-1", "status": "pending", "email": "a@example.com"},
        )

    return httpx.MockTransport(handler), post_arrived


async def _close_while_a_post_is_on_its_way(
    post_delay: float | None, close_timeout: float
) -> tuple[float, BaseException | JobHandle, FlowMusic]:
    transport, post_arrived = _hanging_post_server(post_delay)
    timing = msgspec.structs.replace(Timing.scaled(0.01), close_timeout=close_timeout)
    fm = FlowMusic(token=TOKEN, transport=transport, timing=timing)
    outcome: list[BaseException | JobHandle] = []

    async def caller() -> None:
        try:
            outcome.append(await fm.submit("a song on its way"))
        except Exception as error:
            outcome.append(error)

    async with fm, anyio.create_task_group() as tg:
        tg.start_soon(caller)
        await post_arrived.wait()
        started = anyio.current_time()
        await fm.aclose()
        elapsed = anyio.current_time() - started
    return elapsed, outcome[0], fm


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio", "trio")
async def test_closing_waits_for_a_post_on_its_way_and_keeps_its_job() -> None:
    """A paid POST under way when the client closes finishes in the host's must-finish
    group: its caller gets the accepted job, which is left running, not lost."""
    elapsed, outcome, fm = await _close_while_a_post_is_on_its_way(0.3, close_timeout=10.0)
    assert isinstance(outcome, JobHandle) and outcome.jobid == "job-1"
    assert fm.left_running == [("job-1", "a@example.com")]
    assert elapsed < 5.0


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio", "trio")
async def test_closing_waits_at_most_close_timeout_for_a_post_that_never_answers() -> None:
    """Draining is bounded: after `close_timeout` the POST is cut short, and its caller learns
    that nobody can tell whether a job was created (it is not told "nothing was paid")."""
    elapsed, outcome, _ = await _close_while_a_post_is_on_its_way(None, close_timeout=0.5)
    assert isinstance(outcome, SubmissionUncertain)
    assert 0.4 <= elapsed < 5.0
