"""Fair queues: the makespan of a batch with tenants against the same batch without them.

Tenant A queues `--songs` songs on one account of 16 slots (the in-process simulator, time
compressed by `--scale`), then tenant B queues 2. Variants: `none` (no tenant at all), `fair`
(A and B as tenants), `capped` (A capped at 4 jobs in flight, B not). The makespan is the
simulator's own: its first job's start to its last job's end. Fairness must not idle a slot:
`fair` should stay within 2% of `none` (`capped` is slower by design: A alone may use only 4
of the 16 slots once B is done). Each (variant, repeat) runs in its own process, by turns.

`python -m benchmarks.bench_fairness` prints makespans, their medians and the ratios.

`--capacity-check N` instead runs N songs (3 tenants, 2 accounts of 16 slots) and, at every
GET /jobs sweep, compares `fm.capacity()` with what the simulator listed in that sweep: every
listed job counted (ours or others'), no other process's jobs beyond our POSTs on their way,
never more in flight than maxJobs, free = maxJobs - in flight. It prints the sweeps checked
and the disagreements found (the suite runs the same check on 300 songs).
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

import anyio

from benchmarks._harness import run_variants_by_turns

VARIANTS = ("none", "fair", "capped")


async def measure(variant: str, songs: int, scale: float) -> dict[str, Any]:
    """One run: the simulator's makespan, and where B's jobs started among all jobs."""
    from flowmusic_async import Event, FlowMusic, Timing
    from flowmusic_async.testing import SimAccount, Simulator

    sim = Simulator(
        accounts=(SimAccount(email="bench@example.com", max_jobs=16, credits=1e9),),
        time_scale=scale,
        seed=26,
    )
    events: list[Event] = []
    fm = FlowMusic(
        token=sim.token,
        base_url=sim.base_url,
        transport=sim.transport(),
        timing=Timing.scaled(scale),
        event_hooks=[events.append],
        tenant_max_jobs={"A": 4} if variant == "capped" else None,
    )
    a_tenant = None if variant == "none" else "A"
    b_tenant = None if variant == "none" else "B"
    async with fm:
        a_songs = [fm.submit_nowait(f"a {i}", tenant=a_tenant) for i in range(songs)]
        with anyio.fail_after(600):
            while sum(e.kind == "queued" for e in events) < songs:
                await anyio.sleep(0.001)
        b_songs = [fm.submit_nowait(f"b {i}", tenant=b_tenant) for i in range(2)]
        b_refs = {q.client_ref for q in b_songs}
        for song in [*a_songs, *b_songs]:
            await song
    times = sim.stats.jobs.values()
    order = sorted(sim.stats.jobs, key=lambda jobid: sim.stats.jobs[jobid].created)
    b_jobids = [e.jobid for e in events if e.kind == "submitted" and e.client_ref in b_refs]
    return {
        "makespan_s": max(t.finished for t in times) - min(t.created for t in times),
        "b_start_ranks": sorted(order.index(j) for j in b_jobids if j is not None),
        "responses_429": sim.stats.responses_429,
    }


async def capacity_check(songs: int, scale: float) -> dict[str, Any]:
    """Run `songs` songs; check the capacity snapshot against every sweep's listing."""
    from collections.abc import Mapping

    from flowmusic_async import AccountJobs, FlowMusic, Timing
    from flowmusic_async._scheduler import Scheduler
    from flowmusic_async.testing import SimAccount, Simulator

    sim = Simulator(
        accounts=tuple(
            SimAccount(email=f"check{i}@example.com", max_jobs=16, credits=1e9) for i in range(2)
        ),
        time_scale=scale,
        seed=26,
    )
    fm = FlowMusic(
        token=sim.token,
        base_url=sim.base_url,
        transport=sim.transport(),
        timing=Timing.scaled(scale),
    )
    sweeps = 0
    problems: list[str] = []
    original = Scheduler.reconcile

    def reconcile_and_check(
        self: Scheduler, running: Mapping[str, AccountJobs], *, swept_at: float
    ) -> list[str]:
        nonlocal sweeps
        ended = original(self, running, swept_at=swept_at)
        sweeps += 1
        for email, usage in fm.capacity().accounts.items():
            listed = len(running[email].jobs) if email in running else 0
            checks = {
                "max_jobs": usage.max_jobs == 16,
                "listed jobs counted": usage.running_ours + usage.running_others >= listed,
                "others only while sending": usage.running_others <= usage.reserved,
                "in flight within maxJobs": usage.in_flight <= usage.max_jobs,
                "free": usage.free == usage.max_jobs - usage.in_flight,
            }
            problems.extend(f"sweep {sweeps} {email}: {n}" for n, ok in checks.items() if not ok)
        return ended

    Scheduler.reconcile = reconcile_and_check  # type: ignore[method-assign]
    try:
        async with fm:
            queued = [fm.submit_nowait(f"song {i}", tenant=f"t{i % 3}") for i in range(songs)]
            for song in queued:
                await song
            final = fm.capacity()
    finally:  # the suite's smoke test runs this in-process: leave the class as it was
        Scheduler.reconcile = original  # type: ignore[method-assign]
    idle = final.queued == 0 and all(u.in_flight == 0 for u in final.accounts.values())
    return {
        "songs": songs,
        "sweeps_checked": sweeps,
        "disagreements": problems[:20],
        "idle_at_end": idle,
        "peak_running": sim.stats.peak_running,
        "responses_429": sim.stats.responses_429,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", choices=VARIANTS, help="run one variant here (JSON out)")
    parser.add_argument("--songs", type=int, default=500)
    parser.add_argument("--scale", type=float, default=0.002)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--capacity-check", type=int, metavar="N", help="see the docstring")
    ns = parser.parse_args(argv)
    if ns.capacity_check:
        print(json.dumps(anyio.run(capacity_check, ns.capacity_check, ns.scale)))
        return
    if ns.one:
        print(json.dumps(anyio.run(measure, ns.one, ns.songs, ns.scale)))
        return
    from benchmarks import _report

    _report.print_machine()
    results = run_variants_by_turns(
        "benchmarks.bench_fairness",
        VARIANTS,
        ns.repeats,
        ["--songs", str(ns.songs), "--scale", str(ns.scale)],
    )
    base = statistics.median(r["makespan_s"] for r in results["none"])
    print(f"{ns.songs} songs of A then 2 of B, 16 slots, scale {ns.scale}")
    for variant, runs in results.items():
        spans = [r["makespan_s"] for r in runs]
        ranks = [r["b_start_ranks"] for r in runs]
        print(
            f"{variant:<7} makespan {', '.join(f'{s:.2f}' for s in spans)} s; median "
            f"{statistics.median(spans):.2f} s = {statistics.median(spans) / base:.3f}x none; "
            f"B's jobs started {ranks}"
        )


if __name__ == "__main__":
    main()
