"""The one poller (flowmusic_async/_poller.py): one sweep per interval for every pending
job, sweeps spaced out when their bookkeeping grows, reads one by one without the running
list, broken answers survived, one waiter cancelled without stopping it."""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from sim_helpers import INVALID_UTF8, TOO_DEEP, Rewriting, count, first_n, generate_all

from flowmusic_async import Timing
from flowmusic_async.testing import Faults
from flowmusic_async.testing.pytest_plugin import MakeClient, MakeSim

SCALE = 0.002  # a 40-150 s song takes 80-300 ms
# The simulators this module's tests build (flowmusic_make_sim) start from these.
pytestmark = pytest.mark.flowmusic_sim(
    time_scale=SCALE, seed=7, account_email="acct{i}@example.com"
)


@pytest.mark.anyio
async def test_waiting_costs_one_sweep_per_interval_not_one_request_per_job(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """One poller: 40 pending jobs cost about the same polling as one."""
    sim = flowmusic_make_sim(10, 10, 10, 10)
    async with flowmusic_make_client(sim) as fm:
        results = await generate_all(fm, [f"cheap {i}" for i in range(40)])
    assert all(r.is_completed for r in results)
    per_job_reads = count(sim, "GET /jobs/{jobid}")
    sweeps = count(sim, "GET /jobs")
    assert per_job_reads <= 40 + 4  # about one final read per job
    # Songs last 40-150 scaled seconds and all run at once: a sweep every 3 scaled seconds.
    assert sweeps <= (150 - 20) / 3 + 6
    # Everything else is one POST and one GET /accounts now and then: nothing per job per tick.
    total = sum(sim.stats.requests.values())
    assert total <= 40 + per_job_reads + sweeps + count(sim, "GET /accounts")


@pytest.mark.serial
@pytest.mark.anyio
@pytest.mark.parametrize("bookkeeping_s", [0.0, 0.004])
async def test_sweeps_are_spaced_out_when_their_bookkeeping_would_fill_the_loop(
    bookkeeping_s: float,
    monkeypatch: pytest.MonkeyPatch,
    flowmusic_make_sim: MakeSim,
    flowmusic_make_client: MakeClient,
) -> None:
    """A sweep may take 1/100 of the time between sweeps: 4 ms of reconciling stretches a
    25 ms interval to its cap of 4 x 25 ms; cheap sweeps keep the interval as configured."""
    # a song lasts 2 s or more: pending for the whole window
    sim = flowmusic_make_sim(4, time_scale=0.05)
    timing = msgspec.structs.replace(
        Timing.scaled(0.05), poll_interval=0.025, poll_jitter=0.0, first_check_after=0.0
    )
    async with flowmusic_make_client(sim, timing=timing) as fm:
        reconcile = fm._submitter.scheduler.reconcile

        def slow_reconcile(*args: Any, **kwargs: Any) -> None:
            time.sleep(bookkeeping_s)  # blocks the loop, as a sweep of many jobs does
            reconcile(*args, **kwargs)

        monkeypatch.setattr(fm._submitter.scheduler, "reconcile", slow_reconcile)
        handle = await fm.submit("a long wait")
        before = count(sim, "GET /jobs")
        await anyio.sleep(1.0)
        sweeps = count(sim, "GET /jobs") - before
        await handle.cancel()
    if bookkeeping_s:
        assert 6 <= sweeps <= 12  # every ~0.1 s (capped: 100 x 4 ms would be 0.4 s)
    else:
        assert sweeps >= 25  # every ~25 ms


@pytest.mark.anyio
async def test_cancelling_one_waiter_leaves_the_other_waiting(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Cancelling one waiter never stops the shared poller or other waiters."""
    sim = flowmusic_make_sim(1)
    async with flowmusic_make_client(sim) as fm:
        handle = await fm.submit("shared")
        with anyio.move_on_after(0.001):
            await fm.wait(handle.jobid)
        job = await fm.wait(handle.jobid)
        assert (await handle).jobid == job.jobid
    assert job.is_completed


@pytest.mark.anyio
async def test_without_the_running_list_jobs_are_read_one_by_one(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """When GET /jobs keeps failing, the poller falls back to reading each job that may be done."""
    sim = flowmusic_make_sim(2, 2, faults=Faults(error_rate={"GET /jobs": 1.0}))
    async with flowmusic_make_client(sim, max_retries=0) as fm:
        results = await generate_all(fm, [f"fallback {i}" for i in range(4)])
    assert all(r.is_completed for r in results)
    assert count(sim, "GET /jobs", 200) == 0
    assert count(sim, "GET /jobs/{jobid}", 200) >= 4
    assert sim.stats.responses_429 == 0


@pytest.mark.anyio_backends("asyncio", "trio")
@pytest.mark.flowmusic_sim(seed=13, account_email="hostile{i}@example.com")
@pytest.mark.parametrize("body", [INVALID_UTF8, TOO_DEEP, b'{"a": {"maxJobs": "x"}}', b"\x00"])
@pytest.mark.anyio
async def test_the_poller_survives_broken_sweeps_and_reads_and_every_wait_completes(
    body: bytes, flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Broken GET /jobs and GET /jobs/{jobid} answers are tolerated; the songs still arrive."""
    sim = flowmusic_make_sim(2)
    sweeps = first_n(3, "GET /v1/flowmusic/jobs", body)
    reads = first_n(2, "GET /jobs/", body)

    def both(request: httpx.Request, response: httpx.Response, raw: bytes) -> bytes | None:
        return sweeps(request, response, raw) or reads(request, response, raw)

    transport = Rewriting(sim.transport(), both)
    fm = flowmusic_make_client(sim, transport=transport)
    async with fm:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(fm.generate, f"survivor {i}")
    assert transport.rewritten >= 3
    assert sim.stats.jobs_created == 4 and sim.stats.duplicate_submissions == 0
