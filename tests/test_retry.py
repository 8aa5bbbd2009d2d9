"""Retry timing: jittered capped backoff, Retry-After parsing, anyio sleep."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import anyio
import pytest

from flowmusic_async._retry import backoff_delays, parse_retry_after, sleep


def test_backoff_yields_one_delay_less_than_tries() -> None:
    """max_tries counts attempts; one extra delay would mean one extra (maybe paid) attempt."""
    assert len(list(backoff_delays(base=0.1, cap=1, max_tries=5))) == 4
    assert list(backoff_delays(base=0.1, cap=1, max_tries=1)) == []


def test_backoff_is_exponential_capped_and_jittered() -> None:
    """Each delay lies in [0, min(cap, base*2^n)]; full jitter spreads clients apart."""
    random.seed(7)
    for _ in range(50):
        delays = list(backoff_delays(base=1, cap=5, max_tries=7))
        for n, delay in enumerate(delays):
            assert 0 <= delay <= min(5, 2**n)
    firsts = {round(next(backoff_delays(base=1, cap=5, max_tries=3)), 6) for _ in range(20)}
    assert len(firsts) > 1  # jittered, not a fixed schedule


def test_backoff_without_limit_runs_forever() -> None:
    """max_tries=None is for loops bounded by something else (a deadline)."""
    delays = list(itertools.islice(backoff_delays(base=0.01, cap=0.1, max_tries=None), 100))
    assert len(delays) == 100 and max(delays) <= 0.1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10", 10.0),
        ("0.25", 0.25),  # the simulator sends scaled decimals
        (" 3 ", 3.0),
        ("9999", 60.0),  # capped
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("nan", None),
    ],
)
def test_parse_retry_after_delta_seconds(value: str | None, expected: float | None) -> None:
    """Retry-After decides how long a 429 waits; a bad header must not break or stall."""
    assert parse_retry_after(value, cap=60) == expected


def test_parse_retry_after_http_date() -> None:
    """Retry-After may be an HTTP date; it becomes the seconds until then."""
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    seconds = parse_retry_after(format_datetime(when, usegmt=True), cap=120)
    assert seconds is not None and 25 <= seconds <= 31
    past = datetime.now(timezone.utc) - timedelta(seconds=30)
    assert parse_retry_after(format_datetime(past, usegmt=True), cap=120) == 0


@pytest.mark.anyio
async def test_sleep_waits_through_anyio() -> None:
    """The library sleeps through anyio, so it respects the running loop's clock."""
    start = anyio.current_time()
    await sleep(0.01)
    assert anyio.current_time() - start >= 0.009
