"""Accounts shared with other clients: slots they hold are waited out, not fought over."""

from __future__ import annotations

import heapq
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest

from flowmusic_async.testing.pytest_plugin import MakeClient, MakeSim

SCALE = 0.01
# The simulators this module's tests build (flowmusic_make_sim) start from these.
pytestmark = pytest.mark.flowmusic_sim(
    time_scale=SCALE, seed=9, account_email="shared{i}@example.com"
)


@pytest.mark.anyio
async def test_a_submission_queued_behind_another_clients_job_runs_when_it_ends(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """maxJobs 1, held by another bot on the same token: we wait for it, then run; no hang."""
    sim = flowmusic_make_sim(1)
    async with flowmusic_make_client(sim) as other, flowmusic_make_client(sim) as fm:
        theirs = await other.music.create("the other bot's song", mode="async")
        with anyio.fail_after(15):
            ours = await fm.generate("queued behind it")
        finished = await other.jobs.get(theirs.jobid)
    assert ours.is_completed and finished.is_completed
    assert sim.stats.responses_429 == 0  # the slot was seen free, not discovered by a 429
    assert sim.stats.peak_running == {"shared0@example.com": 1}


def start_simulator(scale: float, *accounts: str) -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, "-m", "flowmusic_async.testing", "--port", "0"]
    args += ["--time-scale", str(scale), "--seed", "21", "--credits", "100000"]
    for account in accounts:
        args += ["--account", account]
    server = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    ready = server.stdout.readline().split()
    assert ready and ready[0] == "READY", ready
    return server, ready[1]


@pytest.mark.serial
@pytest.mark.timeout(180)
def test_three_processes_on_one_token_share_the_slots_without_a_storm_of_429s() -> None:
    """Three bots, 15 songs each, accounts with maxJobs 2/3/4, staggered starts.

    Judged by the simulator: every song once, never over a limit, at most one 429 per song
    on average, and the slots kept busy (makespan close to the ideal).
    """
    scale = 0.01
    server, base_url = start_simulator(
        scale, "p0@example.com:2", "p1@example.com:3", "p2@example.com:4"
    )
    try:
        stats_url = base_url.split("/v1/")[0] + "/_sim/stats"
        token = httpx.get(stats_url).json().get("token", "user:1001-simulatortoken")
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
        child = str(Path(__file__).with_name("shared_child.py"))
        workers = []
        for name in ("bot-a", "bot-b", "bot-c"):
            command = [sys.executable, child, base_url, token, str(scale), name, "15"]
            workers.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env))
            time.sleep(0.3)  # staggered: the later ones find the slots already taken
        reports = [json.loads(w.communicate(timeout=150)[0]) for w in workers]
        stats = httpx.get(stats_url).json()
    finally:
        server.kill()
        server.wait(timeout=10)
    assert [r["ok"] for r in reports] == [15, 15, 15], reports
    assert stats["duplicate_submissions"] == 0
    assert len(stats["accepted_prompts"]) == 45 and set(stats["accepted_prompts"].values()) == {1}
    assert stats["peak_running"] == {"p0@example.com": 2, "p1@example.com": 3, "p2@example.com": 4}
    assert stats["responses_429"] <= 45, stats["responses_429"]
    jobs = sorted(stats["jobs"].values(), key=lambda j: j["created"])
    makespan = jobs[-1]["finished"] - jobs[0]["created"]
    reference = fifo_makespan([j["finished"] - j["created"] for j in jobs], slots=9)
    print(f"429s: {stats['responses_429']}, makespan/FIFO reference: {makespan / reference:.3f}")
    assert makespan / reference < 1.15, (makespan, reference)


def fifo_makespan(durations: list[float], *, slots: int) -> float:
    """The makespan of a perfect client: each job starts the instant a slot frees, in order."""
    free_at = [0.0] * slots
    for duration in durations:
        start = heapq.heappop(free_at)
        heapq.heappush(free_at, start + duration)
    return max(free_at)
