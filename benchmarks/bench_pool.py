"""httpx pool micro-benchmark: client CPU per request with many requests in flight on one client.

What `Limits` should the library set? Against a simulator in its own process (loopback), one
`httpx.AsyncClient` sends `--burst` GET /accounts at once (the shape of a batch's start: one
POST per free slot, 800 on 50 accounts x 16), `--rounds` times, with each configuration of
`Limits(max_connections, max_keepalive_connections)`, optionally behind an anyio
`CapacityLimiter` (`cap`) so that requests beyond it wait in anyio, not in httpcore's pool
queue. Also the sequential cost of one request, as this machine's unit of CPU. Each
configuration runs in its own process; the figure is client CPU (time.process_time) per request.

`python -m benchmarks.bench_pool [--repeats 3]`
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._harness import TOKEN, run_json, simulator
from benchmarks._workloads import Workload, accounts

# (label, max_connections, max_keepalive_connections, cap); None: httpx's default.
CONFIGS: tuple[tuple[str, int | None, int | None, int | None], ...] = (
    ("httpx default (100 / 20)", None, None, None),
    ("100 / 100", 100, 100, None),
    ("800 / 800", 800, 800, None),
    ("64 / 64", 64, 64, None),
    ("64 / 64, cap 64", 64, 64, 64),
    ("32 / 32, cap 32", 32, 32, 32),
    ("16 / 16, cap 16", 16, 16, 16),
)


async def measure(
    base_url: str, burst: int, rounds: int, most: int | None, keep: int | None, cap: int | None
) -> dict[str, Any]:
    import anyio
    import httpx

    kwargs: dict[str, Any] = {}
    if most is not None:
        kwargs["limits"] = httpx.Limits(max_connections=most, max_keepalive_connections=keep)
    limiter = anyio.CapacityLimiter(cap) if cap else None
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120, **kwargs) as c:
        await c.get("/accounts")

        async def one() -> None:
            if limiter is None:
                (await c.get("/accounts")).raise_for_status()
                return
            async with limiter:
                (await c.get("/accounts")).raise_for_status()

        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(100):
            await one()
        sequential = (time.process_time() - cpu0) / 100
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            async with anyio.create_task_group() as tg:
                for _ in range(burst):
                    tg.start_soon(one)
        n = burst * rounds
        return {
            # httpcore retries `import sniffio` on every request without it (issue 27).
            "sniffio": importlib.util.find_spec("sniffio") is not None,
            "sequential_cpu_ms": sequential * 1000,
            "burst_cpu_ms": (time.process_time() - cpu0) / n * 1000,
            "burst_wall_ms": (time.perf_counter() - wall0) / n * 1000,
        }


def run_all(
    burst: int, rounds: int, repeats: int = 1, compare_python: str | None = None
) -> list[dict[str, Any]]:
    """Every configuration `repeats` times, by turns (each once, then again), so a slow moment
    of a shared machine spreads over them; one row per configuration, medians and ranges.

    `compare_python`: each configuration also runs under that interpreter (another virtual
    environment, e.g. one without sniffio), in the same turns; its rows name it.
    """
    pythons = [sys.executable, *([compare_python] if compare_python else [])]
    tries: dict[str, list[dict[str, Any]]] = {}
    workload = Workload(name="pool", songs=1, accounts=accounts(50, (16,)))
    with simulator(workload, time_scale=0.01, seed=7) as sim:
        for _ in range(repeats):
            for (label, most, keep, cap), (i, python) in itertools.product(
                CONFIGS, enumerate(pythons)
            ):
                if i:  # the compared interpreter
                    label = f"{label}, {python}"
                cmd = [python, "-m", "benchmarks.bench_pool", "--client", sim.base_url,
                       "--burst", str(burst), "--rounds", str(rounds),
                       "--config", json.dumps([most, keep, cap])]  # fmt: skip
                load = os.getloadavg()[0]
                result = run_json(cmd, label)
                if result is None:
                    continue
                tries.setdefault(label, []).append(result | {"load_before": load})
                print(f"  {label:<26} sequential {result['sequential_cpu_ms']:.2f} ms, burst "
                      f"{result['burst_cpu_ms']:.2f} ms CPU / {result['burst_wall_ms']:.2f} ms "
                      f"wall per request (load {load:.2f})", flush=True)  # fmt: skip
    rows = []
    for label, runs in tries.items():
        sniffio = "" if runs[0].get("sniffio", True) else " (no sniffio)"
        row: dict[str, Any] = {"config": label + sniffio, "runs": runs, "range": {}}
        for key in ("sequential_cpu_ms", "burst_cpu_ms", "burst_wall_ms"):
            values = [r[key] for r in runs]
            row[key] = statistics.median(values)
            row["range"][key] = [min(values), max(values)]
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> list[str]:
    """Median [range] per configuration (ms per request)."""
    lines = [f"{'Limits (max / keep-alive)':<26} | {'sequential CPU':>20} | "
             f"{'burst CPU':>20} | {'burst wall':>20}"]  # fmt: skip
    for row in rows:
        cells = []
        for key in ("sequential_cpu_ms", "burst_cpu_ms", "burst_wall_ms"):
            low, high = row["range"][key]
            cells.append(f"{row[key]:.2f} [{low:.2f}-{high:.2f}]")
        lines.append(f"{row['config']:<26} | " + " | ".join(f"{c:>20}" for c in cells))
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--burst", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration, by turns")
    parser.add_argument(
        "--compare-python",
        metavar="PYTHON",
        help="also run each configuration under this interpreter (e.g. a venv without sniffio)",
    )
    parser.add_argument("--json", help="also write the rows to this file")
    ns = parser.parse_args(argv)
    if ns.client:
        import anyio

        most, keep, cap = json.loads(ns.config)
        result = anyio.run(measure, ns.client, ns.burst, ns.rounds, most, keep, cap)
        print(json.dumps(result))
        return
    from benchmarks import _report

    info = _report.print_machine()
    print(f"httpx pool: {ns.burst} GETs at once x {ns.rounds}, client CPU per request, "
          f"{ns.repeats} runs per configuration by turns")  # fmt: skip
    rows = run_all(ns.burst, ns.rounds, ns.repeats, ns.compare_python)
    print(f"median [range] of {ns.repeats}, ms per request")
    print("\n".join(table(rows)))
    if ns.json:
        saved = {"machine": info, "burst": ns.burst, "rounds": ns.rounds,
                 "repeats": ns.repeats, "rows": rows}  # fmt: skip
        _report.write_json(Path(ns.json), saved)


if __name__ == "__main__":
    main()
