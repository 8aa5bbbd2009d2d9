"""Instructions per song: two checkouts' clients at once, each under valgrind's callgrind.

CPU time on a shared machine moves by a few per cent from run to run, even with both clients
side by side (docs/benchmarks.md, Caveats). The number of instructions a client executes
moves far less: it depends on what the run did (sweeps and reads that timing decides), not on
how busy the machine was. So a difference of 1 % that CPU time cannot resolve shows here.

Each side runs the `bench_scale` client twice, each time together with the other side and
each on a simulator of its own: a small batch and a large one. Its instructions per song are
the difference of the two runs' totals over the difference of their songs, so what every run
pays once (imports, the account read, the sweeps of a run that lasts as long as its longest
song) cancels out. The time scale is slow (1.0 by default) because valgrind
runs the client 50-100 times slower: the clients must stay far from saturated, or the run
measures an overloaded loop (docs/benchmarks.md, Caveats).

    python -m benchmarks.bench_instructions --compare-with DIR [--songs 1000] [--repeats 1]

Needs `valgrind` on PATH. About 7 minutes per repeat at the defaults, on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import _report
from benchmarks.bench_scale import run_together


def per_song(small: dict[str, Any], large: dict[str, Any]) -> dict[str, float]:
    """One side's figures from its small and large runs: what each extra song cost."""
    done_small = small["completed"] + small["failed"]
    done_large = large["completed"] + large["failed"]
    songs = done_large - done_small
    if songs <= 0:
        raise ValueError(f"the large run ended {done_large} songs, the small one {done_small}")
    return {
        "instructions_per_song": (large["instructions"] - small["instructions"]) / songs,
        "requests_per_song": (large["requests"] - small["requests"]) / songs,
        "startup_instructions": float(small["instructions"]),
    }


def measure(other: str, *, songs: int, small: int, time_scale: float) -> list[dict[str, float]]:
    """This checkout's figures and `other`'s, from one small and one large run of each."""
    runs = []
    for n in (small, songs):
        point = {"songs": n, "time_scale": time_scale, "under_callgrind": True}
        runs.append(run_together([point, point | {"checkout": other}]))
    (small_this, small_other), (large_this, large_other) = runs
    return [per_song(small_this, large_this), per_song(small_other, large_other)]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--compare-with", metavar="DIR", required=True, help="another checkout")
    p.add_argument("--songs", type=int, default=1000, help="songs in the large run")
    p.add_argument("--small", type=int, default=20, help="songs in the small run")
    p.add_argument("--time-scale", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--json", type=Path, help="write the results here too")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    ns = parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt install valgrind)")
    info = _report.print_machine()
    other = str(Path(ns.compare_with).resolve())
    ratios: list[float] = []
    runs: list[dict[str, Any]] = []
    for r in range(ns.repeats):
        this, theirs = measure(other, songs=ns.songs, small=ns.small, time_scale=ns.time_scale)
        runs.append({"this": this, "other": theirs})
        ratios.append(theirs["instructions_per_song"] / this["instructions_per_song"])
        for label, row in (("this", this), (other, theirs)):
            print(f"  run {r + 1}/{ns.repeats} {label:>24}: "
                  f"{row['instructions_per_song'] / 1e6:.3f} M instructions/song, "
                  f"{row['requests_per_song']:.3f} requests/song, "
                  f"start-up {row['startup_instructions'] / 1e9:.3f} G")  # fmt: skip
        print(f"  other/this {ratios[-1]:.4f}", flush=True)
    print(f"instructions per song, the other's over this one's: median "
          f"{statistics.median(ratios):.4f} [{min(ratios):.4f}-{max(ratios):.4f}] "
          f"over {len(ratios)} run(s)")  # fmt: skip
    if ns.json:
        _report.write_json(ns.json, {"machine": info, "other": other, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
