"""Run schemathesis against the simulator over loopback HTTP with docs/openapi.yaml.

    python tests/testing/conformance.py [--max-examples N] [extra schemathesis args...]

`nox -s conformance` runs this. It starts `python -m flowmusic_async.testing` on 127.0.0.1
(a free port), waits for its `READY <url>` line, runs `schemathesis run` with a fixed seed, a
bounded number of cases and one worker, then stops the simulator. The exit code is
schemathesis's.

Checks: every one except those `schemathesis.toml` beside this file turns off, each with why.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "openapi.yaml"
CONFIG = Path(__file__).with_name("schemathesis.toml")  # the checks turned off, and why
TOKEN = "user:1001-conformance"
START_TIMEOUT_S = 30.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=25, help="cases per operation")
    parser.add_argument("--seed", type=int, default=1, help="the simulator's seed")
    args, extra = parser.parse_known_args(argv)
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowmusic_async.testing",
            "--host",
            "127.0.0.1",
            "--time-scale",
            "0.0005",  # a 150 s song takes 75 ms, so sync POSTs stay quick
            "--seed",
            str(args.seed),
            "--account",
            "alpha@example.com:16",
            "--account",
            "beta@example.com:16",
            "--credits",
            "1e9",
            # Some jobs fail by moderation, so fuzzing meets the 422 record and failed records.
            "--job-failure-rate",
            "0.2",
            "--token",
            TOKEN,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = _ready(simulator)
        command = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(CONFIG),
            "run",
            str(SPEC),
            "--url",
            base_url,
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--max-examples",
            str(args.max_examples),
            # Deterministic generation (no random seed, no example database): CI is stable.
            "--generation-deterministic",
            # One worker: Python 3.11's ast.parse (used by hypothesis to describe filters) is
            # not safe across threads, and one worker keeps the run reproducible.
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--no-color",
            *extra,
        ]
        started = time.monotonic()
        # In a scratch directory: schemathesis keeps a crash cache in ./.schemathesis, and a
        # run must neither leave files in the checkout nor depend on an earlier run's.
        with tempfile.TemporaryDirectory(prefix="conformance-") as scratch:
            code = subprocess.call(command, cwd=scratch)
        print(f"conformance: schemathesis took {time.monotonic() - started:.1f} s", flush=True)
        print(f"conformance: simulator answers by status: {_statuses(base_url)}", flush=True)
        return code
    finally:
        simulator.terminate()
        try:
            simulator.wait(timeout=10)
        except subprocess.TimeoutExpired:
            simulator.kill()
            simulator.wait()


def _statuses(base_url: str) -> str:
    """What the run made the simulator answer (its /_sim/stats), e.g. "200: 512, 400: 900"."""
    with urllib.request.urlopen(f"{base_url}/_sim/stats", timeout=10) as response:
        requests = json.load(response)["requests"]
    counts: Counter[str] = Counter()
    for key, n in requests.items():
        counts[key.rsplit(" ", 1)[1]] += n  # keys are "METHOD /path STATUS"
    return ", ".join(f"{status}: {n}" for status, n in sorted(counts.items()))


def _ready(simulator: subprocess.Popen[str]) -> str:
    """The base URL from the simulator's one `READY <url>` line."""
    assert simulator.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    line = simulator.stdout.readline()  # the server prints it once listening, then nothing
    if not line.startswith("READY ") or time.monotonic() > deadline:
        raise SystemExit(f"the simulator did not start: {line!r}")
    url = line.split(" ", 1)[1].strip()
    if not url.startswith("http://127.0.0.1:"):
        raise SystemExit(f"refusing a non-loopback simulator URL: {url}")
    return url


if __name__ == "__main__":
    sys.exit(main())
