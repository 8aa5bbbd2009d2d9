"""Webhook replays cost at most one read per job: reads of one job are coalesced, and a job
that has ended is not read again. Judged by the simulator's request counters."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import msgspec
import pytest

from flowmusic_async import FlowMusic, Timing
from flowmusic_async.testing import SimAccount, Simulator

pytestmark = pytest.mark.anyio

SCALE = 0.002
REPLAYS = 2_000


def gets_of_jobs(sim: Simulator) -> int:
    return sum(n for (ep, _), n in sim.stats.requests.items() if ep == "GET /jobs/{jobid}")


class Latency(httpx.AsyncBaseTransport):
    """The simulator 50 ms away: a read is in flight while the other replays arrive (in
    process, a read would otherwise finish before the next task even starts)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.05)
        return await self.inner.handle_async_request(request)


def simulator_keeping_callbacks() -> tuple[Simulator, list[bytes], anyio.Event]:
    """A simulator whose webhook callbacks are kept (their bodies, and an event set at the
    first), instead of being delivered anywhere."""
    received: list[bytes] = []
    arrived = anyio.Event()

    async def deliver(request: httpx.Request) -> httpx.Response:
        received.append(await request.aread())
        arrived.set()
        return httpx.Response(200)

    account = SimAccount(email="acct0@example.com", max_jobs=2, credits=10_000.0)
    sim = Simulator(
        accounts=(account,),
        time_scale=SCALE,
        seed=7,
        webhook_transport=httpx.MockTransport(deliver),
    )
    return sim, received, arrived


async def test_two_thousand_replays_of_one_callback_cost_one_read() -> None:
    """A replay flood (or a sender that retries eagerly) must not become an API read each."""
    sim, received, arrived = simulator_keeping_callbacks()
    # The poller never looks on its own here: every read counted comes from the webhooks.
    slow_polling = msgspec.structs.replace(Timing.scaled(SCALE), poll_interval=3600.0)
    async with (
        sim,
        FlowMusic(
            token=sim.token,
            base_url=sim.base_url,
            transport=Latency(sim.transport()),
            timing=slow_polling,
        ) as fm,
    ):
        handle = await fm.submit("called back", reply_url="https://hooks.example.com/fm")
        with anyio.fail_after(10):
            await arrived.wait()
        before = gets_of_jobs(sim)
        results: list[Any] = []

        async def replay() -> None:
            results.append(await fm.webhooks.handle(received[0]))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(REPLAYS):
                    tg.start_soon(replay)
        flood_reads = gets_of_jobs(sim) - before
        with anyio.fail_after(5):
            job = await handle

        # Once the job has ended, replays cost nothing at all.
        after_end = gets_of_jobs(sim)
        late = [await fm.webhooks.handle(received[0]) for _ in range(REPLAYS)]
        late_reads = gets_of_jobs(sim) - after_end

    assert job.is_completed
    assert flood_reads == 1, f"{REPLAYS} concurrent replays sent {flood_reads} GET /jobs/{{jobid}}"
    assert late_reads == 0
    assert len(results) == REPLAYS and all(r.http_status == 200 for r in results)
    accepted = [r for r in results if r.accepted]
    assert accepted and all(r.job is not None and r.job.is_completed for r in accepted)
    assert all(r.http_status == 200 and not r.accepted for r in late)


async def test_a_replay_for_a_job_whose_read_failed_is_answered_not_raised() -> None:
    """Callers that joined a read which failed hear that it failed; the poller carries on."""
    sim, received, arrived = simulator_keeping_callbacks()
    slow_polling = msgspec.structs.replace(Timing.scaled(SCALE), poll_interval=3600.0)
    inner = sim.transport()

    class FailingReads(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "GET" and request.url.path.startswith("/v1/flowmusic/jobs/"):
                return httpx.Response(404, json={"error": "gone"})
            return await inner.handle_async_request(request)

    async with (
        sim,
        FlowMusic(
            token=sim.token,
            base_url=sim.base_url,
            transport=FailingReads(),
            timing=slow_polling,
            max_retries=0,
        ) as fm,
    ):
        await fm.submit("called back", reply_url="https://hooks.example.com/fm")
        with anyio.fail_after(10):
            await arrived.wait()
        results: list[Any] = []

        async def replay() -> None:
            results.append(await fm.webhooks.handle(received[0]))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(replay)
    assert len(results) == 50
    assert all(not r.accepted and "re-reading the job failed" in r.reason for r in results)
