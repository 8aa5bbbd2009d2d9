"""`python -m benchmarks [--quick]`: every variant on every workload, then the decode bench.

For each workload and variant: start a fresh simulator process (same seed, same accounts), run
the variant in its own process, read the simulator's stats, stop the simulator. Prints one table
per workload with ratios against this library, writes benchmarks/results/<stamp>-<mode>.json
and a PNG chart next to it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import _report, bench_decode
from benchmarks._harness import BenchError, run_variant, simulator
from benchmarks._metrics import compute
from benchmarks._stats import parse_stats
from benchmarks._workloads import plan
from benchmarks.variants import DESCRIPTIONS, VARIANTS

RESULTS = Path(__file__).parent / "results"
# The library variant of another checkout (--compare-with).
OTHER = "library@other"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the short run (under 2 minutes)")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}"
    )
    parser.add_argument("--workloads", default="batch,stream,single", help="comma list")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (same for all)")
    parser.add_argument("--time-scale", type=float, default=0.01, help="simulator time scale")
    parser.add_argument("--no-download", action="store_true", help="skip fetching m4a files")
    parser.add_argument("--no-decode", action="store_true", help="skip the decode benchmark")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where JSON and PNG go")
    parser.add_argument(
        "--repeats", type=int, default=None, help="runs per figure, median shown (full 3, quick 1)"
    )
    parser.add_argument(
        "--compare-with",
        metavar="DIR",
        help=f"also run the library variant of another checkout, as {OTHER!r} (by turns)",
    )
    ns = parser.parse_args(argv)
    ns.variants = [v.strip() for v in ns.variants.split(",") if v.strip()]
    unknown = [v for v in ns.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    ns.workloads = [w.strip() for w in ns.workloads.split(",") if w.strip()]
    if ns.compare_with:
        ns.compare_with = str(Path(ns.compare_with).resolve())
        ns.variants.append(OTHER)
    if ns.repeats is None:
        ns.repeats = 1 if ns.quick else 3
    if not 0 < ns.time_scale <= 1:
        parser.error("--time-scale must be in (0, 1]")
    return ns


def run_one(variant: str, workload: Any, ns: argparse.Namespace) -> dict[str, Any]:
    """One variant on one workload, against its own simulator; never raises for a bad run."""
    timeout = 120.0 if ns.quick else 900.0
    # The machine may be shared: the 1-minute load before each run says how quiet it was.
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        with simulator(workload, time_scale=ns.time_scale, seed=ns.seed) as sim:
            other = variant == OTHER
            result = run_variant(
                VARIANTS["library" if other else variant], sim, workload,
                time_scale=ns.time_scale, download=not ns.no_download, timeout_s=timeout,
                checkout=ns.compare_with if other else None,
            )  # fmt: skip
    except BenchError as exc:
        return {"error": str(exc)}
    row: dict[str, Any] = {
        "error": result.error,
        "wall_s": time.perf_counter() - started,
        "load_before": load_before,
    }
    stats = parse_stats(result.stats, time_scale=ns.time_scale)
    row["sim"] = stats.summary()
    if result.report is not None:
        row["metrics"] = compute(
            workload,
            time_scale=ns.time_scale,
            report=result.report,
            sim_jobs=stats.jobs,
            requests=stats.api_requests,
            responses_429=stats.responses_429,
            duplicate_submissions=stats.duplicate_submissions,
            accepted_prompts=stats.accepted_prompts,
        )
        row["notes"] = row["metrics"].pop("notes")
    return row


# The figures shown with their range when a variant runs more than once.
RANGED = (
    "makespan_over_ideal",
    "first_result_sim_s",
    "notice_p50_sim_s",
    "cpu_ms_per_song",
    "requests_per_song",
)
# The lone song is the tracked figure (CPU and requests for one song) and one run is one
# sample: it takes seconds, so it always runs at least this many times, by turns.
SINGLE_REPEATS = 3


def median_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from several runs: each numeric metric is the median; the range is kept."""
    good = [r for r in rows if r.get("metrics")]
    if not good:
        return rows[-1]
    merged = dict(good[0]) | {"runs": [r.get("metrics") for r in rows]}
    merged["tries"] = [{"load_before": r.get("load_before"), "error": r.get("error")} for r in rows]
    metrics: dict[str, Any] = {}
    ranges: dict[str, list[float]] = {}
    for key, value in good[0]["metrics"].items():
        values = [r["metrics"].get(key) for r in good]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            metrics[key] = statistics.median(values)
            ranges[key] = [min(values), max(values)]
        else:
            metrics[key] = value
    merged["metrics"] = metrics | {"range": ranges}
    merged["wall_s"] = sum(r.get("wall_s", 0.0) for r in rows)
    if len(rows) > 1:
        spans = ", ".join(
            f"{key} {ranges[key][0]:.3g}-{ranges[key][1]:.3g}" for key in RANGED if key in ranges
        )
        failed = len(rows) - len(good)
        head = f"median of {len(good)} runs" + (f" ({failed} failed)" if failed else "")
        merged["notes"] = [f"{head}; range: {spans}", *good[0].get("notes", [])]
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    ns = parse_args(argv)
    mode = "quick" if ns.quick else "full"
    info = _report.print_machine()
    print(f"mode: {mode}, time scale {ns.time_scale}, seed {ns.seed}; "
          "durations below are simulated (API) seconds", flush=True)  # fmt: skip
    result: dict[str, Any] = {
        "mode": mode,
        "repeats": ns.repeats,
        "single_repeats": max(ns.repeats, SINGLE_REPEATS),
        "time_scale": ns.time_scale,
        "seed": ns.seed,
        "download": not ns.no_download,
        "machine": info,
        "variants": {
            v: DESCRIPTIONS[v] if v != OTHER else f"the library variant of {ns.compare_with}"
            for v in ns.variants
        },
        "workloads": [],
    }
    for workload in plan(quick=ns.quick):
        if workload.name not in ns.workloads:
            continue
        # By turns (every variant once, then again), so a slow moment of a shared machine
        # spreads over the variants instead of landing on one.
        tries: dict[str, list[dict[str, Any]]] = {variant: [] for variant in ns.variants}
        repeats = result["single_repeats"] if workload.name == "single" else ns.repeats
        for _ in range(repeats):
            for variant in ns.variants:
                print(f"  {workload.name:<7} {variant:<16}", end="", flush=True)
                row = run_one(variant, workload, ns)
                tries[variant].append(row)
                status = f"  ERROR {row['error']}" if row.get("error") else ""
                load = f"load {row['load_before']:.2f}" if "load_before" in row else ""
                print(f" {row.get('wall_s', 0.0):6.1f} s  {load}{status}", flush=True)
        runs = {variant: median_of(rows) for variant, rows in tries.items()}
        info_w = asdict(workload) | {"slots": workload.slots}
        result["workloads"].append({"workload": info_w, "variants": runs})
        print()
        print("\n".join(_report.workload_table(info_w, runs)), flush=True)
        print()
    if not ns.no_decode:
        number, repeat = (2_000, 3) if ns.quick else (20_000, 5)
        result["decode"] = bench_decode.run_all(number=number, repeat=repeat)
        print("\n".join(_report.decode_table(result["decode"])))
    result["tracked"] = {"lone_song": _report.lone_song(result)}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = ns.out / f"{stamp}-{mode}.json"
    _report.write_json(json_path, result)
    print(_report.chart(ns.out / f"{stamp}-{mode}.png", result))
    # Last, so that it is what stays on the screen.
    print()
    print("\n".join(_report.summary_lines(result)))
    print(f"results: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
