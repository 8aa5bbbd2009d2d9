"""The job engine: place paid jobs on free slots, send each once, await their end, cancel.

Submitting goes: wait for a slot (the scheduler), tag the request with a client reference in
`replyRef`, POST it in async mode (`PaidPost` says what a failure means), and hand the job to
the poller, which wakes the job's waiters when it ends.

Who runs what (see docs/architecture.md, "Task ownership"): a submission, from its wait for a
slot to the bookkeeping of its answer, and the DELETE of a job whose waiter was cancelled, run
in the client's own task group (`ServiceHost`). The caller only awaits their result. Cancelling
the caller, by anyio or by a plain asyncio ``Task.cancel()`` (once or twice), therefore cannot
cut a paid POST short or lose its job: a submission abandoned before its POST left sends
nothing; one abandoned while its POST was on the way has its job cancelled as soon as it is
accepted. The caller waits for that cleanup for at most `Timing.cleanup_timeout`, shielded,
then re-raises its own cancellation.

A JobEngine belongs to one FlowMusic client and is shared by all its tasks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from ._errors import (
    AuthenticationError,
    ClientClosedError,
    FlowMusicError,
    JobFailed,
    JobTimeout,
    SubmissionUncertain,
    TransportError,
    copy_for_waiter,
)
from ._events import EventHooks
from ._handles import JobHandle, SubmitAttempt, SubmitHooks, check_seconds, watch_of
from ._host import ServiceHost
from ._lanes import Place
from ._models import AccountJobs, Job
from ._paid_post import JobsAPI, PaidPost, Retry
from ._poller import Poller, Watch
from ._reconcile import Reconciler, Verdict, compose_reply_ref, new_client_ref
from ._retry import RetryPolicy, sleep
from ._scheduler import Scheduler
from ._submission import InFlight, JobPath, NotSent, Submission, SubmitGroup
from ._timing import Timing

logger = logging.getLogger("flowmusic_async")

__all__ = ["JobEngine", "JobHandle", "JobPath", "SubmitAttempt", "SubmitGroup", "SubmitHooks"]

_HookArg = TypeVar("_HookArg")


class JobEngine:
    """Scheduler, poller and submission logic for one client.

    Args:
        api: the API calls the engine makes.
        host: the client's own task group, where work that must finish runs.
        timing: every duration the engine uses.
        policy: the client's retry policy.
        events: the hooks to tell about every step of every job.
    """

    def __init__(
        self,
        api: JobsAPI,
        *,
        host: ServiceHost,
        timing: Timing,
        policy: RetryPolicy,
        events: EventHooks,
    ) -> None:
        self._api = api
        self._host = host
        self.timing = timing
        self.policy = policy
        self.events = events
        self.poller: Poller  # set below; the scheduler wakes it when submissions queue
        self.scheduler: Scheduler = Scheduler(on_wait=lambda: self.poller.poke())
        self.poller = Poller(
            list_running=api.list_running,
            get_job=api.get_job,
            scheduler=self.scheduler,
            timing=timing,
            events=events,
            refresh_accounts=self._refresh_accounts_quietly,
        )
        self.reconciler: Reconciler = Reconciler(
            list_running=api.list_running,
            get_job=api.get_job,
            known_jobs=self.scheduler.our_jobs,
            timing=timing,
        )
        self._post = PaidPost(api, self.scheduler, self.reconciler, events)
        self._accounts_lock: anyio.Lock | None = None
        self._accounts_due = 0.0  # monotonic time the account list should be read again
        self._everything = SubmitGroup()  # every submission; stopped when the client closes
        self._in_flight = InFlight()
        self.closing: bool = False

    # ----- accounts ------------------------------------------------------------------------------

    async def refresh_accounts(self, *, force: bool = False) -> None:
        """Read GET /accounts when never read or older than `Timing.accounts_refresh`.

        The first time, GET /jobs too, to count jobs that other processes already run.

        A 401, and an API never reached (`TransportError.never_reached`), are raised (nothing
        can work); other failures keep the last known list (or, if there never was one, leave
        placement to the server) until the next try.
        """
        if not force and time.monotonic() < self._accounts_due:
            return  # the common case, checked before the lock: taking it costs a task step
        if self._accounts_lock is None:
            self._accounts_lock = anyio.Lock()
        async with self._accounts_lock:
            if not force and time.monotonic() < self._accounts_due:
                return
            # Due again after the refresh interval, whether this read works or not.
            self._accounts_due = time.monotonic() + self.timing.accounts_refresh
            first_load = self.scheduler.loaded_at is None
            # Other processes with the same token may already fill slots: the first time, count
            # them before the first placement rather than learn of them from a 429. Both reads
            # at once: the first POST waits one round trip, not two.
            swept_at = time.monotonic()
            # Errors are kept and raised after the task group, so that they reach the caller
            # as themselves, not wrapped in an ExceptionGroup.
            sweep: list[Mapping[str, AccountJobs] | Exception] = []
            failed: Exception | None = None
            async with anyio.create_task_group() as reads:
                if first_load:
                    reads.start_soon(self._read_running, sweep)
                try:
                    accounts = await self._api.list_accounts()
                except Exception as error:
                    failed = error
                    reads.cancel_scope.cancel()
            if failed is not None:
                # Nothing works without the token, nor with an API never reached (a wrong URL):
                # raised at once, rather than warned about and then met again by the POST.
                never_reached = isinstance(failed, TransportError) and failed.never_reached
                if (
                    isinstance(failed, AuthenticationError)
                    or never_reached
                    or not isinstance(failed, FlowMusicError)
                ):
                    raise failed
                logger.warning("GET /accounts failed (%s); placement as before", failed)
                return
            self.scheduler.update_accounts(accounts)
            for answer in sweep:
                if isinstance(answer, FlowMusicError):
                    logger.warning("GET /jobs failed (%s); other processes' jobs unknown", answer)
                elif isinstance(answer, Exception):
                    raise answer
                else:
                    self.scheduler.reconcile(answer, swept_at=swept_at)

    async def _read_running(self, into: list[Mapping[str, AccountJobs] | Exception]) -> None:
        """GET /jobs into `into`: its answer, or the error it ended with."""
        try:
            into.append(await self._api.list_running())
        except Exception as error:
            into.append(error)

    async def _refresh_accounts_quietly(self) -> None:
        try:
            await self.refresh_accounts()
        except FlowMusicError as error:
            logger.warning("GET /accounts failed: %s", error)

    # ----- submitting ----------------------------------------------------------------------------

    def enqueue(
        self,
        path: JobPath,
        body: Mapping[str, Any],
        *,
        account: str | None = None,
        client_ref: str | None = None,
        hooks: SubmitHooks | None = None,
        timeout: float | None = None,
        group: SubmitGroup | None = None,
    ) -> Submission:
        """Start one paid submission in the client's task group and return it at once.

        The submission waits for a slot, is sent once, and is accepted (or fails) on its own;
        `submit` waits for that, `QueuedJob` exposes it without waiting.

        Args:
            path: "/music" or "/music/edit".
            body: the validated request body (from `music_body` / `edit_body`).
            account: the account the job must run on (the caller's `email`, or an edit's clip
                account); None lets the scheduler choose.
            client_ref: the reference of this logical submission (a journal passes the one
                it wrote down); default: a new one.
            hooks: callbacks for a journal, and what to do with a job whose caller left.
            timeout: deadline for the job, counted from acceptance (default
                `Timing.job_timeout`); retries after 429 stop after the same span.
            group: stop this submission together with others (a batch).

        Raises:
            ValidationError: a bad `timeout`, before anything is sent.
            ClientClosedError: the client is closing.
        """
        job_timeout = self.timing.job_timeout if timeout is None else check_seconds(timeout)
        if self.closing:
            raise ClientClosedError("this FlowMusic client is closing; no new job is submitted")
        ref = client_ref or new_client_ref()
        request = dict(body)
        request["mode"] = "async"
        request["replyRef"] = compose_reply_ref(request.get("replyRef"), ref)
        groups = (self._everything,) if group is None else (self._everything, group)
        sub = Submission(
            ref,
            groups,
            path=path,
            request=request,
            account=account,
            job_timeout=job_timeout,
            hooks=hooks or SubmitHooks(),
            ticket=self.scheduler.ticket(),
        )
        for member_of in groups:
            member_of._add(sub)
        self._host.start_soon(self._run_submission, sub, name=f"submit {ref}")
        return sub

    async def submit(
        self,
        path: JobPath,
        body: Mapping[str, Any],
        *,
        account: str | None = None,
        client_ref: str | None = None,
        hooks: SubmitHooks | None = None,
        timeout: float | None = None,
        group: SubmitGroup | None = None,
    ) -> JobHandle:
        """Place and send one paid job; return its handle once the server has accepted it.

        Takes the arguments of `enqueue`. The work runs in the client's task group; this call
        only waits for its outcome. If the caller is cancelled meanwhile, the submission is
        abandoned: not sent if it had not left yet, its job cancelled as soon as it is
        accepted if it had.
        """
        sub = self.enqueue(
            path,
            body,
            account=account,
            client_ref=client_ref,
            hooks=hooks,
            timeout=timeout,
            group=group,
        )
        try:
            await sub.decided.wait()
        except BaseException:
            await self.bounded(self.abandon(sub))
            raise
        return self.accepted(sub)

    def accepted(self, sub: Submission) -> JobHandle:
        """The handle of a decided submission, or a fresh copy of the error that ended it."""
        if sub.error is not None:
            raise copy_for_waiter(sub.error)
        assert sub.handle is not None
        return sub.handle

    def abandon(self, sub: Submission) -> anyio.Event:
        """The caller of `sub` left: stop it; returns the event that says the cleanup is done."""
        cancel_job = sub.hooks.cancel_if_abandoned
        sub.abandon(cancel_job=cancel_job)
        handle = sub.handle
        if cancel_job and sub.settled.is_set() and handle is not None and not handle.ended:
            return self.request_cancel(watch_of(handle))
        return sub.settled

    async def _run_submission(self, sub: Submission) -> None:
        """The whole life of one submission, in the client's task group.

        Ends with exactly one of: a handle (the "submitted" event; the job's own end follows
        later), a "cancelled" event (abandoned before the POST left: nothing was paid), or a
        "failed" event with the typed error the caller receives.
        """
        ref = sub.client_ref
        not_sent = False
        try:
            sub.handle = await self._place_and_send(sub)
        except NotSent:
            not_sent = True
            sub.error = ClientClosedError(
                "the submission was stopped before it was sent; nothing was paid",
                email=sub.account,
            )
            self.events.emit("cancelled", client_ref=ref, email=sub.account)
        except FlowMusicError as error:
            sub.error = error
        except anyio.get_cancelled_exc_class():
            # The client stopped. With the POST on its way, nobody can tell any more whether a
            # job was created; before it, nothing was sent.
            if sub.sending:
                sub.error = SubmissionUncertain(
                    endpoint=f"POST {sub.path}",
                    client_ref=ref,
                    email=sub.email,
                    sent_at=sub.sent_at or time.time(),
                    detail="The client closed before the answer arrived.",
                )
            else:
                sub.error = ClientClosedError(
                    "the client closed before this job was sent; nothing was paid",
                    email=sub.account,
                )
            raise
        except Exception as error:  # a bug must still end the caller's wait with a typed error
            logger.exception("submission %s failed unexpectedly", ref)
            sub.error = FlowMusicError(f"internal error while submitting: {error!r}")
        finally:
            if sub.error is not None and not not_sent:
                self.events.emit(
                    "failed", client_ref=ref, email=sub.email, attempt=sub.attempt, error=sub.error
                )
            sub.decided.set()
            if sub.handle is None:
                sub.settled.set()
        handle = sub.handle
        try:
            if handle is not None and sub.hooks.on_accepted is not None:
                with anyio.CancelScope(shield=True):
                    try:
                        await sub.hooks.on_accepted(handle)
                    except Exception:
                        logger.exception("on_accepted for job %s failed", handle.jobid)
            if handle is not None and sub.cancel_job and not handle.ended:
                await self.cancel_answered(watch_of(handle)).wait()
        finally:
            sub.settled.set()
            for member_of in sub.groups:
                member_of._discard(sub)

    async def _place_and_send(self, sub: Submission) -> JobHandle:
        ref = sub.client_ref
        account = sub.account
        give_up_at = time.monotonic() + sub.job_timeout
        after_429 = self.policy.attempts(max_retries=None, base=self.timing.backoff_base)
        after_failure = self.policy.attempts(max_retries=None)

        await self.refresh_accounts()
        self.events.emit("queued", client_ref=ref, email=account)
        while True:
            sub.attempt += 1
            email, place = await self._place(sub)
            sub.email = email
            # No checkpoint between the last look at `abandoned` and the POST leaving.
            self.events.emit("submitting", client_ref=ref, email=email, attempt=sub.attempt)
            self._in_flight.enter()
            sub.sending = True
            try:
                job = await self._post.send(
                    sub.path,
                    sub.request,
                    email=email,
                    pinned=account is not None,
                    ref=ref,
                    sent_at=sub.sent_at or time.time(),
                    sent_mono=sub.sent_mono,
                    after_429=after_429,
                    after_failure=after_failure,
                    place=place,
                )
                sub.sending = False
                return self._accept(
                    job,
                    placed=email,
                    client_ref=ref,
                    timeout=sub.job_timeout,
                    webhook=bool(sub.request.get("replyUrl")),
                )
            except Retry as retry:
                self.scheduler.release(email)
                error, delay, requeue = retry.error, retry.delay, retry.requeue
            except anyio.get_cancelled_exc_class():
                self.scheduler.release(email)
                raise  # `sending` stays True: the answer never came (see _run_submission)
            except BaseException:
                self.scheduler.release(email)
                sub.sending = False
                raise
            finally:
                place.give_back()
                self._in_flight.exit()
            sub.sending = False
            if delay is None or time.monotonic() + delay > give_up_at:
                raise error
            self.events.emit(
                "retrying", client_ref=ref, email=email, attempt=sub.attempt, error=error
            )
            if not requeue and delay > 0:
                with anyio.CancelScope() as scope:
                    sub.pre_send = scope
                    if sub.abandoned:
                        scope.cancel()
                    await sleep(delay)
                sub.pre_send = None

    async def _place(self, sub: Submission) -> tuple[str | None, Place]:
        """Wait for a slot, write ahead, and wait for a place among the API requests in flight;
        raises `NotSent` if abandoned before the POST.

        The place is taken here, where abandoning still stops everything: a POST queued
        behind other requests has not left, and must not leave once its caller is gone. It is
        the caller's to give back (`Place.give_back`) once the POST is done.

        A write-ahead record (`on_submitting`) stays announced until the POST's answer says
        what happened; if the submission is then abandoned before another POST leaves (after a
        429, say), `on_unsent` withdraws it, so a journal never keeps a "submitting" record
        for a POST that created nothing.
        """
        ref = sub.client_ref
        hooks = sub.hooks
        email: str | None = None
        reserved = False
        place = self._api.place_ahead()
        try:
            with anyio.CancelScope() as scope:
                sub.pre_send = scope
                if sub.abandoned or self.closing:
                    scope.cancel()
                email = await self.scheduler.acquire(sub.account, owner=sub, ticket=sub.ticket)
                reserved = True
                self.events.emit("placed", client_ref=ref, email=email, attempt=sub.attempt)
                sub.sent_at = time.time()
                sub.sent_mono = time.monotonic()
                if hooks.on_submitting is not None and not sub.abandoned:
                    attempt = SubmitAttempt(
                        client_ref=ref, email=email, sent_at=sub.sent_at, attempt=sub.attempt
                    )
                    # Shielded: a write-ahead record is finished, even if abandoned meanwhile.
                    with anyio.CancelScope(shield=True):
                        await _run_hook("on_submitting", hooks.on_submitting, attempt)
                    sub.announced = attempt
                await place.take()
            stopped = scope.cancelled_caught or sub.abandoned or self.closing
        except BaseException:
            # A hook that raised (user code, a journal on a full disk) or the client stopping:
            # nothing was sent, and what was reserved for the POST goes back, or the account
            # would count a slot taken forever.
            stopped = True
            raise
        finally:
            sub.pre_send = None
            if stopped:
                place.give_back()
                if reserved:
                    self.scheduler.release(email)
                announced, sub.announced = sub.announced, None
                if announced is not None and hooks.on_unsent is not None:
                    with anyio.CancelScope(shield=True):
                        try:
                            await _run_hook("on_unsent", hooks.on_unsent, announced)
                        except FlowMusicError:
                            logger.exception("withdrawing the write-ahead of %s failed", ref)
        if stopped:
            raise NotSent
        return email, place

    def _accept(
        self, job: Job, *, placed: str | None, client_ref: str, timeout: float, webhook: bool
    ) -> JobHandle:
        """Count the job on its account, hand it to the poller and return its handle.

        `webhook`: the job will call back its `replyUrl`, so the poller may sweep slowly.
        """
        if placed is not None and job.email != placed:
            self.scheduler.release(placed)
            self.scheduler.commit(job.email, job.jobid, reserved=False)
        else:
            self.scheduler.commit(job.email, job.jobid)
        self.events.emit("submitted", client_ref=client_ref, jobid=job.jobid, email=job.email)
        watch = self.poller.watch(job.jobid, job.email, owned=True, client_ref=client_ref)
        watch.webhook = webhook
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
        job_timeout = self.timing.job_timeout if timeout is None else check_seconds(timeout)
        self.scheduler.commit(email, jobid, reserved=False)
        watch = self.poller.watch(jobid, email, owned=True, fresh=False, client_ref=client_ref)
        return JobHandle(self, watch, email=email, client_ref=client_ref, timeout=job_timeout)

    # ----- waiting and cancelling ----------------------------------------------------------------

    def watching(self, jobid: str) -> Watch | None:
        """The watch of a job this client waits for, if any (the webhook receiver checks it)."""
        return self.poller.get(jobid)

    async def wait(self, jobid: str, *, timeout: float | None = None) -> Job:
        """Wait for any job by id, including one submitted by an earlier process."""
        limit = self.timing.job_timeout if timeout is None else check_seconds(timeout)
        watch = self.poller.watch(jobid, fresh=False)
        return await self.await_watch(watch, deadline=time.monotonic() + limit, email=watch.email)

    async def await_watch(self, watch: Watch, *, deadline: float, email: str | None) -> Job:
        """Wait for `watch` until `deadline` (monotonic); each waiter gets its own error object."""
        if not watch.done.is_set():
            watch.waiters += 1
            try:
                with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                    await watch.done.wait()
            finally:
                watch.waiters -= 1
            if not watch.done.is_set():
                raise self.deadline_passed(watch, deadline=deadline, email=email)
        return self.result_of(watch)

    def result_of(self, watch: Watch) -> Job:
        """The completed record of an ended watch, or a fresh copy of the error it ended with.

        Raises:
            JobFailed: the job ended failed (including cancelled).
            FlowMusicError: what ended the wait (the client closed, the job is unknown, ...).
        """
        self.poller.forget(watch)
        if watch.error is not None:
            raise copy_for_waiter(watch.error)
        job = watch.job
        assert job is not None  # resolve() always sets one of job/error
        if not job.is_completed:
            raise JobFailed(job)
        return job

    def deadline_passed(self, watch: Watch, *, deadline: float, email: str | None) -> JobTimeout:
        """The error for a waiter whose deadline passed first (the job is left running)."""
        self.poller.forget(watch)
        self.events.emit("timeout", client_ref=watch.client_ref, jobid=watch.jobid, email=email)
        return JobTimeout(watch.jobid, email=email, timeout=deadline - watch.added_at)

    async def fetch_and_settle(self, jobid: str) -> Job:
        """Read a job now (a webhook's hint); if it has ended, wake its waiters at once."""
        job = await self._api.get_job(jobid)
        self._settle_if_ended(job)
        return job

    def settle_from_callback(self, job: Job) -> bool:
        """Settle a job from a callback whose secret proved it ours (no read); False if pending."""
        return self._settle_if_ended(job)

    def request_cancel(self, watch: Watch) -> anyio.Event:
        """Cancel `watch`'s job server-side, in the client's task group; returns its done event,
        set once the DELETE is answered and the final record read (or that read failed).
        `watch.cancel_answered` is set as soon as the DELETE is answered.

        A second request while the first runs shares its events; after a failed DELETE, a new
        request tries again.
        """
        if watch.cancel_done is not None:
            return watch.cancel_done
        done = watch.cancel_done = anyio.Event()
        answered = watch.cancel_answered = anyio.Event()
        watch.cancel_error = None
        try:
            self._host.start_soon(self._cancel, watch, done, answered, name=f"cancel {watch.jobid}")
        except ClientClosedError as error:
            logger.warning("job %s left running: %s", watch.jobid, error)
            watch.cancel_error = error
            watch.cancel_done = watch.cancel_answered = None
            answered.set()
            done.set()
            return done
        self._in_flight.enter()  # left by _cancel
        return done

    def cancel_answered(self, watch: Watch) -> anyio.Event:
        """`request_cancel` for a caller that has left: the event is set once the DELETE is
        answered (the job's record is read after that, in the client's task group, and
        closing waits for it)."""
        done = self.request_cancel(watch)
        return watch.cancel_answered or done  # None only when the DELETE could not start

    def cancel_all(self, watches: list[Watch], *, per_turn: int) -> anyio.Event:
        """Cancel these jobs server-side from the client's task group, asking for `per_turn`
        DELETEs per turn of the event loop (hundreds in one turn froze it); returns the event
        set once every DELETE is answered. The final records are read after that, still in
        the client's task group: whoever left these jobs does not wait for them.

        Called synchronously, so a caller cancelled again right after (a second
        `Task.cancel()` pierces anyio's shields) cannot stop it half-way.
        """
        done = anyio.Event()
        try:
            self._host.start_soon(self._cancel_all, watches, done, per_turn, name="cancel jobs")
        except ClientClosedError as error:
            logger.warning("%d job(s) left running: %s", len(watches), error)
            done.set()
            return done
        self._in_flight.enter()  # left by _cancel_all: closing waits for these DELETEs too
        return done

    async def _cancel_all(self, watches: list[Watch], done: anyio.Event, per_turn: int) -> None:
        try:
            cancelling: list[anyio.Event] = []
            for start in range(0, len(watches), per_turn):
                chunk = watches[start : start + per_turn]
                cancelling += [self.cancel_answered(watch) for watch in chunk]
                await anyio.lowlevel.checkpoint()
            for cancelled in cancelling:
                if not cancelled.is_set():  # waiting on a set event still costs a turn
                    await cancelled.wait()
        finally:
            done.set()
            self._in_flight.exit()

    async def _cancel(self, watch: Watch, done: anyio.Event, answered: anyio.Event) -> None:
        try:
            watch.cancel_requested = True
            try:
                await self._api.cancel_job(watch.jobid)
            except FlowMusicError as error:
                # Reported, not raised: the caller asked for a cancellation and gets it; the
                # job may run on (the poller still watches it while the client is open).
                watch.cancel_requested = False
                watch.cancel_error = error
                watch.cancel_done = watch.cancel_answered = None
                logger.warning(
                    "DELETE /jobs/%s failed: %s; the job may still be running", watch.jobid, error
                )
                self.events.emit(
                    "cancel_failed",
                    client_ref=watch.client_ref,
                    jobid=watch.jobid,
                    email=watch.email,
                    error=error,
                )
                return
            self.scheduler.job_ended(watch.jobid)
            answered.set()
            try:
                job = await self._api.get_job(watch.jobid)
            except FlowMusicError:
                return  # the poller settles the job when its record can be read
            self._settle_if_ended(job)  # still pending: the record lags; the poller settles it
        finally:
            answered.set()
            done.set()
            self._in_flight.exit()

    def position(self, sub: Submission) -> int | None:
        """How many submissions wait for a slot ahead of `sub` (None when it is not waiting)."""
        return self.scheduler.position(sub)

    async def bounded(self, cleanup_done: anyio.Event) -> None:
        """Wait, shielded, at most `cleanup_timeout` for a cleanup running in the task group."""
        with anyio.move_on_after(self.timing.cleanup_timeout, shield=True):
            await cleanup_done.wait()

    async def cancel_for_departed_caller(self, handle: JobHandle) -> None:
        """The caller of `handle` is being cancelled: cancel its job server-side, in the
        client's task group, and wait for that at most `cleanup_timeout` (shielded)."""
        await self.bounded(self.cancel_answered(watch_of(handle)))

    async def run_to_end(self, submitting: Awaitable[JobHandle]) -> Job:
        """Submit and wait; cancelling the caller cancels the job server-side (bounded).

        `generate` and `edit` are this. A job that ends, fails or outlives its deadline is
        reported as such; only a cancellation of the caller (or Ctrl-C) cancels the job.
        """
        handle = await submitting
        try:
            return await handle.result()
        except BaseException as exc:
            if isinstance(exc, Exception) or handle.ended:
                raise
            await self.cancel_for_departed_caller(handle)
            raise

    # ----- closing -------------------------------------------------------------------------------

    @property
    def left_running(self) -> list[tuple[str, str | None]]:
        """(jobid, email) of the jobs still running when the client closed, not cancelled."""
        return [
            (watch.jobid, watch.email)
            for watch in self.poller.left_running
            if not watch.cancel_requested
        ]

    async def close(self) -> None:
        """Stop the engine: the first stages of closing the client (see `FlowMusic.aclose`).

        1. No new POST leaves: submissions still waiting for a slot end with
           `ClientClosedError` (nothing was paid).
        2. Tasks cancelled together with the one closing the client get to run their
           cancellation (they may ask for DELETEs), then POSTs on their way and DELETEs are
           waited for, up to `Timing.close_timeout`.
        3. Waits still open end with `ClientClosedError` naming their job; those jobs are left
           running (they are paid; `fm.wait(jobid)` picks them up) and listed in a warning.
        """
        if self.closing:
            return
        self.closing = True
        self._everything.stop(cancel_jobs=False)
        self.scheduler.close()
        with anyio.CancelScope(shield=True):
            # A task cancelled along with us has been woken but may not have run yet; three
            # turns of the loop let it reach its cancellation handler.
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
        with anyio.move_on_after(self.timing.close_timeout, shield=True) as scope:
            await self._in_flight.wait_idle()
        if scope.cancelled_caught:
            logger.warning(
                "closing: %d request(s) still in flight after %.1f s; stopping them",
                self._in_flight.count,
                self.timing.close_timeout,
            )
        self.poller.close()
        if self.left_running:
            jobids = [jobid for jobid, _ in self.left_running]
            logger.warning(
                "closing with %d job(s) still running, left running (they are paid; resume "
                "with fm.wait(jobid)): %s",
                len(jobids),
                ", ".join(jobids),
                # The record says which jobs, for a front end that reports them its own way
                # (the CLI's interrupt report; its users have no `fm` to call).
                extra={"left_running": jobids},
            )


async def _run_hook(name: str, hook: Callable[[_HookArg], Awaitable[None]], arg: _HookArg) -> None:
    """Await a submission hook; an exception of its own becomes a typed error saying that
    nothing was sent (a `FlowMusicError`, such as a journal's `JournalError`, stays itself)."""
    try:
        await hook(arg)
    except FlowMusicError:
        raise
    except Exception as error:
        raise FlowMusicError(f"the {name} hook raised {error!r}; nothing was sent") from error
