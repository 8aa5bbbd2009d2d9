"""Run schemathesis against the simulator over loopback HTTP with docs/openapi.yaml.

    python tests/testing/conformance.py [--max-examples N] [extra schemathesis args...]

`nox -s conformance` runs this. It starts `python -m flowmusic_async.testing` on 127.0.0.1
(a free port), waits for its `READY <url>` line, runs `schemathesis run` with a fixed seed, a
bounded number of cases and one worker, then the deterministic cases below (bodies that
schemathesis's deterministic generation does not reach), then stops the simulator. The exit
code is schemathesis's, or 1 when a deterministic case fails.

Deterministic cases: async songs whose `replyUrl` httpx cannot use (`http://[::1` does not
parse; a schemathesis run in random mode found it): each is accepted, its webhook is counted
as failed when the job ends, and the simulator is still serving afterwards.

Checks: every one except those `schemathesis.toml` beside this file turns off, each with why.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "openapi.yaml"
CONFIG = Path(__file__).with_name("schemathesis.toml")  # the checks turned off, and why
TOKEN = "user:1001-conformance"
START_TIMEOUT_S = 30.0
# replyUrls no webhook can be sent to; the simulator must count each, never die of one.
UNDELIVERABLE_REPLY_URLS = (
    "http://[::1",  # httpx.InvalidURL, which is not an httpx.HTTPError
    "http://xn--a.com/",  # an IDNA error (UnicodeError) while building the request
    "http://[::1]:99999/",  # a port out of range: an ExceptionGroup from the pool
    "not a url",  # httpx.UnsupportedProtocol
)
CASE_TIMEOUT_S = 20.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=25, help="cases per operation")
    parser.add_argument("--seed", type=int, default=1, help="the simulator's seed")
    args, extra = parser.parse_known_args(argv)
    simulator = start_simulator(args.seed)
    try:
        base_url = ready(simulator)
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
        failures = deterministic_cases(base_url, simulator)
        for failure in failures:
            print(f"conformance: FAILED deterministic case: {failure}", flush=True)
        print(f"conformance: simulator answers by status: {_statuses(base_url)}", flush=True)
        return code or (1 if failures else 0)
    finally:
        stop_simulator(simulator)


def start_simulator(seed: int) -> subprocess.Popen[str]:
    """`python -m flowmusic_async.testing` on a free loopback port, fast and deterministic."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowmusic_async.testing",
            "--host",
            "127.0.0.1",
            "--time-scale",
            "0.0005",  # a 150 s song takes 75 ms, so sync POSTs stay quick
            "--seed",
            str(seed),
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


def stop_simulator(simulator: subprocess.Popen[str]) -> None:
    simulator.terminate()
    try:
        simulator.wait(timeout=10)
    except subprocess.TimeoutExpired:
        simulator.kill()
        simulator.wait()


def _call(base_url: str, method: str, path: str, body: object = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{base_url}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def deterministic_cases(base_url: str, simulator: subprocess.Popen[str]) -> list[str]:
    """Songs with undeliverable replyUrls: accepted, each webhook counted failed, still alive."""
    failures: list[str] = []
    failed_before = _stats(base_url)["webhooks_failed"]
    jobids = []
    for url in UNDELIVERABLE_REPLY_URLS:
        status, record = _call(
            base_url, "POST", "/music", {"prompt": "x", "mode": "async", "replyUrl": url}
        )
        if status != 201:
            failures.append(f"replyUrl {url!r}: POST /music answered {status}, not 201")
        else:
            jobids.append(record["jobid"])
    deadline = time.monotonic() + CASE_TIMEOUT_S
    expected = failed_before + len(jobids)
    # The webhooks are sent when the jobs end (75 ms at this time scale); no event to wait
    # on across processes, so look every 50 ms, bounded.
    while simulator.poll() is None and time.monotonic() < deadline:
        if _stats(base_url)["webhooks_failed"] >= expected:
            break
        time.sleep(0.05)
    if simulator.poll() is not None:
        return [*failures, f"the simulator exited ({simulator.returncode}) after bad replyUrls"]
    failed = _stats(base_url)["webhooks_failed"]
    if failed != expected:
        failures.append(f"webhooks_failed is {failed}, expected {expected}")
    for jobid in jobids:
        status, record = _call(base_url, "GET", f"/jobs/{jobid}")
        if status != 200 or record.get("status") not in ("completed", "failed"):
            failures.append(f"GET /jobs/{jobid} answered {status} {record!r}")
    return failures


def _stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/_sim/stats", timeout=10) as response:
        stats: dict[str, Any] = json.load(response)
    return stats


def _statuses(base_url: str) -> str:
    """What the run made the simulator answer (its /_sim/stats), e.g. "200: 512, 400: 900"."""
    with urllib.request.urlopen(f"{base_url}/_sim/stats", timeout=10) as response:
        requests = json.load(response)["requests"]
    counts: Counter[str] = Counter()
    for key, n in requests.items():
        counts[key.rsplit(" ", 1)[1]] += n  # keys are "METHOD /path STATUS"
    return ", ".join(f"{status}: {n}" for status, n in sorted(counts.items()))


def ready(simulator: subprocess.Popen[str]) -> str:
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
