"""The one retry mechanism: a `RetryPolicy` configured once per client, and `Attempts` per request.

Everything that is retried goes through here: safe API requests (GETs, DELETE /jobs/{jobid})
in `_http.HttpCore`, the engine's re-placement of a paid job that was refused before it was
created (429, or a connection that never opened), and media downloads. This module only says
*how long* to wait and *when to give up*; whether a request may be repeated at all is decided by
its caller (a paid POST whose answer was lost is never repeated here: it is reconciled).

Three rules, the same everywhere:

- delays come from backoff's exponential wait generator with full jitter, capped, so many
  clients that failed at the same moment do not come back at once;
- a ``Retry-After`` from the server wins over our own schedule (capped, so a confused server
  cannot park us for hours);
- connection failures (the request never left) are retried for at most ``connect_budget``
  seconds of consecutive failure, then given up with a message naming the host: an
  unreachable API must fail in seconds, not hang until a job deadline. Until the client has
  had any answer from the API (`Contact`), the shorter ``first_contact_budget`` applies: a
  server never reached is most likely a wrong URL, not an outage worth waiting out.

Sleeping goes through anyio so the library runs under trio as well as asyncio.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import anyio
import backoff
import msgspec

if TYPE_CHECKING:
    from ._timing import Timing

__all__ = ["Attempts", "Contact", "RetryPolicy", "backoff_delays", "parse_retry_after", "sleep"]

logger = logging.getLogger("flowmusic_async")


class Contact:
    """Whether a client has ever had an answer from the API (any status, even an error).

    One per client (inside its `RetryPolicy`), shared by every request. Once the API has
    answered, a connection that fails is an outage, not a wrong address. Once a request has
    given up on a first contact (`given_up`), later ones try once without retrying until an
    answer arrives: a wrong URL costs one `first_contact_budget`, not one per request.
    """

    __slots__ = ("given_up", "made")

    def __init__(self) -> None:
        self.made: bool = False
        self.given_up: bool = False

    def __repr__(self) -> str:
        return f"<Contact made={self.made} given_up={self.given_up}>"

    def note(self) -> None:
        """An answer arrived."""
        self.made = True

    def give_up(self) -> None:
        """A request ran out of `first_contact_budget` without an answer."""
        self.given_up = True


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How a client retries; one per client, derived from its `Timing` and ``max_retries``.

    Args:
        max_retries: retries after the first attempt for a safe request (GET, DELETE).
        base: the first backoff delay before jitter; each later one doubles.
        cap: the longest backoff delay.
        retry_after_cap: the longest ``Retry-After`` honoured.
        connect_budget: seconds of consecutive connection failures tolerated before giving up.
        first_contact_budget: the same while `contact` says the API has never answered (the
            smaller of the two applies).
        contact: whether the API has answered this client yet; one per policy.
    """

    max_retries: int = 4
    base: float = 0.5
    cap: float = 30.0
    retry_after_cap: float = 60.0
    connect_budget: float = 30.0
    first_contact_budget: float = 4.0
    contact: Contact = msgspec.field(default_factory=Contact)

    def budget(self) -> float:
        """Seconds of consecutive connection failures to tolerate now."""
        if self.contact.made:
            return self.connect_budget
        if self.contact.given_up:
            return 0.0
        return min(self.first_contact_budget, self.connect_budget)

    @classmethod
    def from_timing(cls, timing: Timing, *, max_retries: int) -> RetryPolicy:
        """The policy for a client with this timing (scaled timings scale every delay)."""
        return cls(
            max_retries=max_retries,
            base=timing.retry_base,
            cap=timing.backoff_cap,
            retry_after_cap=timing.backoff_cap,
            connect_budget=timing.connect_budget,
            first_contact_budget=timing.first_contact_budget,
        )

    def retrying(
        self,
        *,
        max_retries: int | None = -1,
        base: float | None = None,
        give_up_at: float | None = None,
        stop: anyio.Event | None = None,
    ) -> Retrying:
        """One logical request's attempts: ``async for attempt in policy.retrying(...)``."""
        limit = self.max_retries if max_retries == -1 else max_retries
        return Retrying(
            self,
            max_retries=limit,
            base=self.base if base is None else base,
            give_up_at=give_up_at,
            stop=stop,
        )

    async def sleep(self, seconds: float, *, stop: anyio.Event | None = None) -> bool:
        """The one sleep of the retry paths; False when `stop` was set first."""
        if stop is None:
            await anyio.sleep(seconds)
            return True
        with anyio.move_on_after(seconds):
            await stop.wait()
        return not stop.is_set()

    def attempts(self, *, max_retries: int | None = -1, base: float | None = None) -> Attempts:
        """The retry state of one logical request.

        Args:
            max_retries: retries allowed for failures other than connection failures; -1 (the
                default) takes the policy's, None allows any number (the caller bounds time).
            base: a first delay other than the policy's (429s start at `Timing.backoff_base`).
        """
        limit = self.max_retries if max_retries == -1 else max_retries
        return Attempts(self, max_retries=limit, base=self.base if base is None else base)


class Attempts:
    """Counts one request's failures and says how long to wait before the next try, or stop."""

    def __init__(self, policy: RetryPolicy, *, max_retries: int | None, base: float) -> None:
        self._policy = policy
        self._max_retries = max_retries
        self._delays = backoff_delays(base=base, cap=policy.cap, max_tries=None)
        self.retries: int = 0
        self._failing_since: float | None = None  # first of the current run of connect failures

    def delay(self, *, retry_after: float | None = None, never_sent: bool = False) -> float | None:
        """Seconds to wait before trying again, or None to give up.

        Args:
            retry_after: the server's ``Retry-After`` in seconds, when it sent one.
            never_sent: the failure was a connection that never opened (counted against
                ``connect_budget`` in time rather than against ``max_retries``).
        """
        now = time.monotonic()
        budget = self._policy.budget()
        if never_sent:
            if self._failing_since is None:
                self._failing_since = now
            if now - self._failing_since >= budget:
                return None
        else:
            self._failing_since = None
            if self._max_retries is not None and self.retries >= self._max_retries:
                return None
        self.retries += 1
        wait = next(self._delays)
        if retry_after is not None:
            # The server said when to come back; sooner would only earn another refusal.
            wait = min(retry_after, self._policy.retry_after_cap)
        if never_sent and self._failing_since is not None:
            # Never sleep past the budget: the last try lands just before it runs out.
            left = self._failing_since + budget - now
            wait = max(0.0, min(wait, left))
        return wait

    @property
    def failing_for(self) -> float:
        """Seconds since the current run of connection failures began (0 when none)."""
        if self._failing_since is None:
            return 0.0
        return time.monotonic() - self._failing_since


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

    Accepts delta-seconds, integer or decimal, or an HTTP date. The result is clamped to
    ``[0, cap]`` so a hostile or confused server cannot park the client for hours.

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


# ----- temporary: the retry loop's interface, until the retry re-cut merges ---------------------


class Attempt:
    """One try of a logical request (`RetryPolicy.retrying`)."""

    def __init__(self, loop: Retrying, number: int) -> None:
        self._loop = loop
        self.number = number

    def retry(
        self, *, retry_after: float | None = None, never_sent: bool = False, wait: bool = True
    ) -> float | None:
        """Schedule another attempt; the delay, or None to give up."""
        return self._loop._schedule(retry_after=retry_after, never_sent=never_sent, wait=wait)


class Retrying:
    """`async for attempt in policy.retrying(...)`."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        max_retries: int | None,
        base: float,
        give_up_at: float | None,
        stop: anyio.Event | None,
    ) -> None:
        self._policy = policy
        self._give_up_at = give_up_at
        self._stop = stop
        self._other = Attempts(policy, max_retries=max_retries, base=base)
        self._never_sent = Attempts(policy, max_retries=max_retries, base=base)
        self._number = 0
        self._next: float | None = None
        self.stopped = False
        self.retries = 0

    def __aiter__(self) -> Retrying:
        return self

    async def __anext__(self) -> Attempt:
        if self._number:
            delay, self._next = self._next, None
            if delay is None:
                raise StopAsyncIteration
            if delay > 0 and not await self._policy.sleep(delay, stop=self._stop):
                self.stopped = True
                raise StopAsyncIteration
            if self._stop is not None and self._stop.is_set():
                self.stopped = True
                raise StopAsyncIteration
        self._number += 1
        return Attempt(self, self._number)

    def _schedule(self, *, retry_after: float | None, never_sent: bool, wait: bool) -> float | None:
        attempts = self._never_sent if never_sent else self._other
        delay = attempts.delay(retry_after=retry_after, never_sent=never_sent)
        if delay is None:
            return None
        if self._give_up_at is not None and time.monotonic() + delay > self._give_up_at:
            return None
        self.retries += 1
        self._next = delay if wait else 0.0
        return delay
