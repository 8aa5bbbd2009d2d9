"""`flowmusic status`: the capacity snapshot from the command line, judged by the simulator."""

from __future__ import annotations

import io
import json
from typing import Any

import anyio
import pytest

from flowmusic_async import FlowMusic, Timing
from flowmusic_async._cli import run
from flowmusic_async.testing import SimAccount, Simulator

SCALE = 0.05  # a 40-150 s song takes 2-7.5 s: still running while status looks


def make_sim() -> Simulator:
    return Simulator(
        accounts=(
            SimAccount(email="alpha@example.com", max_jobs=3),
            SimAccount(email="beta@example.com", max_jobs=2),
        ),
        time_scale=SCALE,
        seed=3,
    )


async def status(sim: Simulator, *argv: str) -> tuple[int, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    prefix = ["--token", sim.token, "--base-url", sim.base_url, "--time-scale", str(SCALE)]
    code = await run(
        [*prefix, "status", *argv], transport=sim.transport(), stdout=stdout, stderr=stderr
    )
    assert sim.token not in stdout.getvalue() + stderr.getvalue()
    return code, stdout.getvalue()


@pytest.mark.anyio
async def test_status_counts_another_process_jobs_as_the_simulator_runs_them() -> None:
    """Jobs of another client (another process, for this one) show as "others", per account,
    as many as the simulator runs; the free slots are what is left of maxJobs."""
    sim = make_sim()
    other = FlowMusic(
        token=sim.token,
        base_url=sim.base_url,
        transport=sim.transport(),
        timing=Timing.scaled(SCALE),
    )
    async with other:
        handles = [await other.submit(f"busy {i}", email="alpha@example.com") for i in range(2)]
        code, out = await status(sim, "--json")
        for handle in handles:
            await handle.cancel()
    assert code == 0
    snapshot: dict[str, Any] = json.loads(out)
    alpha, beta = (
        snapshot["accounts"]["alpha@example.com"],
        snapshot["accounts"]["beta@example.com"],
    )
    assert (alpha["running_others"], alpha["running_ours"], alpha["free"]) == (2, 0, 1)
    assert (beta["running_others"], beta["free"], beta["health"]) == (0, 2, "ok")
    assert snapshot["queued"] == 0 and alpha["max_jobs"] == 3


@pytest.mark.anyio
async def test_status_shows_an_account_in_error_with_its_reason_on_one_screen() -> None:
    """A broken account is named with why, in the table a person reads."""
    sim = make_sim()
    sim.set_account_error("beta@example.com", "refresh token rejected")
    code, out = await status(sim)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:7] == [
        "account",
        "maxJobs",
        "ours",
        "others",
        "sending",
        "free",
        "health",
    ]
    beta = next(line for line in lines if line.startswith("beta@example.com"))
    assert "596" in beta and "refresh token rejected" in beta
    assert "3 of 3 slots free" in out


@pytest.mark.anyio
async def test_status_watch_prints_a_fresh_snapshot_each_time() -> None:
    """--watch refreshes (a new GET /accounts and GET /jobs each time); --count bounds it."""
    sim = make_sim()
    with anyio.fail_after(30):
        code, out = await status(sim, "--json", "--watch", "0.01", "--count", "3")
    documents = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(documents) == 3
    assert len({document["taken_at"] for document in documents}) == 3
    assert sim.stats.requests[("GET /jobs", 200)] == 3
