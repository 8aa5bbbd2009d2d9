"""What the simulator itself says of its jobs: tests judge by it, not by what the client thinks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from flowmusic_async.testing import Simulator


async def server_states(sim: Simulator) -> dict[str, str]:
    """jobid -> "running" / "completed" / the failure code, read from the simulator itself."""
    states: dict[str, str] = {}
    async with httpx.AsyncClient(transport=sim.transport(), base_url=sim.base_url) as http:
        headers = {"Authorization": f"Bearer {sim.token}"}
        for jobid in sim.stats.jobs:
            record = (await http.get(f"/jobs/{jobid}", headers=headers)).json()
            if record["status"] == "pending":
                states[jobid] = "running"
            elif record["status"] == "completed":
                states[jobid] = "completed"
            else:
                states[jobid] = record["error"]["code"]
    return states


def child_env() -> dict[str, str]:
    """The environment for a child process of the tests: this checkout first on the path, and
    none of the user's settings that would point it elsewhere."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for name in ("USEAPI_TOKEN", "FLOWMUSIC_BASE_URL", "FLOWMUSIC_LOG"):
        env.pop(name, None)
    return env


@contextmanager
def served_simulator(*, time_scale: str, account: str) -> Iterator[str]:
    """`python -m flowmusic_async.testing` on a loopback socket; yields its base URL."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowmusic_async.testing",
            "--time-scale",
            time_scale,
            "--account",
            account,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().split()
        assert ready[0] == "READY"
        yield ready[1]
    finally:
        process.terminate()
        process.wait(timeout=10)
