"""The spend guard's cost: requests and client CPU per song with budgets and a credit floor.

`--songs` songs through `generate_many` on 50 accounts x 16 slots (the in-process simulator,
time compressed by `--scale`). Variants: `plain` (no limit), `limited` (a client limit and a
batch limit the batch stays under, so every song is paid and the usage report is read for
the price), `floor` (`min_credits_left`: each account's balance read at most every
`poll_interval`). Each (variant, repeat) runs in its own process, by turns. Issue 25's
target: no 429 in one process, and 2.0-2.1 requests per song at 20,000 songs with the
balance reads included.

`python -m benchmarks.bench_spend` prints, per variant, the medians and ranges.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import anyio

from benchmarks._harness import run_variants_by_turns

VARIANTS = ("plain", "limited", "floor")
ACCOUNTS, SLOTS, CREDITS, SONG = 50, 16, 1e9, 10.0


async def measure(variant: str, songs: int, scale: float) -> dict[str, Any]:
    """One run: requests per song by endpoint kind, 429s, client CPU per song."""
    from flowmusic_async import FlowMusic, Timing
    from flowmusic_async.testing import SimAccount, Simulator

    sim = Simulator(
        accounts=tuple(
            SimAccount(email=f"spend{i:02d}@example.com", max_jobs=SLOTS, credits=CREDITS)
            for i in range(ACCOUNTS)
        ),
        time_scale=scale,
        seed=25,
    )
    options: dict[str, Any] = {}
    batch_limit = None
    if variant == "limited":
        options["spend_limit"] = songs * SONG * 2
        batch_limit = songs * SONG * 1.5
    elif variant == "floor":
        options["min_credits_left"] = 1000.0
    fm = FlowMusic(
        token=sim.token,
        base_url=sim.base_url,
        transport=sim.transport(),
        timing=Timing.scaled(scale),
        **options,
    )
    started = time.process_time()
    ok = 0
    async with fm:
        prompts = (f"song {i}" for i in range(songs))
        async with fm.generate_many(prompts, spend_limit=batch_limit) as outcomes:
            async for outcome in outcomes:
                ok += outcome.ok
    cpu = time.process_time() - started
    requests = sum(sim.stats.requests.values())
    by_kind = {
        kind: sum(n for (key, _), n in sim.stats.requests.items() if key == kind)
        for kind in ("GET /accounts/{email}", "GET /accounts/usage")
    }
    return {
        "songs_ok": ok,
        "requests_per_song": requests / songs,
        "balance_reads": by_kind["GET /accounts/{email}"],
        "usage_reads": by_kind["GET /accounts/usage"],
        "responses_429": sim.stats.responses_429,
        "cpu_ms_per_song": cpu * 1000 / songs,
        "credits_spent": sim.stats.total_credits_spent,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", choices=VARIANTS, help="run one variant here (JSON out)")
    parser.add_argument("--songs", type=int, default=20_000)
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=3)
    ns = parser.parse_args(argv)
    if ns.one:
        print(json.dumps(anyio.run(measure, ns.one, ns.songs, ns.scale)))
        return
    from benchmarks import _report

    _report.print_machine()
    results = run_variants_by_turns(
        "benchmarks.bench_spend",
        VARIANTS,
        ns.repeats,
        ["--songs", str(ns.songs), "--scale", str(ns.scale)],
    )
    print(f"{ns.songs} songs, {ACCOUNTS} accounts x {SLOTS} slots, scale {ns.scale}")
    for variant, runs in results.items():
        if not runs:
            continue
        cpu = [r["cpu_ms_per_song"] for r in runs]
        req = [r["requests_per_song"] for r in runs]
        print(
            f"{variant:<8} requests/song {statistics.median(req):.3f}"
            f" [{min(req):.3f}-{max(req):.3f}]"
            f"  cpu ms/song {statistics.median(cpu):.2f} [{min(cpu):.2f}-{max(cpu):.2f}]"
            f"  429s {max(r['responses_429'] for r in runs)}"
            f"  balance reads {max(r['balance_reads'] for r in runs)}"
            f"  usage reads {max(r['usage_reads'] for r in runs)}"
            f"  songs ok {min(r['songs_ok'] for r in runs)}"
        )


if __name__ == "__main__":
    main()
