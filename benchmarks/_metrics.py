"""From one variant's per-song log and the simulator's stats to the numbers in the table.

Every duration the caller cares about is reported in simulated (API) seconds: real seconds
divided by the time scale, so "2.0 s" means two seconds against the real API. Ratios (makespan
over ideal) need no conversion. CPU and memory are real: they do not scale with the simulator.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

from benchmarks._workloads import Workload


@dataclass(frozen=True)
class SimJob:
    jobid: str
    created_at: float  # wall clock, time.time()
    finished_at: float  # wall clock at which the job turned terminal in the simulator
    duration_s: float  # simulated seconds


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def fifo_makespan(arrivals: list[float], durations: list[float], slots: int) -> float:
    """Makespan of a zero-latency FIFO scheduler: each song, in arrival order, takes the first
    slot to free up and its end is known the instant it happens. What a perfect client achieves
    without knowing durations in advance (same durations, same order)."""
    free: list[float] = [0.0] * slots
    end = 0.0
    for arrival, duration in sorted(zip(arrivals, durations, strict=True), key=lambda p: p[0]):
        start = max(arrival, heapq.heappop(free))
        heapq.heappush(free, start + duration)
        end = max(end, start + duration)
    return end


def compute(
    workload: Workload,
    *,
    time_scale: float,
    report: dict[str, Any],
    sim_jobs: dict[str, SimJob],
    requests: dict[str, int],
    responses_429: int,
    duplicate_submissions: int,
    accepted_prompts: dict[str, int],
) -> dict[str, Any]:
    """The metrics of one variant run (see docs/benchmarks.md for each definition)."""
    t0 = float(report["t0"])
    songs = report["songs"]
    n = len(songs)
    to_sim = 1.0 / time_scale

    finished = [s for s in songs if s["result_at"] is not None and s["status"] != "lost"]
    completed = [s for s in finished if s["status"] == "completed"]
    ends = [s["done_at"] or s["result_at"] for s in finished]
    makespan = (max(ends) - t0) if ends else None

    # The work actually requested: each song's own job, with its simulated duration.
    arrivals, durations, accepted = [], [], []
    for s in songs:
        job = sim_jobs.get(s["jobid"] or "")
        if job is not None:
            arrivals.append(s["requested_at"] - t0)
            durations.append(job.duration_s * time_scale)
            accepted.append(job.created_at - t0)
    ideal = None
    fifo = None
    if durations:
        # A lower bound no client can beat: all slots busy all the time, and no song can end
        # before it arrived plus its own duration.
        ideal = max(
            sum(durations) / workload.slots,
            max(a + d for a, d in zip(arrivals, durations, strict=True)),
        )
        fifo = fifo_makespan(arrivals, durations, workload.slots)

    notice = []
    waits = []
    for s in finished:
        job = sim_jobs.get(s["jobid"] or "")
        if job is None:
            continue
        notice.append((s["result_at"] - job.finished_at) * to_sim)
        waits.append((s["result_at"] - s["requested_at"]) * to_sim - job.duration_s)

    api_requests = sum(requests.values())
    duplicates_by_prompt = sum(count - 1 for prompt, count in accepted_prompts.items() if count > 1)
    requested = {s["prompt"] for s in songs}
    lost = sum(1 for s in songs if s["status"] == "lost")
    return {
        "songs": n,
        "completed": len(completed),
        "failed": sum(1 for s in finished if s["status"] == "failed"),
        "lost": lost,
        "never_accepted": sum(1 for p in requested if accepted_prompts.get(p, 0) == 0),
        "duplicates": max(duplicate_submissions, duplicates_by_prompt),
        "makespan_sim_s": makespan * to_sim if makespan is not None else None,
        "ideal_sim_s": ideal * to_sim if ideal is not None else None,
        "fifo_sim_s": fifo * to_sim if fifo is not None else None,
        "makespan_over_ideal": makespan / ideal if makespan and ideal else None,
        "makespan_over_fifo": makespan / fifo if makespan and fifo else None,
        "first_result_sim_s": (
            (min(s["result_at"] for s in finished) - t0) * to_sim if finished else None
        ),
        # How long before the simulator accepted the first song (client start-up, first POST).
        "first_accept_sim_s": min(accepted) * to_sim if accepted else None,
        "notice_p50_sim_s": percentile(notice, 50),
        "notice_p95_sim_s": percentile(notice, 95),
        "notice_max_sim_s": max(notice) if notice else None,
        "wait_p50_sim_s": percentile(waits, 50),
        "wait_p95_sim_s": percentile(waits, 95),
        "requests_per_song": api_requests / n,
        "requests_by_endpoint": requests,
        "r429_per_song": responses_429 / n,
        "cpu_ms_per_song": report["cpu_s"] * 1000 / n,
        "cpu_s": report["cpu_s"],
        "cpu_total_s": report["cpu_total_s"],
        "peak_rss_mb": report["peak_rss_mb"],
        "notes": report.get("notes", []),
    }
