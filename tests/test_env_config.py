"""Configuration from the environment, as openai-python users expect it: FLOWMUSIC_BASE_URL,
FLOWMUSIC_LOG, no warning merely for a loopback URL, and sim.client().

FLOWMUSIC_TIME_SCALE and the warning when the timing is really wrong: test_time_scale_env.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from flowmusic_async import DEFAULT_BASE_URL, ConfigurationError, FlowMusic, Timing, _logs
from flowmusic_async.testing import Simulator

TOKEN = "user:7-EnvTestSecretToken"


@pytest.fixture
def fresh_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """FLOWMUSIC_LOG is read once per process: pretend it has not been yet; clean up after."""
    logger = logging.getLogger("flowmusic_async")
    saved = (logger.level, list(logger.handlers))
    monkeypatch.setattr(_logs, "_env_applied", False)
    monkeypatch.setattr(_logs, "_handler", None)
    yield
    logger.setLevel(saved[0])
    logger.handlers[:] = saved[1]


def test_base_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Quickstart runs against `flowmusic simulate` by exporting one variable."""
    monkeypatch.setenv("FLOWMUSIC_BASE_URL", "http://127.0.0.1:8765/v1/flowmusic/")
    fm = FlowMusic(token=TOKEN, timing=Timing.scaled(0.01))
    assert fm.base_url == "http://127.0.0.1:8765/v1/flowmusic"


def test_an_explicit_base_url_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWMUSIC_BASE_URL", "http://127.0.0.1:8765/v1/flowmusic")
    assert FlowMusic(token=TOKEN, base_url=DEFAULT_BASE_URL).base_url == DEFAULT_BASE_URL


def test_without_the_variable_the_real_api_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWMUSIC_BASE_URL", raising=False)
    assert FlowMusic(token=TOKEN).base_url == DEFAULT_BASE_URL
    monkeypatch.setenv("FLOWMUSIC_BASE_URL", "  ")
    assert FlowMusic(token=TOKEN).base_url == DEFAULT_BASE_URL


def test_a_plain_http_remote_url_from_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The variable gets the same check as the argument: the token never travels in clear."""
    monkeypatch.setenv("FLOWMUSIC_BASE_URL", "http://api.example.com/v1/flowmusic")
    with pytest.raises(ConfigurationError, match="plain http"):
        FlowMusic(token=TOKEN)


@pytest.mark.parametrize("value", ["debug", "INFO"])
def test_flowmusic_log_shows_the_library_log_on_stderr_without_the_token(
    monkeypatch: pytest.MonkeyPatch,
    fresh_logging: None,
    capsys: pytest.CaptureFixture[str],
    value: str,
) -> None:
    """Like OPENAI_LOG: one variable turns the log on; the token is blanked if it ever shows."""
    monkeypatch.setenv("FLOWMUSIC_LOG", value)
    FlowMusic(token=TOKEN)
    logger = logging.getLogger("flowmusic_async")
    assert logger.getEffectiveLevel() == (logging.DEBUG if value == "debug" else logging.INFO)
    logger.info("sent with %s", TOKEN)  # a hypothetical slip
    text = capsys.readouterr().err
    assert "INFO flowmusic_async: sent with ***" in text
    assert TOKEN not in text
    FlowMusic(token=TOKEN)  # a second client adds no second handler
    assert sum(h is _logs._handler for h in logger.handlers) == 1


def test_without_flowmusic_log_nothing_is_configured(
    monkeypatch: pytest.MonkeyPatch, fresh_logging: None
) -> None:
    """A library must not configure logging unless asked: the application decides."""
    monkeypatch.delenv("FLOWMUSIC_LOG", raising=False)
    before = list(logging.getLogger("flowmusic_async").handlers)
    FlowMusic(token=TOKEN)
    assert logging.getLogger("flowmusic_async").handlers == before


def test_an_unknown_flowmusic_log_value_is_reported_not_ignored_silently(
    monkeypatch: pytest.MonkeyPatch, fresh_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FLOWMUSIC_LOG", "verbose")
    with caplog.at_level(logging.WARNING, logger="flowmusic_async"):
        FlowMusic(token=TOKEN)
    assert "FLOWMUSIC_LOG='verbose' is not one of debug, info" in caplog.text


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost", "[::1]:9000"])
def test_real_timing_against_a_loopback_url_alone_warns_nothing(
    caplog: pytest.LogCaptureFixture, host: str
) -> None:
    """A simulator at time scale 1 is served on loopback too: nothing is wrong with that.

    The warning used to fire at construction, at scale 1 and for commands that never poll;
    it now fires only when a poll shows the timing is wrong (test_time_scale_env.py).
    """
    with caplog.at_level(logging.WARNING, logger="flowmusic_async"):
        FlowMusic(token=TOKEN, base_url=f"http://{host}/v1/flowmusic")
    assert not caplog.records


@pytest.mark.parametrize(
    ("base_url", "timing"),
    [
        ("http://127.0.0.1:8765/v1/flowmusic", Timing.scaled(0.01)),
        (DEFAULT_BASE_URL, None),
    ],
)
def test_no_warning_with_scaled_timing_or_the_real_api(
    caplog: pytest.LogCaptureFixture, base_url: str, timing: Timing | None
) -> None:
    with caplog.at_level(logging.WARNING, logger="flowmusic_async"):
        FlowMusic(token=TOKEN, base_url=base_url, timing=timing)
    assert not caplog.records


@pytest.mark.anyio
async def test_sim_client_runs_a_song_at_the_simulators_pace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One call gives a client bound to the simulator, with its Timing: no warning, fast songs."""
    sim = Simulator(time_scale=0.002)
    with caplog.at_level(logging.WARNING, logger="flowmusic_async"):
        async with sim.client() as fm:
            assert fm.timing == Timing.scaled(0.002)
            job = await fm.generate("lo-fi piano")
    assert job.status == "completed"
    assert not caplog.records
    assert sim.stats.jobs_created == 1
