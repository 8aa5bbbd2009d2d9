"""Live account balances, read at most every few seconds per account, and the credit floor.

`Balances` answers one question for the scheduler: may this account take a job costing c and
still keep `min_credits_left` credits? The server's balance (GET /accounts/{email}) is the one
figure every process on the same accounts shares, so a floor checked against it holds across
processes without a coordinator; our own submissions since the last read are subtracted from
it through the spend ledger, so a process does not need a read per song.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import anyio

from ._errors import FlowMusicError, NoAccountAvailable, ValidationError
from ._models import Account
from ._spend import SpendLedger

# The most jobs an account runs at once (the contract's maxJobs range tops out at 16): how
# near the floor a balance counts as near, in jobs.
FULL_ACCOUNT_JOBS = 16

__all__ = ["BalanceReader", "Balances", "balance_reader"]

BalanceReader = Callable[[str], Awaitable[float | None]]
"""email -> the account's live ``credits_remaining`` (None when the API gives none, e.g. an
account in error state)."""


class _AccountReads(Protocol):
    async def get(self, email: str) -> Account: ...


def balance_reader(accounts: _AccountReads) -> BalanceReader:
    """A `BalanceReader` over a client's ``fm.accounts`` (GET /accounts/{email}, a free read)."""

    async def read(email: str) -> float | None:
        return (await accounts.get(email)).credits_remaining

    return read


@dataclass
class _Reading:
    credits: float | None
    at: float  # monotonic
    accepted_total: float  # the ledger's accepted_total on the account when it was read


class Balances:
    """The last live balance per account, and whether an account may take one more job.

    Reads go through `read`, at most once every `refresh_every` seconds per account; callers
    that need a refresh while one is under way wait for it instead of reading again. Between
    reads, the estimate is the last balance minus what this client submitted to the account
    since (held reservations and jobs accepted after the read), so it errs low, never high,
    for this process. Other processes' spend shows only through the next read.

    May be shared by every task of one event loop.

    Args:
        read: fetches one account's live balance (GET /accounts/{email}).
        ledger: the client's spend ledger (its reservations per account).
        min_credits_left: the floor: an account whose balance would drop below it by one more
            job is not offered that job.
        refresh_every: seconds between two reads of one account.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        *,
        read: BalanceReader,
        ledger: SpendLedger,
        min_credits_left: float = 0.0,
        refresh_every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not math.isfinite(min_credits_left) or min_credits_left < 0:
            raise ValidationError("min_credits_left", "must be a finite number of credits >= 0")
        if not math.isfinite(refresh_every) or refresh_every < 0:
            raise ValidationError("refresh_every", "must be a finite number of seconds >= 0")
        self._read = read
        self._ledger = ledger
        self.min_credits_left: float = float(min_credits_left)
        self.refresh_every: float = float(refresh_every)
        self._clock = clock
        self._readings: dict[str, _Reading] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self.reads: int = 0  # GET /accounts/{email} calls made, for tests and benchmarks

    def _due(self, email: str, max_age: float | None) -> bool:
        reading = self._readings.get(email)
        limit = self.refresh_every if max_age is None else max_age
        return reading is None or self._clock() - reading.at >= limit

    async def refresh(
        self, email: str, *, force: bool = False, max_age: float | None = None
    ) -> float | None:
        """Read the account's balance if the last read is older than `max_age` (default
        `refresh_every`), or `force`; return the estimate (see `estimate`). Tasks asking
        together share one read. An error from `read` propagates and the last reading is
        kept."""
        if force or self._due(email, max_age):
            lock = self._locks.setdefault(email, anyio.Lock())
            async with lock:
                # Another task may have read it meanwhile.
                if force or self._due(email, max_age):
                    # Taken before the read: a job accepted while it is on the wire may or may
                    # not be in the answer, so it is counted as after it (errs low).
                    accepted_total = self._ledger.position(email).accepted_total
                    credits = await self._read(email)
                    self.reads += 1
                    self._readings[email] = _Reading(credits, self._clock(), accepted_total)
        return self.estimate(email)

    def balance(self, email: str) -> float | None:
        """The balance of the last read (None: never read, or the API gave none)."""
        reading = self._readings.get(email)
        return None if reading is None else reading.credits

    def estimate(self, email: str) -> float | None:
        """The last balance minus this client's held reservations on the account and the jobs
        it accepted since that read (None: unknown)."""
        reading = self._readings.get(email)
        if reading is None or reading.credits is None:
            return None
        position = self._ledger.position(email)
        since = max(0.0, position.accepted_total - reading.accepted_total)
        return reading.credits - position.held - since

    def may_take(self, email: str, cost: float) -> bool:
        """True when the account keeps at least `min_credits_left` after a job costing `cost`
        (and everything this client has in flight on it). An unknown balance is not refused
        here: a 402 or 596 takes such an account out of rotation instead."""
        estimate = self.estimate(email)
        if estimate is None:
            return True
        return estimate - cost >= self.min_credits_left - 1e-9

    async def refusal(
        self, email: str, cost: float, *, near_every: float
    ) -> NoAccountAvailable | None:
        """Why `email` may not take a job costing `cost` (its balance, less what this client
        has in flight on it, would fall below `min_credits_left`), or None when it may.

        Between reads the balance is estimated (the last read less what this client sent
        since); reads show what other processes spent. The nearer the floor, the more often
        it is read: every `near_every` seconds within what a full account's slots cost,
        every `refresh_every` within ten times that, else ten times less often. A read that
        fails leaves the decision to the server (a 402 takes the account out instead).
        """
        full_account = FULL_ACCOUNT_JOBS * cost
        estimate = self.estimate(email)
        room = math.inf if estimate is None else estimate - cost - self.min_credits_left
        if room < full_account:
            max_age = near_every
        elif room < 10 * full_account:
            max_age = self.refresh_every
        else:
            max_age = 10 * self.refresh_every
        try:
            left = await self.refresh(email, max_age=max_age)
        except FlowMusicError:
            return None
        if self.may_take(email, cost):
            return None
        return NoAccountAvailable(
            f"account {email} is at its credit floor: about {left or 0:g} credits left, "
            f"min_credits_left={self.min_credits_left:g}, a job costs {cost:g}",
            email=email,
        )

    async def topped_up(self, emails: list[str], cost: float) -> list[str]:
        """Of the accounts held out at the floor, those whose balance, read now, allows a
        job costing `cost` again (a top-up). An account whose read fails stays out."""
        back: list[str] = []
        for email in emails:
            try:
                await self.refresh(email, force=True)
            except FlowMusicError:
                continue
            if self.may_take(email, cost):
                back.append(email)
        return back

    async def admits(self, email: str, cost: float) -> bool:
        """`may_take` after a `refresh` if one is due: the scheduler's question."""
        await self.refresh(email)
        return self.may_take(email, cost)
