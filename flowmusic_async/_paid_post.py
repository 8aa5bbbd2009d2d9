"""One paid POST (/music or /music/edit) and what its failure means.

Every failure of the POST falls in one of three cases:

- the server said no (400, 401, 403, 422): final, raised at once;
- the server said not here or not now (429, 402, 596, 404 for an account), or the connection
  never opened: nothing was created, so `Retry` asks for the job to be placed again,
  elsewhere or after a backoff;
- nobody knows (the connection dropped after sending, a 5xx, a broken body): the job may exist
  and be charged. It is never blindly resent. We look for our reference among the running
  jobs; found, the job is adopted; proven absent, it is sent again; otherwise
  `SubmissionUncertain` says what to check by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import httpx

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
    SubmissionUncertain,
    TransportError,
)
from ._events import EventHooks
from ._lanes import Place
from ._models import Account, AccountJobs, Job
from ._reconcile import Reconciler, Verdict
from ._retry import Attempts
from ._scheduler import Scheduler
from ._submission import JobPath

__all__ = ["JobsAPI", "PaidPost", "Retry"]


class JobsAPI(Protocol):
    """The few API calls the engine makes; `FlowMusic` provides them over its namespaces."""

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

    def unreachable(self, error: FlowMusicError, tries: int) -> TransportError:
        """The error that ends a request whose connection never opened, naming the host."""


class Retry(Exception):
    """Internal: this attempt created no job; try again after `delay` (None: give up)."""

    def __init__(self, error: FlowMusicError, delay: float | None, *, requeue: bool = False):
        super().__init__(str(error))
        self.error = error
        self.delay = delay
        self.requeue = requeue  # the scheduler holds the full account back; no sleep needed


class PaidPost:
    """Sends paid POSTs and classifies their failures for the engine.

    Args:
        api: the API calls.
        scheduler: told about full (429) and unusable (402/596/404) accounts.
        reconciler: looks for the job a POST with a lost answer may have created.
        events: told when a lost answer is reconciled.
    """

    def __init__(
        self, api: JobsAPI, scheduler: Scheduler, reconciler: Reconciler, events: EventHooks
    ) -> None:
        self._api = api
        self._scheduler = scheduler
        self._reconciler = reconciler
        self._events = events

    async def send(
        self,
        path: JobPath,
        request: dict[str, Any],
        *,
        email: str | None,
        pinned: bool,
        ref: str,
        sent_at: float,
        sent_mono: float | None,
        after_429: Attempts,
        after_failure: Attempts,
        place: Place | None = None,
    ) -> Job:
        """One POST; returns the job, raises `_Retry` when nothing was created, or the final error.

        `pinned`: the job must run on `email` (named by the caller, or an edit's clip account),
        so an account that cannot take jobs is final rather than a reason to go elsewhere.
        `place`: the place among the requests in flight taken for this POST (the request
        uses it rather than waiting for one).
        """
        if path == "/music":  # an edit has no `email`: it runs on its clip's account
            request = {key: value for key, value in request.items() if key != "email"}
            if email is not None:
                request["email"] = email
        try:
            return await self._api.create_job(path, request, place)
        except RateLimitError as error:
            delay = after_429.delay(retry_after=error.retry_after)
            tracked = isinstance(error, AccountBusyError) and self._scheduler.known
            if tracked:
                # Another process took the slot since our last sweep: hold the account back
                # until a sweep shows room, and let this job go wherever there is room now.
                self._scheduler.note_full(email, hold=delay or 0.0)
            raise Retry(error, delay, requeue=tracked and not pinned) from None
        except (InsufficientCreditsError, AccountError) as error:
            # The account cannot take jobs: take it out and place the job elsewhere, unless
            # the server chose the account or the caller named it (nowhere else to go).
            self._scheduler.take_out(email or error.email, error)
            if email is None or pinned:
                raise
            raise Retry(error, 0.0, requeue=True) from None
        except NotFoundError as error:
            if email is None or pinned:
                raise
            self._scheduler.take_out(email, error)  # the account was removed meanwhile
            raise Retry(error, 0.0, requeue=True) from None
        except TransportError as error:
            if not error.maybe_sent:
                # The request never left: safe to send again, for `connect_budget` at most.
                delay = after_failure.delay(never_sent=True)
                if delay is None:
                    raise self._api.unreachable(error, after_failure.retries + 1) from error
                raise Retry(error, delay) from None
            return await self._settle_unknown(
                path,
                error,
                email,
                ref,
                (sent_at, sent_mono),
                after_failure,
                # Our own timeout: the server may still be working on the request and create
                # the job after we look, so not finding it proves nothing.
                absence_proves=not (
                    isinstance(error, RequestTimeout)
                    or isinstance(error.__cause__, httpx.TimeoutException)
                ),
            )
        except DecodeError as error:
            if error.jobid:  # a 2xx with a jobid: the job exists even if the body is odd
                return await self._api.get_job(error.jobid)
            return await self._settle_unknown(
                path, error, email, ref, (sent_at, sent_mono), after_failure
            )
        except ServerError as error:
            return await self._settle_unknown(
                path, error, email, ref, (sent_at, sent_mono), after_failure
            )

    async def _settle_unknown(
        self,
        path: JobPath,
        error: FlowMusicError,
        email: str | None,
        ref: str,
        sent: tuple[float, float | None],
        after_failure: Attempts,
        *,
        absence_proves: bool = True,
    ) -> Job:
        """The POST may have created a job: adopt it, resend if provably not, else give up.

        `sent`: when the POST left, by the wall clock and the monotonic one.
        """
        sent_at, sent_mono = sent
        verdict = await self._reconciler.reconcile(
            ref, email=email, sent_at=sent_at, sent_mono=sent_mono
        )
        if isinstance(verdict, Job):
            self._events.emit(
                "reconciled",
                client_ref=ref,
                jobid=verdict.jobid,
                email=verdict.email,
                detail="the job existed; adopted, not resent",
            )
            return verdict
        if verdict == Verdict.ABSENT and absence_proves:
            self._events.emit(
                "reconciled", client_ref=ref, email=email, detail="no job was created; resending"
            )
            raise Retry(error, after_failure.delay())
        raise SubmissionUncertain(
            endpoint=f"POST {path}",
            client_ref=ref,
            email=email,
            sent_at=sent_at,
            detail=f"Cause: {error}",
        ) from error
