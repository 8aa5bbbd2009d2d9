"""Objects per request in progress: what CPython's cyclic garbage collector walks in a batch.

A batch on 50 accounts x 16 slots keeps 800 requests in progress for the 40-150 s each song
runs, and every full collection walks every object they hold: that walk was most of the loop
stalls at a batch's start (docs/benchmarks.md, "Loop stalls"). This counts them. The client
runs `generate_many` against a simulator in its own process, at a time scale where songs last
4-15 s, waits until every slot holds an accepted job, and reports the gc-tracked objects then,
less those before the batch, per request in progress, with the time of one full collection.

`python -m benchmarks.bench_objects` measures this checkout; `--compare-with DIR` also measures
another checkout's client (its package, this measuring code), by turns.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The client part runs as a script (`python benchmarks/bench_objects.py --client ...`) with the
# measured checkout first on its path, so it imports nothing from `benchmarks`: an older
# checkout's `benchmarks` package would not have this file.
ACCOUNTS, SLOTS_PER_ACCOUNT = 50, 16
SLOTS = ACCOUNTS * SLOTS_PER_ACCOUNT
SONGS = 2000
TIME_SCALE = 0.1  # songs of 4-15 s: the 800 first POSTs are all answered before one ends
REPO = Path(__file__).resolve().parents[1]


async def client(base_url: str, token: str, songs: int, slots: int) -> dict[str, Any]:
    """In the child: objects while every slot is busy, less those before, per request."""
    import anyio

    from flowmusic_async import FlowMusic, Timing

    accepted = 0

    def on_event(event: Any) -> None:
        nonlocal accepted
        accepted += event.kind == "submitted"

    timing = Timing.scaled(TIME_SCALE)
    async with FlowMusic(token=token, base_url=base_url, timing=timing) as fm:
        fm.add_event_hook(on_event)
        gc.collect()
        before = len(gc.get_objects())
        prompts = (f"bench objects {i}" for i in range(songs))
        async with fm.generate_many(prompts):
            with anyio.fail_after(60):
                while accepted < slots:
                    await anyio.sleep(0.05)
            await anyio.sleep(0.5)  # let the submitting tasks finish their last steps
            gc.collect()
            during = len(gc.get_objects())
            started = time.perf_counter()
            gc.collect()
            full_ms = (time.perf_counter() - started) * 1000
            # Leaving the batch here cancels its jobs (the simulator's, not real money).
    return {
        "objects_before": before,
        "objects_during": during,
        "objects_per_request": (during - before) / slots,
        "full_collection_ms": full_ms,
    }


def run_once(checkout: Path, *, accounts_n: int = ACCOUNTS, songs: int = SONGS) -> dict[str, Any]:
    """One client of `checkout` against a fresh simulator of `accounts_n` x 16 slots."""
    from benchmarks._harness import TOKEN, BenchError, simulator
    from benchmarks._workloads import Workload, accounts

    workload = Workload(
        name="objects", songs=songs, accounts=accounts(accounts_n, (SLOTS_PER_ACCOUNT,))
    )
    with simulator(workload, time_scale=TIME_SCALE, seed=7) as sim:
        env = os.environ | {"PYTHONPATH": str(checkout)}
        cmd = [sys.executable, __file__, "--client", sim.base_url, "--token", TOKEN,
               "--songs", str(songs), "--slots", str(accounts_n * SLOTS_PER_ACCOUNT)]  # fmt: skip
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=300, check=False, env=env, cwd=checkout
        )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        raise BenchError(f"client of {checkout} exited {proc.returncode}: {tail}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_objects", description=__doc__)
    p.add_argument("--client", metavar="BASE_URL", help=argparse.SUPPRESS)
    p.add_argument("--token", help=argparse.SUPPRESS)
    p.add_argument("--songs", type=int, default=SONGS, help=argparse.SUPPRESS)
    p.add_argument("--slots", type=int, default=SLOTS, help=argparse.SUPPRESS)
    p.add_argument("--compare-with", metavar="DIR", type=Path, help="another checkout")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, help="write the results here too")
    ns = p.parse_args(argv)
    if ns.client:
        import anyio

        print(json.dumps(anyio.run(client, ns.client, ns.token, ns.songs, ns.slots)))
        return 0
    from benchmarks import _report

    info = _report.print_machine()
    trees = [REPO] + ([ns.compare_with.resolve()] if ns.compare_with else [])
    runs: dict[str, list[dict[str, Any]]] = {str(tree): [] for tree in trees}
    for _ in range(ns.repeats):
        for tree in trees:  # by turns, so a slow moment of the machine hits both
            runs[str(tree)].append(run_once(tree))
    print(f"objects per request in progress: {SONGS:,} songs on {SLOTS} slots, "
          f"time scale {TIME_SCALE}, median [range] of {ns.repeats}")  # fmt: skip
    print(f"{'checkout':>24} | {'objects/request':>20} | {'live objects':>12} | full GC ms")
    summary: dict[str, Any] = {}
    for tree, rows in runs.items():
        per = [r["objects_per_request"] for r in rows]
        full = [r["full_collection_ms"] for r in rows]
        live = statistics.median(r["objects_during"] for r in rows)
        name = "this" if tree == str(REPO) else tree
        print(f"{name:>24} | {statistics.median(per):6.1f} [{min(per):.1f}-{max(per):.1f}] | "
              f"{live:12,.0f} | {statistics.median(full):.1f} "
              f"[{min(full):.1f}-{max(full):.1f}]")  # fmt: skip
        summary[name] = rows
    if ns.json:
        _report.write_json(ns.json, {"machine": info, "checkouts": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
