"""Scheduler micro-benchmark: the cost of one slot turnover against the number of queued waiters.

No network, no simulator: one `flowmusic_async._scheduler.Scheduler` with 50 accounts x 16
slots, every slot taken, and N submissions queued for a slot (each a task blocked in
`acquire()`). One turnover is what happens when a song ends: `job_ended(jobid)` frees a slot,
the scheduler hands it to the oldest waiter, and that waiter's task `commit()`s its new job.
The scheduler's own cost is the time spent inside those two calls (dispatch runs inside them);
the wall time per turnover adds the task switch and the start of a replacement waiter, which
keeps the queue at N.

Cases (the ones issue 11 names):
- healthy: every account in rotation, waiters for any account.
- out-402 / out-596: one account taken out of rotation (no credits / error state).
- blocked-pinned: half the queue pinned to an account that stays full, at the head of the
  queue; turnovers happen on the other accounts.
- half-cancelled: every other waiter left (its caller was cancelled) before the turnovers.

`python -m benchmarks.bench_scheduler` prints the curve (us per turnover by queue size, and the
ratio of the largest to the smallest queue: the target is within 2x). Each (case, size) runs
in its own process so one run's heap does not slow the next.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import anyio

from benchmarks._harness import run_json

CASES = ("healthy", "out-402", "out-596", "blocked-pinned", "half-cancelled")
SIZES = (1_000, 5_000, 20_000, 50_000)
ACCOUNTS, SLOTS = 50, 16


async def measure(case: str, queued: int, turnovers: int) -> dict[str, float]:
    """Microseconds per turnover (scheduler calls only, and wall) with `queued` waiters."""
    from flowmusic_async._errors import AccountError, InsufficientCreditsError
    from flowmusic_async._models import Account
    from flowmusic_async._scheduler import Scheduler

    if case not in CASES:
        raise ValueError(f"unknown case {case!r}")
    sched = Scheduler()
    emails = [f"bench{i:02d}@example.com" for i in range(ACCOUNTS)]
    sched.update_accounts({e: Account(email=e, max_jobs=SLOTS) for e in emails})
    blocked = emails[0]
    if case == "out-402":
        error: Any = InsufficientCreditsError("402 no credits", status=402, email=blocked)
        sched.take_out(blocked, error, reason="402")
    elif case == "out-596":
        error = AccountError("596 error state", status=596, email=blocked)
        sched.take_out(blocked, error, reason="596")
    serial = iter(range(10**9))
    running: deque[str] = deque()  # jobids whose end frees a slot a waiter can take
    for email in emails:
        if case.startswith("out-") and email == blocked:
            continue
        for _ in range(SLOTS):
            assigned = await sched.acquire(email)
            jobid = f"job-{next(serial)}"
            sched.commit(assigned, jobid)
            if not (case == "blocked-pinned" and email == blocked):
                running.append(jobid)

    spent_ns = 0
    committed = anyio.Event()

    async def waiter(pin: str | None, scope_box: list[anyio.CancelScope] | None) -> None:
        nonlocal spent_ns, committed
        with anyio.CancelScope() as scope:
            if scope_box is not None:
                scope_box.append(scope)
            assigned = await sched.acquire(pin)
            jobid = f"job-{next(serial)}"
            t = time.perf_counter_ns()
            sched.commit(assigned, jobid)
            spent_ns += time.perf_counter_ns() - t
            running.append(jobid)
            committed.set()

    async with anyio.create_task_group() as tg:
        scopes: list[anyio.CancelScope] = []
        for i in range(queued):
            pin = blocked if case == "blocked-pinned" and i < queued // 2 else None
            box = scopes if case == "half-cancelled" and i % 2 == 0 else None
            tg.start_soon(waiter, pin, box)
        # Let every waiter reach its queue.
        while sched.waiting < queued:
            await anyio.sleep(0)
        for scope in scopes:
            scope.cancel()
        await anyio.sleep(0)
        gc.collect()
        spent_ns = 0
        wall0 = time.perf_counter_ns()
        samples: list[int] = []
        for _ in range(turnovers):
            committed = anyio.Event()
            t = time.perf_counter_ns()
            sched.job_ended(running.popleft())
            spent = time.perf_counter_ns() - t
            spent_ns += spent
            before = spent_ns
            await committed.wait()
            samples.append(spent + spent_ns - before)
            tg.start_soon(waiter, None, None)  # keep the queue at its size
        wall_ns = time.perf_counter_ns() - wall0
        tg.cancel_scope.cancel()
    samples.sort()
    return {
        "scheduler_us": spent_ns / turnovers / 1000,
        "scheduler_p50_us": statistics.median(samples) / 1000,
        "scheduler_p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "wall_us": wall_ns / turnovers / 1000,
    }


def run_all(
    *, cases: tuple[str, ...] = CASES, sizes: tuple[int, ...] = SIZES, turnovers: int = 3_000
) -> dict[str, dict[str, dict[str, float]]]:
    """Every (case, size) in its own interpreter: {case: {size: figures}}."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for case in cases:
        for size in sizes:
            cmd = [sys.executable, "-m", "benchmarks.bench_scheduler", "--one", case,
                   "--queued", str(size), "--turnovers", str(turnovers)]  # fmt: skip
            result = run_json(cmd, f"scheduler bench {case} {size}")
            if result is not None:
                out.setdefault(case, {})[str(size)] = result
    return out


def table(results: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """The curve: scheduler us per turnover by queue size, and the largest/smallest ratio."""
    sizes = sorted({int(s) for by_size in results.values() for s in by_size})
    head = f"{'case':<16}" + "".join(f"{s:>10,}" for s in sizes) + f"{'max/min':>9}{'wall':>18}"
    lines = [
        "scheduler cost per slot turnover (us; job_ended + commit, dispatch included)",
        head,
    ]
    for case, by_size in results.items():
        cells = [by_size.get(str(s), {}).get("scheduler_us") for s in sizes]
        known = [c for c in cells if c]
        ratio = max(known) / min(known) if known else float("nan")
        walls = [by_size[str(s)]["wall_us"] for s in sizes if str(s) in by_size]
        wall = f"{min(walls):.0f}-{max(walls):.0f} us" if walls else "-"
        lines.append(
            f"{case:<16}"
            + "".join(f"{c:>10.1f}" if c else f"{'-':>10}" for c in cells)
            + f"{ratio:>8.2f}x{wall:>18}"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", choices=CASES, help="run one case in this process (JSON out)")
    parser.add_argument("--queued", type=int, default=1_000)
    parser.add_argument("--turnovers", type=int, default=3_000)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--json", help="also write the results to this file")
    ns = parser.parse_args(argv)
    if ns.one:
        print(json.dumps(anyio.run(measure, ns.one, ns.queued, ns.turnovers)))
        return
    from benchmarks import _report

    info = _report.print_machine()
    sizes = tuple(int(s) for s in ns.sizes.split(","))
    results = run_all(sizes=sizes, turnovers=ns.turnovers)
    print("\n".join(table(results)))
    if ns.json:
        _report.write_json(Path(ns.json), {"machine": info, "results": results})


if __name__ == "__main__":
    main()
