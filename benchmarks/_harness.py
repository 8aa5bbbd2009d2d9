"""Processes: a fresh simulator per variant run, and the variant itself in a child process.

The simulator is `python -m flowmusic_async.testing` on a loopback port; it prints one line,
`READY <base_url>`, once it listens. After the variant exits we read GET /_sim/stats (the
simulator's own record of every request and job) and stop the simulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from benchmarks._workloads import Workload

TOKEN = "user:1001-benchmarktoken"
# Enough credits that no account runs dry in the full run (10 credits per song).
CREDITS = 1_000_000
READY_TIMEOUT_S = 30.0


def run_json(cmd: list[str], what: str) -> dict[str, Any] | None:
    """Run one measurement in a fresh interpreter and read the JSON it prints on stdout.

    A failed run is reported on stderr with its last line, named `what`, and gives None: the
    other measurements of the invocation go on.
    """
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        print(f"  {what}: failed ({tail[0]})", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def run_variants_by_turns(
    module: str, variants: Sequence[str], repeats: int, args: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Run ``python -m module --one VARIANT *args`` for each variant, `repeats` rounds by
    turns, each in a fresh interpreter; the JSON results per variant (failed runs left out)."""
    results: dict[str, list[dict[str, Any]]] = {variant: [] for variant in variants}
    for _ in range(repeats):
        for variant in variants:
            cmd = [sys.executable, "-m", module, "--one", variant, *args]
            result = run_json(cmd, f"{module} {variant}")
            if result is not None:
                results[variant].append(result)
    return results


class BenchError(RuntimeError):
    """A process of the benchmark did not behave (simulator never ready, variant crashed)."""


@dataclass(frozen=True)
class Simulator:
    base_url: str
    process: subprocess.Popen[str]

    @property
    def origin(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    def stats(self) -> dict[str, Any]:
        """The JSON snapshot of GET /_sim/stats (at the origin; the base URL as a fallback)."""
        last: httpx.Response | None = None
        for url in (f"{self.origin}/_sim/stats", f"{self.base_url}/_sim/stats"):
            last = httpx.get(url, timeout=30.0)
            if last.status_code == 200:
                return dict(last.json())
        assert last is not None
        raise BenchError(f"GET /_sim/stats answered {last.status_code}: {last.text[:200]}")


def simulator_command(workload: Workload, *, time_scale: float, seed: int) -> list[str]:
    cmd = [
        sys.executable, "-m", "flowmusic_async.testing",
        "--host", "127.0.0.1", "--port", "0",
        "--time-scale", repr(time_scale), "--seed", str(seed),
        "--token", TOKEN, "--credits", str(CREDITS),
    ]  # fmt: skip
    for email, max_jobs in workload.accounts:
        cmd += ["--account", f"{email}:{max_jobs}"]
    return cmd


def _read_line(stream: Any, timeout: float) -> str | None:
    """One line from a pipe, or None after `timeout` (a reader thread: portable, no select)."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0] if box else None


@contextmanager
def simulator(workload: Workload, *, time_scale: float, seed: int) -> Iterator[Simulator]:
    """Start a fresh simulator process for `workload`; stop it on exit."""
    cmd = simulator_command(workload, time_scale=time_scale, seed=seed)
    # The simulator's stderr goes to ours: its errors are worth seeing, and nothing else is.
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = _read_line(process.stdout, READY_TIMEOUT_S)
        if not line or not line.startswith("READY "):
            raise BenchError(f"simulator did not print READY (got {line!r}); command: {cmd}")
        # Keep draining stdout so a chatty simulator can never block on a full pipe.
        drain = threading.Thread(target=process.stdout.read, daemon=True)  # type: ignore[union-attr]
        drain.start()
        yield Simulator(base_url=line.split(None, 1)[1].strip(), process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class VariantResult:
    report: dict[str, Any] | None
    error: str | None
    stats: dict[str, Any]


def run_variant(
    module: str,
    sim: Simulator,
    workload: Workload,
    *,
    time_scale: float,
    download: bool,
    timeout_s: float,
    checkout: str | None = None,
) -> VariantResult:
    """Run one variant process against `sim` and collect its report and the simulator's stats.

    `checkout`: run the variant from another checkout of this repository (its own benchmarks
    and flowmusic_async), e.g. a git worktree of an older commit.
    """
    cmd = [
        sys.executable, "-m", module,
        "--base-url", sim.base_url, "--token", TOKEN,
        "--time-scale", repr(time_scale), "--workload", workload.to_json(),
    ]  # fmt: skip
    if not download:
        cmd.append("--no-download")
    env = dict(os.environ, PYTHONHASHSEED="0")
    report: dict[str, Any] | None = None
    error: str | None = None
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False,
            cwd=checkout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        error = f"timed out after {timeout_s:.0f} s"
    else:
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            error = f"exit {proc.returncode}: {tail}"
        else:
            try:
                report = json.loads(proc.stdout.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError) as exc:
                error = f"no JSON report: {exc}"
    return VariantResult(report=report, error=error, stats=sim.stats())
