"""The CLI as users run it: `flowmusic simulate` in one process, a batch in another (socket)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "flowmusic_async", *argv]


@pytest.mark.timeout(60)
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery differs on Windows")
def test_simulate_serves_a_batch_from_another_process_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    """The socket path is closest to real use: real HTTP, real processes, real exit codes."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("USEAPI_TOKEN", None)
    server = subprocess.Popen(
        _cli(
            "--json",
            "simulate",
            "--port",
            "0",
            "--time-scale",
            "0.003",
            "--account",
            "solo@example.com:2",
            "--account",
            "duo@example.com:2",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        ready = json.loads(server.stdout.readline())
        base_url, token = ready["base_url"], ready["token"]
        assert base_url.startswith("http://127.0.0.1:")

        prompts = tmp_path / "prompts.json"
        prompts.write_text(
            json.dumps(
                [
                    {"prompt": "one"},
                    {"prompt": "two", "instrumental": True},
                    {"prompt": "three", "ghostwriter": "pro"},
                ]
            )
        )
        out = tmp_path / "songs"
        client = subprocess.run(
            _cli(
                "--base-url",
                base_url,
                "--time-scale",
                "0.003",
                "--json",
                "batch",
                str(prompts),
                "--out",
                str(out),
                "--formats",
                "m4a",
            ),
            capture_output=True,
            text=True,
            env={**env, "USEAPI_TOKEN": token},
            timeout=45,
        )
        assert client.returncode == 0, client.stderr
        assert token not in client.stdout + client.stderr
        lines = [json.loads(line) for line in client.stdout.splitlines()]
        assert [doc["type"] for doc in lines] == ["outcome"] * 3 + ["summary"]
        assert len(list(out.glob("*.m4a"))) >= 3

        refused = subprocess.run(
            _cli("--base-url", base_url, "jobs", "list"),
            capture_output=True,
            text=True,
            env={**env, "USEAPI_TOKEN": "user:1-wrong"},
            timeout=30,
        )
        assert refused.returncode == 3
        assert "user:1-wrong" not in refused.stdout + refused.stderr
    finally:
        server.send_signal(signal.SIGINT)
        try:
            code = server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert code == 130
