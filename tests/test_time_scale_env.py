"""FLOWMUSIC_TIME_SCALE, and the one warning when a client's timing is really wrong.

`flowmusic simulate --time-scale 0.01` prints `export FLOWMUSIC_TIME_SCALE='0.01'` beside the
token and URL, so the Quickstart, unchanged, runs at the simulator's pace. A client whose
timing is too slow for the server it talks to says so once, in one line, and only when a poll
shows it (a job that ran far longer by the server's clock than by ours).
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowmusic_async import ConfigurationError, FlowMusic, Timing
from flowmusic_async._cli import run
from flowmusic_async.testing import Simulator

TOKEN = "user:7-TimeScaleTestToken"
REPO = Path(__file__).resolve().parents[1]


# ----- the variable ---------------------------------------------------------------------------


def test_the_variable_scales_the_default_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client given no timing= takes the simulator's scale from the environment."""
    monkeypatch.setenv("FLOWMUSIC_TIME_SCALE", "0.01")
    assert FlowMusic(token=TOKEN).timing == Timing.scaled(0.01)
    assert Timing.from_env() == Timing.scaled(0.01)
    # An explicit timing= wins over the environment.
    assert FlowMusic(token=TOKEN, timing=Timing()).timing == Timing()
    monkeypatch.setenv("FLOWMUSIC_TIME_SCALE", " 1 ")
    assert FlowMusic(token=TOKEN).timing == Timing()
    monkeypatch.delenv("FLOWMUSIC_TIME_SCALE")
    assert FlowMusic(token=TOKEN).timing == Timing()


@pytest.mark.parametrize("value", ["fast", "0", "-1", "nan", "inf", "0,01"])
def test_an_invalid_value_is_a_clear_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """A typo must not silently mean "real API timing" (20 s per simulated song)."""
    monkeypatch.setenv("FLOWMUSIC_TIME_SCALE", value)
    with pytest.raises(ConfigurationError) as caught:
        FlowMusic(token=TOKEN)
    assert "FLOWMUSIC_TIME_SCALE" in str(caught.value) and repr(value) in str(caught.value)


@pytest.mark.anyio
async def test_the_cli_reads_the_variable_and_refuses_a_bad_one_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`--time-scale` is optional once the variable is exported; a bad value is exit 2."""
    sim = Simulator(time_scale=0.002, seed=1)
    monkeypatch.setenv("FLOWMUSIC_TIME_SCALE", "0.002")
    out, err = io.StringIO(), io.StringIO()
    argv = ["--token", sim.token, "--base-url", sim.base_url, "generate", "x", "--formats", "m4a"]
    started = time.monotonic()
    out_dir = str(tmp_path)
    code = await run([*argv, "--out", out_dir], transport=sim.transport(), stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    assert time.monotonic() - started < 5  # the real API's first look alone is 20 s
    monkeypatch.setenv("FLOWMUSIC_TIME_SCALE", "fast")
    err = io.StringIO()
    code = await run(
        ["--token", sim.token, "--base-url", sim.base_url, "jobs", "list"],
        transport=sim.transport(),
        stdout=io.StringIO(),
        stderr=err,
    )
    assert code == 2
    assert "FLOWMUSIC_TIME_SCALE" in err.getvalue() and "'fast'" in err.getvalue()


# ----- the warning ------------------------------------------------------------------------------


def test_too_slow_for_judges_by_the_servers_own_clock() -> None:
    """The decision behind the warning: a server clock at least 2x faster than the timing's."""
    real, scaled = Timing(), Timing.scaled(0.01)
    # The real API: a job never spans more of its seconds than of ours.
    assert real.too_slow_for(server_seconds=95, observed_seconds=97) is None
    # A simulator at 0.01 and a client at 0.01: noticed a little late, still the same clock.
    assert scaled.too_slow_for(server_seconds=95, observed_seconds=1.2) is None
    # A simulator at 0.01 and the real API's timing: first looked at after 20 s.
    assert real.too_slow_for(server_seconds=95, observed_seconds=20.1) == pytest.approx(20.1 / 95)
    # A client scaled for a slower simulator than the one it talks to.
    assert Timing.scaled(0.1).too_slow_for(server_seconds=95, observed_seconds=2.0) is not None


@pytest.mark.anyio
async def test_a_poll_that_sees_a_fast_clock_warns_once_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Timing 50x slower than the simulator's clock: one line, from the poll, naming the fix."""
    sim = Simulator(time_scale=0.002, seed=1)  # its first songs run 90 and 44 simulated s
    with caplog.at_level(logging.WARNING, logger="flowmusic_async"):
        async with sim.client(timing=Timing.scaled(0.1)) as fm:  # first look after 2 s
            assert not caplog.records  # opening the client warns about nothing
            await fm.generate("one")
            await fm.generate("two")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    (message,) = warnings
    assert "\n" not in message and "FLOWMUSIC_TIME_SCALE" in message
    assert "timing too slow" in message and "now 0.1" in message


@pytest.mark.anyio
async def test_matching_timing_never_warns(caplog: pytest.LogCaptureFixture) -> None:
    """A client at its simulator's scale hears nothing, however many songs it makes."""
    sim = Simulator(time_scale=0.002, seed=1)
    with caplog.at_level(logging.WARNING, logger="flowmusic_async"):
        async with sim.client() as fm:
            for prompt in ("one", "two", "three"):
                await fm.generate(prompt)
    assert not caplog.records


# ----- flowmusic simulate -> the Quickstart ------------------------------------------------------


@pytest.mark.timeout(60)
def test_simulate_prints_the_time_scale_export_and_the_cli_then_runs_fast(
    tmp_path: Path,
) -> None:
    """The printed exports, as a user pastes them, make `flowmusic generate` fast and quiet."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("USEAPI_TOKEN", "FLOWMUSIC_BASE_URL", "FLOWMUSIC_TIME_SCALE", "FLOWMUSIC_LOG"):
        env.pop(name, None)
    cli = [sys.executable, "-m", "flowmusic_async"]
    server = subprocess.Popen(
        [*cli, "simulate", "--port", "0", "--time-scale", "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        exports: dict[str, str] = {}
        for line in server.stdout:  # the announcement ends with "Press Ctrl-C to stop."
            if line.strip().startswith("export "):
                name, _, value = line.strip().removeprefix("export ").partition("=")
                exports[name] = value.strip("'")
            if line.startswith("Press Ctrl-C"):
                break
        assert exports["FLOWMUSIC_TIME_SCALE"] == "0.01"
        assert set(exports) == {"USEAPI_TOKEN", "FLOWMUSIC_BASE_URL", "FLOWMUSIC_TIME_SCALE"}
        started = time.monotonic()
        song = subprocess.run(
            [*cli, "generate", "lo-fi piano", "--out", str(tmp_path), "--formats", "m4a"],
            capture_output=True,
            text=True,
            env={**env, **exports},
            timeout=45,
        )
        took = time.monotonic() - started
        assert song.returncode == 0, song.stderr
        assert "WARNING" not in song.stderr
        # A 40-150 s song at 0.01 renders in 0.4-1.5 s; the real API's first look is 20 s.
        assert took < 10, took
    finally:
        server.terminate()
        server.wait(timeout=10)
