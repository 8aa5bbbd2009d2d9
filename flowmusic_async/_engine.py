"""The job engine: submit paid jobs once, place them on free slots, and await their end.

Submitting goes: wait for a slot (the scheduler), tag the request with a client reference in
`replyRef`, POST it in async mode under a cancel shield, and hand the job to the poller. Every
failure of the POST falls in one of three cases:

- the server said no (400, 401, 403, 422): final, raised at once;
- the server said not here or not now (429, 402, 596, 404 for an account): nothing was
  created, so the job is placed again, elsewhere or after a backoff;
- nobody knows (the connection dropped after sending, a 5xx, a broken body): the job may exist
  and be charged. It is never blindly resent. We look for our reference among the running
  jobs; found, the job is adopted; proven absent, it is sent again; otherwise
  `SubmissionUncertain` says what to check by hand.

A JobEngine belongs to one FlowMusic client and is shared by all its tasks.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

import anyio
import httpx
import msgspec

from ._errors import (
    AccountBusyError,
    AccountError,
    AuthenticationError,
    DecodeError,
    FlowMusicError,
    InsufficientCreditsError,
    JobFailed,
    JobTimeout,
    NotFoundError,
    RateLimitError,
    ServerError,
    SubmissionUncertain,
    TransportError,
)
from ._events import EventHooks
from ._models import Job
from ._poller import Poller, Watch
from ._reconcile import Reconciler, Verdict, compose_reply_ref, new_client_ref
from ._retry import backoff_delays, sleep
from ._scheduler import Scheduler
from ._timing import Timing

if TYPE_CHECKING:
    from ._client import FlowMusic

logger = logging.getLogger("flowmusic_async")

JobPath = Literal["/music", "/music/edit"]


class SubmitAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """What is about to be sent, handed to `on_submitting` before every paid POST.

    A journal writes it down first, so that after a crash the attempt can be reconciled.
    """

    client_ref: str
    email: str | None
    sent_at: float  # time.time()
    attempt: int


OnSubmitting = Callable[[SubmitAttempt], Awaitable[None]]


class JobHandle:
    """A job the server accepted. Await it (or `result()`) for the completed record.

    Safe to await from several tasks. `cancel()` cancels the job server-side.
    """

    def __init__(
        self,
        engine: JobEngine,
        watch: Watch,
        *,
        email: str | None,
        client_ref: str | None,
        timeout: float,
    ) -> None:
        self._engine = engine
        self._watch = watch
        self.jobid: str = watch.jobid
        self.email = email
        self.client_ref = client_ref
        self.accepted_at: float = time.monotonic()
        self._deadline = self.accepted_at + timeout

    def __repr__(self) -> str:
        state = "done" if self.done else "pending"
        return f"JobHandle(jobid={self.jobid!r}, email={self.email!r}, {state})"

    @property
    def done(self) -> bool:
        return self._watch.done.is_set()

    async def result(self, deadline: float | None = None, *, timeout: float | None = None) -> Job:
        """Wait for the job to end; return the completed record.

        Raises:
            JobFailed: the job ended failed (including cancelled).
            JobTimeout: the deadline passed; the job is left running.
            NotFoundError, PermissionDeniedError: the job is unknown/expired, or not ours.
            ClientClosedError: the client closed while waiting.

        Args:
            deadline: seconds from now; default: the deadline set at submission (counted from
                acceptance, `Timing.job_timeout` unless given).
            timeout: deprecated spelling of `deadline`.
        """
        if timeout is not None:
            warnings.warn(
                "result(timeout=) is deprecated; use result(deadline=)",
                DeprecationWarning,
                stacklevel=2,
            )
            deadline = timeout if deadline is None else deadline
        return await self._engine.await_watch(
            self._watch,
            deadline=self._deadline if deadline is None else time.monotonic() + deadline,
            email=self.email,
        )

    def __await__(self) -> Generator[Any, None, Job]:
        return self.result().__await__()

    async def cancel(self) -> Job | None:
        """Cancel the job server-side (DELETE /jobs/{jobid}) and free its slot.

        Runs shielded so that a cancelled caller still cancels the job. Returns the final record
        when it could be read (a job that had already completed stays completed).
        """
        return await self._engine.cancel(self.jobid, self.email)


class JobEngine:
    """Scheduler, poller and submission logic for one client."""

    def __init__(self, fm: FlowMusic, *, timing: Timing, events: EventHooks) -> None:
        self._fm = fm
        self.timing = timing
        self.events = events
        self.scheduler: Scheduler = Scheduler()
        self.poller: Poller = Poller(
            list_running=fm.jobs.list,
            get_job=fm.jobs.get,
            scheduler=self.scheduler,
            timing=timing,
            events=events,
            refresh_accounts=self._refresh_accounts_quietly,
        )
        self._accounts_lock = anyio.Lock()
        self._accounts_due = 0.0  # monotonic time the account list should be read again
        self.reconciler: Reconciler = Reconciler(
            list_running=fm.jobs.list,
            get_job=fm.jobs.get,
            known_jobs=self.scheduler.our_jobs,
            timing=timing,
        )

    # ----- accounts ------------------------------------------------------------------------------

    async def refresh_accounts(self, *, force: bool = False) -> None:
        """Read GET /accounts when never read or older than `Timing.accounts_refresh`.

        The first time, GET /jobs too, to count jobs that other processes already run.

        A 401 is raised (nothing can work); other failures keep the last known list (or, if
        there never was one, leave placement to the server) until the next try.
        """
        async with self._accounts_lock:
            if not force and time.monotonic() < self._accounts_due:
                return
            # Due again after the refresh interval, whether this read works or not.
            self._accounts_due = time.monotonic() + self.timing.accounts_refresh
            try:
                accounts = await self._fm.accounts.list()
            except AuthenticationError:
                raise
            except FlowMusicError as error:
                logger.warning("GET /accounts failed (%s); placement as before", error)
                return
            first_load = self.scheduler.loaded_at is None
            self.scheduler.update_accounts(accounts)
            if first_load:
                # Other processes with the same token may already fill slots: count them
                # before the first placement rather than learn of them from a 429.
                swept_at = time.monotonic()
                try:
                    running = await self._fm.jobs.list()
                except FlowMusicError as error:
                    logger.warning("GET /jobs failed (%s); other processes' jobs unknown", error)
                    return
                self.scheduler.reconcile(running, swept_at=swept_at)

    async def _refresh_accounts_quietly(self) -> None:
        try:
            await self.refresh_accounts()
        except FlowMusicError as error:
            logger.warning("GET /accounts failed: %s", error)

    # ----- submitting ----------------------------------------------------------------------------

    async def submit(
        self,
        path: JobPath,
        body: Mapping[str, Any],
        *,
        account: str | None = None,
        client_ref: str | None = None,
        on_submitting: OnSubmitting | None = None,
        timeout: float | None = None,
    ) -> JobHandle:
        """Place and send one paid job; return its handle once the server has accepted it.

        Args:
            path: "/music" or "/music/edit".
            body: the validated request body (from `music_body` / `edit_body`).
            account: the account the job must run on (the caller's `email`, or an edit's clip
                account); None lets the scheduler choose.
            client_ref: the reference of this logical submission (a journal passes the one
                it wrote down); default: a new one.
            on_submitting: awaited before each POST with what is about to be sent.
            timeout: deadline for the job, counted from acceptance (default
                `Timing.job_timeout`); retries after 429 stop after the same span.
        """
        ref = client_ref or new_client_ref()
        request = dict(body)
        request["mode"] = "async"
        request["replyRef"] = compose_reply_ref(request.get("replyRef"), ref)
        job_timeout = self.timing.job_timeout if timeout is None else timeout
        give_up_at = time.monotonic() + job_timeout
        waits = _Waits(self.timing)

        await self.refresh_accounts()
        self.events.emit("queued", client_ref=ref, email=account)
        attempt = 0
        while True:
            attempt += 1
            email = await self.scheduler.acquire(account)
            try:
                if path == "/music":
                    _set_or_drop(request, "email", email)
                self.events.emit("placed", client_ref=ref, email=email, attempt=attempt)
                sent_at = time.time()
                if on_submitting is not None:
                    await on_submitting(
                        SubmitAttempt(client_ref=ref, email=email, sent_at=sent_at, attempt=attempt)
                    )
                self.events.emit("submitting", client_ref=ref, email=email, attempt=attempt)
                # Shielded: once the request may reach the server, a cancelled caller must
                # still learn whether a job was created, so that it can be cancelled, not lost.
                with anyio.CancelScope(shield=True):
                    job = await self._send(
                        path,
                        request,
                        email=email,
                        pinned=account is not None,
                        ref=ref,
                        sent_at=sent_at,
                        waits=waits,
                    )
                    return self._accept(job, placed=email, client_ref=ref, timeout=job_timeout)
            except _Retry as retry:
                self.scheduler.release(email)
                if time.monotonic() + retry.delay > give_up_at:
                    self.events.emit(
                        "failed", client_ref=ref, email=email, attempt=attempt, error=retry.error
                    )
                    raise retry.error from None
                self.events.emit(
                    "retrying", client_ref=ref, email=email, attempt=attempt, error=retry.error
                )
                await sleep(retry.delay)
            except FlowMusicError as error:
                self.scheduler.release(email)
                # The submission ends without a job handed over: observers close it.
                self.events.emit(
                    "failed", client_ref=ref, email=email, attempt=attempt, error=error
                )
                raise
            except BaseException:
                self.scheduler.release(email)
                raise

    async def _send(
        self,
        path: JobPath,
        request: dict[str, Any],
        *,
        email: str | None,
        pinned: bool,
        ref: str,
        sent_at: float,
        waits: _Waits,
    ) -> Job:
        """One POST; returns the job, raises `_Retry` when nothing was created, or the final error.

        `pinned`: the job must run on `email` (named by the caller, or an edit's clip account),
        so an account that cannot take jobs is final rather than a reason to go elsewhere.
        """
        try:
            return await self._fm.music._send_job(path, request)
        except RateLimitError as error:
            self.scheduler.note_full(email)
            raise _Retry(error, waits.after_429(error)) from None
        except (InsufficientCreditsError, AccountError) as error:
            # The account cannot take jobs: take it out and place the job elsewhere, unless
            # the server chose the account or the caller named it (nowhere else to go).
            self.scheduler.take_out(email or error.email, error)
            if email is None or pinned:
                raise
            raise _Retry(error, 0.0) from None
        except NotFoundError as error:
            if email is None or pinned:
                raise
            self.scheduler.take_out(email, error)  # the account was removed meanwhile
            raise _Retry(error, 0.0) from None
        except TransportError as error:
            if not error.maybe_sent:
                raise _Retry(error, waits.after_failure()) from None
            return await self._settle_unknown(
                path,
                error,
                email,
                ref,
                sent_at,
                waits,
                # Our own timeout: the server may still be working on the request and create
                # the job after we look, so not finding it proves nothing.
                absence_proves=not isinstance(error.__cause__, httpx.TimeoutException),
            )
        except DecodeError as error:
            if error.jobid:  # a 2xx with a jobid: the job exists even if the body is odd
                return await self._fm.jobs.get(error.jobid)
            return await self._settle_unknown(path, error, email, ref, sent_at, waits)
        except ServerError as error:
            return await self._settle_unknown(path, error, email, ref, sent_at, waits)

    async def _settle_unknown(
        self,
        path: JobPath,
        error: FlowMusicError,
        email: str | None,
        ref: str,
        sent_at: float,
        waits: _Waits,
        *,
        absence_proves: bool = True,
    ) -> Job:
        """The POST may have created a job: adopt it, resend if provably not, else give up."""
        verdict = await self.reconciler.reconcile(ref, email=email, sent_at=sent_at)
        if isinstance(verdict, Job):
            self.events.emit(
                "reconciled",
                client_ref=ref,
                jobid=verdict.jobid,
                email=verdict.email,
                detail="the job existed; adopted, not resent",
            )
            return verdict
        if verdict == Verdict.ABSENT and absence_proves:
            self.events.emit(
                "reconciled", client_ref=ref, email=email, detail="no job was created; resending"
            )
            raise _Retry(error, waits.after_failure())
        raise SubmissionUncertain(
            endpoint=f"POST {path}",
            client_ref=ref,
            email=email,
            sent_at=sent_at,
            detail=f"Cause: {error}",
        ) from error

    def _accept(
        self, job: Job, *, placed: str | None, client_ref: str, timeout: float
    ) -> JobHandle:
        """Count the job on its account, hand it to the poller and return its handle."""
        if placed is not None and job.email != placed:
            self.scheduler.release(placed)
            self.scheduler.commit(job.email, job.jobid, reserved=False)
        else:
            self.scheduler.commit(job.email, job.jobid)
        watch = self.poller.watch(job.jobid, job.email, owned=True)
        watch.client_ref = client_ref
        self.events.emit("submitted", client_ref=client_ref, jobid=job.jobid, email=job.email)
        self._settle_if_ended(job)
        return JobHandle(self, watch, email=job.email, client_ref=client_ref, timeout=timeout)

    def _settle_if_ended(self, job: Job) -> bool:
        """A terminal record frees its slot and wakes its waiters at once; False if pending."""
        if not job.is_terminal:
            return False
        self.scheduler.job_ended(job.jobid)
        self.poller.resolve(job.jobid, job=job)
        return True

    # ----- reconciling ---------------------------------------------------------------------------

    async def recover(
        self,
        client_ref: str,
        *,
        email: str | None,
        sent_at: float,
        path: JobPath = "/music",
        timeout: float | None = None,
    ) -> JobHandle | None:
        """After a restart: the handle of the job a journalled POST created, or None if none was.

        Raises:
            SubmissionUncertain: it cannot be decided (the POST is too old to prove absence
                and its job is no longer running); check by hand.
        """
        await self.refresh_accounts()
        verdict = await self.reconciler.reconcile(client_ref, email=email, sent_at=sent_at)
        if isinstance(verdict, Job):
            return self.attach(verdict.jobid, verdict.email, client_ref=client_ref, timeout=timeout)
        if verdict == Verdict.ABSENT:
            return None
        raise SubmissionUncertain(
            endpoint=f"POST {path}",
            client_ref=client_ref,
            email=email,
            sent_at=sent_at,
            detail="Found after a restart with no recorded answer.",
        )

    def attach(
        self,
        jobid: str,
        email: str | None,
        *,
        client_ref: str | None = None,
        timeout: float | None = None,
    ) -> JobHandle:
        """A handle on a job accepted earlier (here or elsewhere), counted on its account."""
        self.scheduler.commit(email, jobid, reserved=False)
        watch = self.poller.watch(jobid, email, owned=True, fresh=False)
        watch.client_ref = client_ref
        job_timeout = self.timing.job_timeout if timeout is None else timeout
        return JobHandle(self, watch, email=email, client_ref=client_ref, timeout=job_timeout)

    # ----- waiting and cancelling ----------------------------------------------------------------

    async def wait(self, jobid: str, *, timeout: float | None = None) -> Job:
        """Wait for any job by id, including one submitted by an earlier process."""
        watch = self.poller.watch(jobid, fresh=False)
        limit = self.timing.job_timeout if timeout is None else timeout
        return await self.await_watch(watch, deadline=time.monotonic() + limit, email=watch.email)

    async def await_watch(self, watch: Watch, *, deadline: float, email: str | None) -> Job:
        watch.waiters += 1
        try:
            with anyio.fail_after(max(0.0, deadline - time.monotonic())):
                await watch.done.wait()
        except TimeoutError:
            self.events.emit("timeout", jobid=watch.jobid, email=email)
            waited = deadline - watch.added_at
            raise JobTimeout(watch.jobid, email=email, timeout=waited) from None
        finally:
            watch.waiters -= 1
            self.poller.forget(watch)
        if watch.error is not None:
            raise watch.error
        job = watch.job
        assert job is not None  # resolve() always sets one of job/error
        if not job.is_completed:
            raise JobFailed(job)
        return job

    async def fetch_and_settle(self, jobid: str) -> Job:
        """Read a job now (a webhook's hint); if it has ended, wake its waiters at once."""
        job = await self._fm.jobs.get(jobid)
        self._settle_if_ended(job)
        return job

    async def cancel(self, jobid: str, email: str | None) -> Job | None:
        job: Job | None = None
        with anyio.CancelScope(shield=True):
            await self._fm.jobs.cancel(jobid)
            self.scheduler.job_ended(jobid)
            try:
                job = await self._fm.jobs.get(jobid)
            except FlowMusicError:
                job = None
            if job is not None and not self._settle_if_ended(job):
                job = None  # not yet reflected; the poller will settle it
            self.events.emit("cancelled", jobid=jobid, email=email)
        return job


class _Retry(Exception):
    """Internal: this attempt created no job; try again after `delay`."""

    def __init__(self, error: FlowMusicError, delay: float) -> None:
        super().__init__(str(error))
        self.error = error
        self.delay = delay


class _Waits:
    """Delays for one submission: jittered backoff after 429 (Retry-After wins) and failures."""

    def __init__(self, timing: Timing) -> None:
        self._timing = timing
        self._after_429: Iterator[float] = backoff_delays(
            base=timing.backoff_base, cap=timing.backoff_cap, max_tries=None
        )
        self._after_failure: Iterator[float] = backoff_delays(
            base=timing.retry_base, cap=timing.backoff_cap, max_tries=None
        )

    def after_429(self, error: RateLimitError) -> float:
        if error.retry_after is not None:
            return min(error.retry_after, self._timing.backoff_cap)
        if isinstance(error, AccountBusyError):
            # One account was full although we counted a free slot (another process took it):
            # the next sweep corrects the count, so a short wait is enough.
            return min(next(self._after_429), self._timing.poll_interval)
        return next(self._after_429)

    def after_failure(self) -> float:
        return next(self._after_failure)


def _set_or_drop(body: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        body.pop(key, None)
    else:
        body[key] = value
