"""The free dry run: what a batch would cost and how long it would take, with nothing paid sent.

`estimate_batch` validates every request as `generate_many` does, prices the valid ones with
the spend ledger's cost table, and reads the accounts (one GET /accounts, one
GET /accounts/{email} per account: free reads) for their balances and maxJobs.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Any, Protocol

import msgspec

from ._batch import check_request
from ._models import Account
from ._requests import SongRequest
from ._spend import CostTable
from ._timing import Timing

__all__ = ["AccountEstimate", "BatchEstimate", "InvalidRequest", "estimate_batch"]


class _AccountReads(Protocol):
    async def list(self) -> dict[str, Account]: ...

    async def get(self, email: str) -> Account: ...


class InvalidRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A request the batch would refuse before sending (it would cost nothing).

    Attributes:
        index: its position in the batch (0-based).
        field: the offending field.
        message: why (the `ValidationError`'s message).
    """

    index: int
    field: str
    message: str


class AccountEstimate(msgspec.Struct, frozen=True, kw_only=True):
    """One configured account, as the dry run read it.

    Attributes:
        email: the account.
        max_jobs: its maxJobs (songs at once), None if the API did not say.
        credits_remaining: its live balance, None when the API gave none (error state).
        error: the reason it is in error state (it takes no jobs), else None.
        songs_affordable: whole songs its balance pays for, None when unknown.
    """

    email: str
    max_jobs: int | None = None
    credits_remaining: float | None = None
    error: str | None = None
    songs_affordable: int | None = None


class BatchEstimate(msgspec.Struct, frozen=True, kw_only=True):
    """What a batch would cost and take, from a dry run that paid for nothing.

    Attributes:
        songs: valid requests, each one paid POST /music.
        invalid: requests that would be refused before sending.
        cost_per_song: credits one song is expected to spend.
        cost_source: where that figure comes from: "default", "configured" or "learned".
        total_credits: songs x cost_per_song.
        budget: the budget it was compared with, or None.
        within_budget: total_credits <= budget (None without a budget).
        songs_within_budget: whole songs the budget pays for (None without a budget).
        accounts: every configured account.
        credits_available: the healthy accounts' balances summed (None if one is unknown).
        within_balances: total_credits <= credits_available (None when unknown).
        slots: maxJobs summed over healthy accounts: songs running at once.
        song_seconds: a typical song's duration used for the time estimate.
        song_seconds_source: where that figure comes from.
        duration_seconds: ceil(songs / slots) rounds of song_seconds (None with no slot).
    """

    songs: int
    invalid: tuple[InvalidRequest, ...] = ()
    cost_per_song: float
    cost_source: str
    total_credits: float
    budget: float | None = None
    within_budget: bool | None = None
    songs_within_budget: int | None = None
    accounts: tuple[AccountEstimate, ...] = ()
    credits_available: float | None = None
    within_balances: bool | None = None
    slots: int = 0
    song_seconds: float
    song_seconds_source: str
    duration_seconds: float | None = None


async def estimate_batch(
    accounts: _AccountReads,
    requests: Iterable[str | SongRequest | Mapping[str, Any]]
    | AsyncIterable[str | SongRequest | Mapping[str, Any]],
    *,
    budget: float | None = None,
    costs: CostTable | None = None,
    timing: Timing | None = None,
) -> BatchEstimate:
    """Estimate a batch without paying: validate, price, read balances and capacity.

    Sends only free reads: one GET /accounts and one GET /accounts/{email} per account.

    Args:
        accounts: the client's account reads (``fm.accounts``).
        requests: what `generate_many` takes: prompts, `SongRequest`s or mappings.
        budget: credits to compare the total with.
        costs: the cost table (default: `DEFAULT_COSTS`).
        timing: its `typical_job_seconds` is the song duration used (default: `Timing()`'s
            95 s, the middle of the 40-150 s the API documents for a song).
    """
    costs = costs if costs is not None else CostTable()
    timing = timing if timing is not None else Timing()
    songs, invalid = 0, []
    async for index, request in _enumerate(requests):
        # As generate_many reads them: a SongRequest by its fields, then one check for all.
        _, error = check_request(
            request.to_params() if isinstance(request, SongRequest) else request
        )
        if error is None:
            songs += 1
        else:
            invalid.append(InvalidRequest(index=index, field=error.field, message=str(error)))
    cost = costs.cost("song")
    total = songs * cost
    configured = await accounts.list()
    read = [await accounts.get(email) for email in configured]
    estimates = tuple(_account_estimate(account, cost) for account in read)
    healthy = [a for a in estimates if a.error is None]
    slots = sum(a.max_jobs or 0 for a in healthy)
    balances = [a.credits_remaining for a in healthy]
    available = None if None in balances or not healthy else sum(b or 0.0 for b in balances)
    song_seconds = timing.typical_job_seconds
    return BatchEstimate(
        songs=songs,
        invalid=tuple(invalid),
        cost_per_song=cost,
        cost_source=costs.source("song"),
        total_credits=total,
        budget=budget,
        within_budget=None if budget is None else total <= budget + 1e-9,
        songs_within_budget=None if budget is None else _whole(budget, cost),
        accounts=estimates,
        credits_available=available,
        within_balances=None if available is None else total <= available + 1e-9,
        slots=slots,
        song_seconds=song_seconds,
        song_seconds_source="Timing.typical_job_seconds",
        duration_seconds=math.ceil(songs / slots) * song_seconds if slots else None,
    )


async def _enumerate(
    requests: Iterable[Any] | AsyncIterable[Any],
) -> AsyncIterable[tuple[int, Any]]:
    if isinstance(requests, AsyncIterable):
        index = 0
        async for request in requests:
            yield index, request
            index += 1
    else:
        for index, request in enumerate(requests):
            yield index, request


def _whole(credits: float, cost: float) -> int | None:
    """Whole songs `credits` pay for; None when a song is free (any number)."""
    if cost <= 0:
        return None
    return max(0, math.floor(credits / cost + 1e-9))


def _account_estimate(account: Account, cost: float) -> AccountEstimate:
    credits = account.credits_remaining
    return AccountEstimate(
        email=account.email,
        max_jobs=account.max_jobs,
        credits_remaining=credits,
        error=account.error,
        songs_affordable=None if credits is None else _whole(credits, cost),
    )
