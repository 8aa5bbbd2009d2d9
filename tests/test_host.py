"""The host (flowmusic_async/_host.py) owns the client's task groups: a client opens in one
task and closes in another, a cancelled open ends closed, and closing fails the waits still
open with their jobid and leaves their jobs running."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest
from server_view import server_states
from sim_helpers import deletes, served

from flowmusic_async import ClientClosedError, FlowMusic
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
