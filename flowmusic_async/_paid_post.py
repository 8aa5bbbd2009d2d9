"""What a failed paid POST (/music or /music/edit) means: `classify` turns its error into a verdict.

Every failure falls in one of four cases, and the submitter acts on each:

- `Final`: the server said no (400, 401, 403, 422), or an account the job must run on cannot
  take it: raised to the caller at once;
- `PlaceAgain`: the server said not here or not now (429, 402, 596, 404 for an account), or the
  connection never opened: nothing was created, so the job is placed again, elsewhere or after
  a backoff;
- `Reconcile`: nobody knows (the connection dropped after sending, a 5xx, a broken body): the
  job may exist and be charged. It is never blindly resent: the submitter looks for its
  reference among the running jobs (`_reconcile.py`);
- `Adopt`: a success status whose body could not be read but named the job: it exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import httpx
import msgspec

from ._errors import (
    AccountBusyError,
    AccountError,
    DecodeError,
    FlowMusicError,
    InsufficientCreditsError,
    NotFoundError,
    RateLimitError,
    RequestTimeout,
    ServerError,
    TransportError,
)
from ._lanes import Place
from ._models import Account, AccountJobs, Job, Usage
from ._submission import JobPath

__all__ = ["Adopt", "Final", "JobsAPI", "PlaceAgain", "Reconcile", "PostOutcome", "classify"]


class JobsAPI(Protocol):
    """The API calls the submitter makes; `FlowMusic` provides them over its namespaces."""

    async def create_job(
        self, path: JobPath, body: Mapping[str, Any], place: Place | None = None
    ) -> Job:
        """POST /music or /music/edit once (never retried), in `place` if one was taken."""

    def place_ahead(self) -> Place:
        """A place among the requests in flight, to take before a `create_job` and pass to it."""

    async def list_running(self) -> Mapping[str, AccountJobs]:
        """GET /jobs."""

    async def get_job(self, jobid: str) -> Job:
        """GET /jobs/{jobid}."""

    async def cancel_job(self, jobid: str) -> None:
        """DELETE /jobs/{jobid}."""

    async def list_accounts(self) -> Mapping[str, Account]:
        """GET /accounts."""

    async def account_usage(self, email: str) -> Usage:
        """GET /accounts/usage: what the account was charged, per song."""

    def unreachable(self, error: FlowMusicError, tries: int) -> TransportError:
        """The error that ends a request whose connection never opened, naming the host."""


class Final(msgspec.Struct, frozen=True):
    """Raise `error`; `take_out` names an account that cannot take jobs any more."""

    error: FlowMusicError
    take_out: str | None = None


class PlaceAgain(msgspec.Struct, frozen=True, kw_only=True):
    """Nothing was created: place the job again.

    Args:
        error: what refused it (raised if the retries run out).
        retry_after: the server's ``Retry-After``, if it sent one.
        never_sent: the connection never opened (counted against the connect budget).
        hold_full: a 429 from an account we track: hold it back until a sweep shows room
            (the slot went to another process since our last sweep).
        take_out: an account that cannot take jobs (402, 596, removed): out of rotation.
        at_once: placed again without a backoff: the scheduler gives the job a slot
            elsewhere, or it waits for one.
    """

    error: FlowMusicError
    retry_after: float | None = None
    never_sent: bool = False
    hold_full: bool = False
    take_out: str | None = None
    at_once: bool = False


class Reconcile(msgspec.Struct, frozen=True, kw_only=True):
    """The POST may have created a job: look for it before anything else.

    `absence_proves`: not finding it proves it was not created. False after our own timeout:
    the server may still be working on the request and create the job after we look.
    """

    error: FlowMusicError
    absence_proves: bool = True


class Adopt(msgspec.Struct, frozen=True):
    """A success status whose body was unreadable but named the job: read it and adopt it."""

    jobid: str


PostOutcome = Final | PlaceAgain | Reconcile | Adopt


def classify(
    error: FlowMusicError, *, email: str | None, pinned: bool, tracked: bool
) -> PostOutcome:
    """What the failure of a paid POST sent to `email` means.

    Args:
        email: the account the POST named (None: the server chose).
        pinned: the job must run on `email` (named by the caller, or an edit's clip account),
            so an account that cannot take jobs is final rather than a reason to go elsewhere.
        tracked: the scheduler knows the accounts (it can hold one back after a 429).
    """
    if isinstance(error, RateLimitError):
        busy = isinstance(error, AccountBusyError) and tracked
        return PlaceAgain(
            error=error, retry_after=error.retry_after, hold_full=busy, at_once=busy and not pinned
        )
    if isinstance(error, (InsufficientCreditsError, AccountError)):
        account = email or error.email
        if email is None or pinned:
            return Final(error, take_out=account)
        return PlaceAgain(error=error, take_out=account, at_once=True)
    if isinstance(error, NotFoundError):
        if email is None or pinned:
            return Final(error)
        # The account was removed meanwhile.
        return PlaceAgain(error=error, take_out=email, at_once=True)
    if isinstance(error, TransportError):
        if not error.maybe_sent:  # the request never left: safe to send again
            return PlaceAgain(error=error, never_sent=True)
        return Reconcile(
            error=error,
            absence_proves=not (
                isinstance(error, RequestTimeout)
                or isinstance(error.__cause__, httpx.TimeoutException)
            ),
        )
    if isinstance(error, DecodeError):
        if error.jobid:  # a 2xx with a jobid: the job exists even if the body is odd
            return Adopt(error.jobid)
        return Reconcile(error=error)
    if isinstance(error, ServerError):
        return Reconcile(error=error)
    return Final(error)
