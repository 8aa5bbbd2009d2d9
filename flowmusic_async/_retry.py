"""Retry timing: backoff's exponential wait generator with full jitter, Retry-After, anyio sleep.

Nothing here decides *whether* to retry (that is `_http.HttpCore`'s job, which only retries
requests that are safe to repeat); this module only says *how long* to wait. Sleeping goes
through anyio so the library runs under trio as well as asyncio.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import anyio
import backoff

__all__ = ["backoff_delays", "parse_retry_after", "sleep"]


def backoff_delays(*, base: float, cap: float, max_tries: int | None) -> Iterator[float]:
    """Yield the delays to wait between attempts: exponential, capped, with full jitter.

    Full jitter (a uniform draw in ``[0, delay]``) spreads many clients that failed at the
    same moment, so they do not all come back at once.

    Args:
        base: the first delay before jitter (seconds); each later one doubles.
        cap: the largest delay before jitter.
        max_tries: total attempts allowed, so at most ``max_tries - 1`` delays are yielded;
            ``None`` yields forever.
    """
    waits = backoff.expo(base=2, factor=base, max_value=cap)
    next(waits)  # backoff's wait generators first yield None, to accept .send()
    produced = 0
    while max_tries is None or produced < max_tries - 1:
        yield float(backoff.full_jitter(next(waits)))
        produced += 1


def parse_retry_after(value: str | None, *, cap: float) -> float | None:
    """Read a ``Retry-After`` header as seconds to wait, or None when absent or unreadable.

    Accepts delta-seconds, integer or decimal (the simulator sends scaled decimals such as
    ``0.1``), or an HTTP date. The result is clamped to ``[0, cap]`` so a hostile or confused
    server cannot park the client for hours.

    Args:
        value: the raw header value.
        cap: the largest wait to return.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds: float | None
    try:
        seconds = float(text)
    except ValueError:
        seconds = _seconds_until_http_date(text)
    if seconds is None:
        return None
    if math.isnan(seconds) or seconds < 0:
        return None
    return min(seconds, cap)


def _seconds_until_http_date(text: str) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive result means "GMT"
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


async def sleep(seconds: float) -> None:
    """Sleep through anyio, so the caller's event loop (asyncio or trio) is respected."""
    await anyio.sleep(seconds)
