"""Accounts shared with other clients: slots they hold are waited out, not fought over."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from flowmusic_async import FlowMusic, Timing
from flowmusic_async.testing import SimAccount, Simulator

SCALE = 0.01


def make_sim(*limits: int) -> Simulator:
    accounts = tuple(
        SimAccount(email=f"shared{i}@example.com", max_jobs=n, credits=10_000.0)
        for i, n in enumerate(limits)
    )
    return Simulator(accounts=accounts, time_scale=SCALE, seed=9)


def client(sim: Simulator, **kwargs: Any) -> FlowMusic:
    return FlowMusic(
        token=sim.token,
        base_url=sim.base_url,
        transport=sim.transport(),
        timing=Timing.scaled(SCALE),
        **kwargs,
    )


@pytest.mark.anyio
async def test_a_submission_queued_behind_another_clients_job_runs_when_it_ends() -> None:
    """maxJobs 1, held by another bot on the same token: we wait for it, then run; no hang."""
    sim = make_sim(1)
    async with client(sim) as other, client(sim) as fm:
        theirs = await other.music.create("the other bot's song", mode="async")
        with anyio.fail_after(15):
            ours = await fm.generate("queued behind it")
        finished = await other.jobs.get(theirs.jobid)
    assert ours.is_completed and finished.is_completed
    assert sim.stats.responses_429 == 0  # the slot was seen free, not discovered by a 429
    assert sim.stats.peak_running == {"shared0@example.com": 1}
