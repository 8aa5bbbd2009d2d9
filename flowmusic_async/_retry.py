"""The one retry mechanism: a `RetryPolicy` configured once per client, one loop per request.

Every retried request is a loop shaped like stamina's ``retry_context``; its body only says
whether a failure deserves another try::

    async for attempt in policy.retrying():
        try:
            return await send()
        except TransientError as error:
            if attempt.retry(retry_after=error.retry_after) is None:
                raise  # out of retries (or of time): the caller's error stands

The loop (`Retrying`) sleeps between attempts through `RetryPolicy.sleep`, the one sleep of
every retry path: safe API requests (GETs, DELETE /jobs/{jobid}) in `_http.HttpCore`, the
engine's re-placement of a paid job that was refused before it was created (429, or a
connection that never opened), and media downloads. This module only says *how long* to wait
and *when to give up*; whether a request may be repeated at all is decided by its caller (a
paid POST whose answer was lost is never repeated here: it is reconciled).

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

Sleeping goes through anyio so the library runs under trio as well as asyncio. Tests turn the
sleeps off with the testing switch (`instant_retries`, `set_instant_retries`, shipped as
``flowmusic_async.testing``), like stamina's ``set_testing``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import anyio
import anyio.lowlevel
import backoff
import msgspec

__all__ = [
    "Attempt",
    "Contact",
    "RetryPolicy",
    "Retrying",
    "backoff_delays",
    "instant_retries",
    "parse_retry_after",
    "set_instant_retries",
]

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

    def retrying(
        self,
        *,
        max_retries: int | None = -1,
        base: float | None = None,
        give_up_at: float | None = None,
        stop: anyio.Event | None = None,
    ) -> Retrying:
        """The attempts of one logical request: ``async for attempt in policy.retrying():``.

        Args:
            max_retries: retries allowed for failures other than connection failures; -1 (the
                default) takes the policy's, None allows any number (the caller bounds time).
            base: a first delay other than the policy's (429s start at `Timing.backoff_base`).
            give_up_at: a ``time.monotonic()`` instant; a retry whose delay would end after it
                is not scheduled (`Attempt.retry` returns None).
            stop: once set, no further attempt is made; a sleep under way ends at once and
                the loop ends with `Retrying.stopped` True.
        """
        return Retrying(
            self,
            max_retries=self.max_retries if max_retries == -1 else max_retries,
            base=self.base if base is None else base,
            give_up_at=give_up_at,
            stop=stop,
        )

    async def sleep(self, seconds: float, *, stop: anyio.Event | None = None) -> bool:
        """The one sleep of every retry path, through anyio (asyncio or trio).

        Returns False when `stop` was set before or during the sleep (it then ends at once),
        True when the whole delay passed. Under the testing switch
        (`flowmusic_async.testing.instant_retries`) it records `seconds` and returns at once.
        """
        if stop is not None and stop.is_set():
            return False
        if _instant.active:
            if _instant.delays is not None:
                _instant.delays.append(seconds)
            await anyio.lowlevel.checkpoint()  # still a point where cancellation is seen
            return stop is None or not stop.is_set()
        if stop is None:
            await anyio.sleep(seconds)
            return True
        with anyio.move_on_after(seconds):
            await stop.wait()
            return False
        return True


class Retrying:
    """The attempts of one request, an async iterator of `Attempt` (`RetryPolicy.retrying`).

    The first attempt comes at once, `stop` or not (stop means no *further* attempt). A later
    one comes only if the previous attempt called `Attempt.retry` and got a delay: that delay
    is slept through `RetryPolicy.sleep` (not when ``wait=False``), then the next attempt
    follows. The loop ends when an attempt scheduled no retry (it succeeded, gave up or
    raised) or when `stop` is set (`stopped`).

    Delays come from two jittered backoff sequences, one for connection failures (the request
    never left) and one for the rest, so a run of refused connections does not stretch the
    delay after a 5xx. Owned by the task that iterates it; not to be shared.

    Attributes:
        stopped: True when the loop ended because `stop` was set.
        retries: retries scheduled so far (both kinds).
    """

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
        self._max_retries = max_retries
        self._give_up_at = give_up_at
        self._stop = stop
        self._base = base
        # Made on the first retry of each kind: most requests never retry.
        self._delays: Iterator[float] | None = None
        self._connect_delays: Iterator[float] | None = None
        self._ordinary_retries = 0  # what max_retries counts: connection failures count in time
        self._failing_since: float | None = None  # first of the current run of connect failures
        # The attempt under way, and what its `retry` scheduled: (delay, sleep through it).
        # The attempt points here, never the other way: a reference cycle would leave every
        # request's retry state to the cyclic garbage collector (docs/benchmarks.md).
        self._number = 0
        self._next: tuple[float, bool] | None = None
        self.stopped: bool = False
        self.retries: int = 0

    def __repr__(self) -> str:
        return f"<Retrying retries={self.retries} stopped={self.stopped}>"

    def __aiter__(self) -> Retrying:
        return self

    async def __anext__(self) -> Attempt:
        if self._number:
            scheduled, self._next = self._next, None
            if scheduled is None:
                raise StopAsyncIteration
            delay, waits = scheduled
            if waits:
                finished = await self._policy.sleep(delay, stop=self._stop)
            else:
                finished = self._stop is None or not self._stop.is_set()
            if not finished:
                self.stopped = True
                raise StopAsyncIteration
        self._number += 1
        return Attempt(self, number=self._number)

    def _backoff(self) -> Iterator[float]:
        return backoff_delays(base=self._base, cap=self._policy.cap, max_tries=None)

    def _schedule(self, *, retry_after: float | None, never_sent: bool) -> float | None:
        """The delay before the next attempt, or None to give up (`Attempt.retry`)."""
        policy = self._policy
        now = time.monotonic()
        budget = policy.budget()
        if never_sent:
            if self._failing_since is None:
                self._failing_since = now
            if now - self._failing_since >= budget:
                return None
            if self._connect_delays is None:
                self._connect_delays = self._backoff()
            wait = next(self._connect_delays)
        else:
            self._failing_since = None
            if self._max_retries is not None and self._ordinary_retries >= self._max_retries:
                return None
            if self._delays is None:
                self._delays = self._backoff()
            wait = next(self._delays)
        if retry_after is not None:
            # The server said when to come back; sooner would only earn another refusal.
            wait = min(retry_after, policy.retry_after_cap)
        if never_sent and self._failing_since is not None:
            # Never sleep past the budget: the last try lands just before it runs out.
            wait = max(0.0, min(wait, self._failing_since + budget - now))
        if self._give_up_at is not None and now + wait > self._give_up_at:
            return None
        if not never_sent:
            self._ordinary_retries += 1
        self.retries += 1
        return wait


class Attempt:
    """One try of a request, yielded by `Retrying`; its body calls `retry` when it failed.

    Attributes:
        number: 1 for the first try, 2 for the first retry, and so on.
    """

    __slots__ = ("_retrying", "_scheduled", "number")

    def __init__(self, retrying: Retrying, *, number: int) -> None:
        self._retrying = retrying
        self.number = number
        self._scheduled = False  # `retry` was called

    def __repr__(self) -> str:
        return f"<Attempt number={self.number} retry={self._scheduled}>"

    def retry(
        self, *, retry_after: float | None = None, never_sent: bool = False, wait: bool = True
    ) -> float | None:
        """Schedule another attempt; return its delay, or None to give up (raise your error).

        Gives up when ``max_retries`` ordinary failures were retried, when a run of connection
        failures has lasted the policy's connect budget (`RetryPolicy.budget`), or when the
        delay would end after ``give_up_at``.

        Args:
            retry_after: the server's ``Retry-After`` in seconds; it replaces the backoff
                delay, capped at ``retry_after_cap``.
            never_sent: the failure was a connection that never opened (counted against the
                connect budget in time rather than against ``max_retries``).
            wait: False to have the next attempt come without sleeping (the delay is still
                computed and returned, e.g. to hold a refusing account back that long).
        """
        retrying = self._retrying
        if self._scheduled:
            raise RuntimeError(f"attempt {self.number} already scheduled a retry")
        self._scheduled = True
        delay = retrying._schedule(retry_after=retry_after, never_sent=never_sent)
        if delay is not None:
            retrying._next = (delay, wait)
        return delay


class _InstantRetries:
    """The testing switch: when active, `RetryPolicy.sleep` returns at once."""

    __slots__ = ("active", "delays")

    def __init__(self) -> None:
        self.active = False
        self.delays: list[float] | None = None  # where `instant_retries` collects the delays


_instant = _InstantRetries()  # process-wide, like stamina's set_testing


def set_instant_retries(enabled: bool) -> None:
    """Turn the testing switch on or off for the whole process (every client, every loop).

    On, every retry of the library (API requests, downloads) comes at once instead of after
    its backoff or ``Retry-After`` delay; budgets and ``max_retries`` still apply. For a
    whole test session (a session-scoped autouse fixture); `instant_retries` also records
    the delays and restores the previous state.
    """
    _instant.active = bool(enabled)
    _instant.delays = None


@contextmanager
def instant_retries() -> Iterator[list[float]]:
    """Retries come at once inside the block; yields the delays they would have slept, in order.

    Process-wide while the block runs; on exit the previous state (on or off) is restored.
    """
    saved = (_instant.active, _instant.delays)
    delays: list[float] = []
    _instant.active, _instant.delays = True, delays
    try:
        yield delays
    finally:
        _instant.active, _instant.delays = saved


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
