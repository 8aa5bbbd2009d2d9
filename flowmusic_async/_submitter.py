"""The submitter: places paid jobs on free slots, sends each once, and hands the accepted job on.

It owns the scheduler (per-account capacity, the queue of submissions waiting for a slot), the
submissions themselves, the paid POST and the reconciliation of a POST whose answer was lost.
Its output is an accepted job, handed to the job tracker, which the caller's `JobHandle`
reads. A submission runs in the client's task group from its wait for a slot to the
bookkeeping of its answer; its caller only awaits the outcome (see docs/architecture.md,
"Task ownership"). One per client, shared by all its tasks.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio

from ._balances import Balances
from ._errors import (
    AuthenticationError,
    ClientClosedError,
    FlowMusicError,
    NoAccountAvailable,
    SubmissionUncertain,
    TransportError,
)
from ._events import EventHooks, EventKind
from ._handles import JobHandle, watch_of
from ._host import ServiceHost
from ._lanes import Place
from ._models import AccountJobs, Job
from ._paid_post import Adopt, Final, JobsAPI, PlaceAgain, Reconcile, classify
from ._reconcile import Reconciler, Verdict, compose_reply_ref, new_client_ref
from ._retry import Attempt, RetryPolicy
from ._scheduler import CapacitySnapshot, Scheduler
from ._spend import Reservation, SpendLedger
from ._submission import JobPath, Submission, SubmitAttempt, SubmitGroup, SubmitHooks
from ._timing import Timing
from ._tracker import JobTracker, wait_bounded
from ._validation import check_seconds
from ._watch import Watch

__all__ = ["NotSent", "Submitter"]

logger = logging.getLogger("flowmusic_async")

_HookArg = TypeVar("_HookArg")


class NotSent(Exception):
    """Internal: the submission was abandoned before its POST left; nothing was created."""


class _Reserved:
    """What one attempt holds before its POST leaves (see `Submitter._reserved`)."""

    __slots__ = ("announced", "at_floor", "committed", "created_nothing", "email", "left", "place")

    def __init__(self, place: Place) -> None:
        self.place = place
        self.email: str | None = None  # the account whose slot is reserved
        self.committed = False  # the slot became the accepted job's
        self.announced: SubmitAttempt | None = None  # the write-ahead told for this attempt
        self.left = False  # the POST left (whatever came of it)
        self.created_nothing = False  # ... and its answer proved no job was created
        # The chosen account's balance would fall below the credit floor: place it elsewhere.
        self.at_floor: NoAccountAvailable | None = None


def _on_its_way(sub: Submission) -> bool:
    """`sub` was made but has not begun its first attempt (not yet in the scheduler's line)."""
    return sub.attempt == 0 and not sub.decided.is_set()


class Submitter:
    """Places, sends and accepts paid jobs for one client.

    Args:
        api: the API calls.
        tracker: where accepted jobs go.
        host: the client's task group, where submissions run.
        timing: every duration.
        policy: the client's retry policy.
        events: told about every step.
        spend: the spend limits; every submission reserves its cost here before its POST.
        balances: the accounts' live balances, when a credit floor is set.
    """

    def __init__(
        self,
        api: JobsAPI,
        *,
        tracker: JobTracker,
        scheduler: Scheduler,
        host: ServiceHost,
        timing: Timing,
        policy: RetryPolicy,
        events: EventHooks,
        spend: SpendLedger,
        balances: Balances | None = None,
    ) -> None:
        self._api = api
        self.spend = spend
        self._balances = balances
        self._tracker = tracker
        self.scheduler = scheduler
        self._host = host
        self._timing = timing
        self._policy = policy
        self._events = events
        self._reconciler = Reconciler(
            list_running=api.list_running,
            get_job=api.get_job,
            known_jobs=scheduler.our_jobs,
            timing=timing,
            sleep=policy.sleep,
        )
        self._accounts_lock: anyio.Lock | None = None
        self._accounts_due = 0.0  # monotonic time the account list should be read again
        self._everything = SubmitGroup()  # every submission; stopped when the client closes
        self._priced: set[str] = set()  # accounts whose usage report was read for a price
        self._tenant_groups: dict[str, SubmitGroup] = {}  # each tenant's (`cancel_queued`)
        self._closing = False

    @property
    def timing(self) -> Timing:
        return self._timing

    # ----- accounts ----------------------------------------------------------------------------

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
            self._accounts_due = time.monotonic() + self._timing.accounts_refresh
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
            await self._return_topped_up()
            for answer in sweep:
                if isinstance(answer, FlowMusicError):
                    logger.warning("GET /jobs failed (%s); other processes' jobs unknown", answer)
                elif isinstance(answer, Exception):
                    raise answer
                else:
                    self.scheduler.reconcile(answer, swept_at=swept_at)

    async def _return_topped_up(self) -> None:
        """Accounts held out at the credit floor come back once a read shows a top-up (once
        per refresh of the account list, not per song)."""
        if self._balances is not None:
            cost = self.spend.costs.cost("song")
            held = self.scheduler.out_at_floor()
            for email in await self._balances.topped_up(held, cost):
                self.scheduler.put_back(email)

    async def _read_running(self, into: list[Mapping[str, AccountJobs] | Exception]) -> None:
        """GET /jobs into `into`: its answer, or the error it ended with."""
        try:
            into.append(await self._api.list_running())
        except Exception as error:
            into.append(error)

    async def refresh_accounts_quietly(self) -> None:
        """`refresh_accounts` for the poller: a failure is logged, not raised."""
        try:
            await self.refresh_accounts()
        except FlowMusicError as error:
            logger.warning("GET /accounts failed: %s", error)

    # ----- submitting --------------------------------------------------------------------------

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
        tenant: str | None = None,
    ) -> Submission:
        """Start one paid submission in the client's task group and return it at once.

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
            tenant: whose work it is: slots are shared fairly between tenants, and
                `cancel_queued(tenant)` stops its submissions not yet sent.

        Raises:
            ValidationError: a bad `timeout`, before anything is sent.
            ClientClosedError: the client is closing.
        """
        job_timeout = self._timing.job_timeout if timeout is None else check_seconds(timeout)
        if self._closing:
            raise ClientClosedError("this FlowMusic client is closing; no new job is submitted")
        ref = client_ref or new_client_ref()
        request = dict(body)
        request["mode"] = "async"
        request["replyRef"] = compose_reply_ref(request.get("replyRef"), ref)
        groups: tuple[SubmitGroup, ...] = (self._everything,)
        if group is not None:
            groups += (group,)
        if tenant is not None:
            groups += (self._tenant_groups.setdefault(tenant, SubmitGroup()),)
        sub = Submission(
            ref,
            groups,
            path=path,
            request=request,
            account=account,
            job_timeout=job_timeout,
            hooks=hooks or SubmitHooks(),
            ticket=self.scheduler.ticket(),
            tenant=tenant,
        )
        self._host.start_soon(self._run, sub, name=f"submit {ref}")
        return sub

    async def accepted(self, sub: Submission) -> JobHandle:
        """Wait until `sub` (from `enqueue`) is accepted; its handle, or the error that ended it.

        If the caller is cancelled meanwhile, the submission is abandoned: not sent if it had
        not left yet, its job cancelled as soon as it is accepted if it had (the caller waits
        for that at most `Timing.cleanup_timeout`).
        """
        try:
            await sub.decided.wait()
        except BaseException:
            await wait_bounded(self.abandon(sub), self._timing.cleanup_timeout)
            raise
        return sub.outcome()

    def abandon(self, sub: Submission) -> anyio.Event:
        """The caller of `sub` left: stop it; returns the event that says the cleanup is done."""
        cancel_job = sub.hooks.cancel_if_abandoned
        sub.abandon(cancel_job=cancel_job)
        handle = sub.handle
        if cancel_job and sub.settled.is_set() and handle is not None and not handle.ended:
            return self._tracker.cancel_answered(watch_of(handle))
        return sub.settled

    def cancel_job(self, handle: JobHandle) -> anyio.Event:
        """Cancel an accepted job server-side (`QueuedJob.cancel`)."""
        return self._tracker.request_cancel(watch_of(handle))

    def position(self, sub: Submission) -> int | None:
        """How many submissions wait for a slot ahead of `sub` (None when it is not waiting)."""
        position = self.scheduler.position(sub)
        if position is None and _on_its_way(sub):
            # Made, but its task has not joined the scheduler's line yet: its ticket, taken
            # when it was made, says where it stands, behind the older ones on their way too
            # that will want the same slots (as the scheduler counts its line: those for any
            # account, and those pinned to `sub`'s own account).
            earlier = sum(
                1
                for other in self._everything.members()
                if _on_its_way(other)
                and other.tenant == sub.tenant
                and other.account in (None, sub.account)
                and other.ticket < sub.ticket
            )
            position = earlier + self.scheduler.position_of_ticket(
                sub.ticket, tenant=sub.tenant, email=sub.account
            )
        return position

    # ----- tenants and the capacity snapshot (issue 26) ----------------------------------------

    def estimated_start(self, sub: Submission) -> float | None:
        """Seconds until `sub` gets a slot, estimated (None: not waiting, or nothing to go by)."""
        position = self.position(sub)
        render = self._tracker.mean_render_seconds()
        if position is None or render is None:
            return None
        return self.scheduler.estimate_start(position, render_seconds=render)

    def cancel_queued(self, tenant: str) -> int:
        """Stop every submission of `tenant` whose POST has not left; returns how many.

        Synchronous: none of them sends from now on, each ends with `ClientClosedError`
        (nothing was paid). POSTs already on their way finish; their jobs run on.
        """
        group = self._tenant_groups.pop(tenant, None)
        return 0 if group is None else group.stop(cancel_jobs=False)

    def capacity(self, tenant: str | None = None) -> CapacitySnapshot:
        """The slots, the queue, and when a song of `tenant` queued now would start."""
        render = self._tracker.mean_render_seconds()
        scheduler = self.scheduler
        start = None
        if render is not None:
            start = scheduler.estimate_start(
                scheduler.position_for_new(tenant), render_seconds=render
            )
        elif scheduler.known and scheduler.position_for_new(tenant) < scheduler.free_slots():
            start = 0.0
        return CapacitySnapshot(
            accounts=scheduler.snapshot(),
            queued=scheduler.waiting,
            tenants=scheduler.tenant_usage(),
            render_seconds=render,
            estimated_start=start,
            taken_at=time.time(),
        )

    async def read_capacity(self, tenant: str | None = None) -> CapacitySnapshot:
        """`capacity` after reading GET /accounts now (the first time, GET /jobs too)."""
        await self.refresh_accounts(force=True)
        return self.capacity(tenant)

    def _leave_tenant_group(self, sub: Submission) -> None:
        tenant = sub.tenant
        if tenant is not None and (group := self._tenant_groups.get(tenant)) and group.idle:
            del self._tenant_groups[tenant]

    async def _run(self, sub: Submission) -> None:
        """The whole life of one submission, in the client's task group.

        Ends with exactly one of: a handle (the "submitted" event; the job's own end follows
        later), a "cancelled" event (abandoned before the POST left: nothing was paid), or a
        "failed" event with the typed error the caller receives.
        """
        ref = sub.client_ref
        handle: JobHandle | None = None
        error: FlowMusicError | None = None
        try:
            handle = await self._place_and_send(sub)
        except NotSent:
            error = ClientClosedError(
                "the submission was stopped before it was sent; nothing was paid",
                email=sub.account,
            )
            self._tell("cancelled", sub, email=sub.account)
        except FlowMusicError as failed:
            error = failed
            self._emit_failed(sub, error)
        except anyio.get_cancelled_exc_class():
            # The client stopped. With the POST on its way, nobody can tell any more whether a
            # job was created; before it, nothing was sent.
            if sub.sending:
                error = SubmissionUncertain(
                    endpoint=f"POST {sub.path}",
                    client_ref=ref,
                    email=sub.email,
                    sent_at=sub.sent_at or time.time(),
                    detail="The client closed before the answer arrived.",
                )
            else:
                error = ClientClosedError(
                    "the client closed before this job was sent; nothing was paid",
                    email=sub.account,
                )
            self._emit_failed(sub, error)
            raise
        except Exception as failed:  # a bug must still end the caller's wait with a typed error
            logger.exception("submission %s failed unexpectedly", ref)
            error = FlowMusicError(f"internal error while submitting: {failed!r}")
            self._emit_failed(sub, error)
        finally:
            sub.decide(handle=handle, error=error)
            if handle is None:
                sub.settle()
                self._leave_tenant_group(sub)
        if handle is None:
            return
        try:
            if sub.hooks.on_accepted is not None:
                with anyio.CancelScope(shield=True):
                    try:
                        await sub.hooks.on_accepted(handle)
                    except Exception:
                        logger.exception("on_accepted for job %s failed", handle.jobid)
            if sub.cancel_job and not handle.ended:
                await self._tracker.cancel_answered(watch_of(handle)).wait()
        finally:
            sub.settle()
            self._leave_tenant_group(sub)

    def _tell(self, kind: EventKind, sub: Submission, **fields: Any) -> None:
        """Emit an event of `sub`'s: its client reference and tenant go on every one."""
        self._events.emit(kind, client_ref=sub.client_ref, tenant=sub.tenant, **fields)

    def _emit_failed(self, sub: Submission, error: FlowMusicError) -> None:
        self._tell("failed", sub, email=sub.email, attempt=sub.attempt, error=error)

    async def _place_and_send(self, sub: Submission) -> JobHandle:
        """Place the job and send it until it is accepted; raises the error that ends it, or
        `NotSent` when it was stopped before a POST left."""
        await self.refresh_accounts()
        cost = self.spend.costs.cost(sub.operation)
        # Refused here (`BudgetExceeded`) when it would cross a spend limit: nothing is sent.
        # Held across every attempt: a 429 placed again does not give its credits back.
        with self.spend.reserve(
            cost, tenant=sub.tenant, batch=sub.spend_key, account=sub.account
        ) as reservation:
            self._tell("queued", sub, email=sub.account, credits=cost)
            attempts = self._policy.retrying(
                max_retries=None,
                base=self._timing.backoff_base,
                give_up_at=time.monotonic() + sub.job_timeout,
                stop=sub.stopped,
            )
            try:
                async for attempt in attempts:
                    sub.next_attempt()
                    async with self._reserved(sub, cost) as reserved:
                        if reserved.at_floor is not None:
                            if reserved.email is not None:
                                self.scheduler.hold_at_floor(reserved.email, reserved.at_floor)
                            floor = PlaceAgain(error=reserved.at_floor, at_once=True)
                            self._place_again(sub, floor, reserved, attempt)
                            continue
                        job = await self._send(sub, reserved, attempt)
                        if job is not None:
                            return self._accept(sub, job, reserved, reservation)
            except BaseException as error:
                if sub.sending or isinstance(error, SubmissionUncertain):
                    # A job may exist and be charged: its credits stay counted.
                    reservation.accepted(account=sub.email)
                raise
        raise NotSent  # stopped during a backoff

    @asynccontextmanager
    async def _reserved(self, sub: Submission, cost: float) -> AsyncIterator[_Reserved]:
        """Everything a POST holds before it leaves: a slot, the write-ahead, a place among the
        API requests in flight. Held until the attempt ends, and given back on every way out
        (a slot that became the accepted job's stays; so does a write-ahead whose POST may
        have created a job). Raises `NotSent` when abandoned before the POST leaves.

        The place is taken here, where abandoning still stops everything: a POST queued
        behind other requests has not left, and must not leave once its caller is gone.
        """
        hooks = sub.hooks
        reserved = _Reserved(self._api.place_ahead())
        slot = False
        try:
            with sub.before_sending() as scope:
                if self._closing:
                    scope.cancel()
                reserved.email = await self.scheduler.acquire(
                    sub.account,
                    owner=sub,
                    ticket=sub.ticket,
                    on_wait=self._tracker.poke,
                    tenant=sub.tenant,
                )
                slot = True
                # The chosen account's balance must stay above the credit floor; if not, the
                # caller places the job again (nothing announced, nothing sent).
                if self._balances is not None and reserved.email is not None:
                    reserved.at_floor = await self._balances.refusal(
                        reserved.email, cost, near_every=self._timing.poll_interval
                    )
                if reserved.at_floor is None:
                    await self._announce(sub, reserved)
            if scope.cancelled_caught or sub.abandoned or self._closing:
                raise NotSent
            yield reserved
        finally:
            reserved.place.give_back()
            if slot and not reserved.committed:
                self.scheduler.release(reserved.email, tenant=sub.tenant)
            withdraw = not reserved.left or reserved.created_nothing
            if reserved.announced is not None and withdraw and hooks.on_unsent is not None:
                with anyio.CancelScope(shield=True):
                    try:
                        await _run_hook("on_unsent", hooks.on_unsent, reserved.announced)
                    except FlowMusicError:
                        logger.exception("withdrawing the write-ahead of %s failed", sub.client_ref)

    async def _announce(self, sub: Submission, reserved: _Reserved) -> None:
        """The slot is ours: tell the observers and the journal (the write-ahead), then take a
        place among the requests in flight. Runs inside the submission's pre-send scope."""
        hooks = sub.hooks
        self._tell("placed", sub, email=reserved.email, attempt=sub.attempt)
        sub.placed(reserved.email)
        if hooks.on_submitting is not None and not sub.abandoned:
            announced = SubmitAttempt(
                client_ref=sub.client_ref,
                email=reserved.email,
                sent_at=sub.sent_at or time.time(),
                attempt=sub.attempt,
            )
            # Shielded: a write-ahead record is finished, even if abandoned meanwhile.
            with anyio.CancelScope(shield=True):
                await _run_hook("on_submitting", hooks.on_submitting, announced)
            reserved.announced = announced
        await reserved.place.take()

    async def _send(self, sub: Submission, reserved: _Reserved, attempt: Attempt) -> Job | None:
        """One POST (never repeated here); the job it created, or None to place it again.

        Raises the error that ends the submission.
        """
        email = reserved.email
        # No checkpoint between the last look at `abandoned` (in `_reserved`) and the POST.
        self._tell("submitting", sub, email=email, attempt=sub.attempt)
        request = sub.request
        if sub.path == "/music":  # an edit has no `email`: it runs on its clip's account
            request = {key: value for key, value in request.items() if key != "email"}
            if email is not None:
                request["email"] = email
        reserved.left = True
        sub.post_leaves()
        try:
            job = await self._api.create_job(sub.path, request, reserved.place)
        except FlowMusicError as error:
            outcome = classify(
                error, email=email, pinned=sub.account is not None, tracked=self.scheduler.known
            )
        else:
            sub.post_answered()
            return job
        # `sending` stays True if cancelled while reconciling: the answer never came.
        if isinstance(outcome, Reconcile):
            return await self._reconcile(sub, outcome, reserved, attempt)
        sub.post_answered()
        if isinstance(outcome, Adopt):
            return await self._api.get_job(outcome.jobid)
        if isinstance(outcome, Final):
            if outcome.take_out is not None:
                self.scheduler.take_out(outcome.take_out, outcome.error)
            raise outcome.error
        self._place_again(sub, outcome, reserved, attempt)
        return None

    def _place_again(
        self, sub: Submission, outcome: PlaceAgain, reserved: _Reserved, attempt: Attempt
    ) -> None:
        """Nothing was created: schedule the next attempt, or raise when the retries ran out."""
        reserved.created_nothing = True
        delay = attempt.retry(
            retry_after=outcome.retry_after,
            never_sent=outcome.never_sent,
            wait=not outcome.at_once,
        )
        if outcome.hold_full:
            # Another process took the slot since our last sweep: hold the account back
            # until a sweep shows room, and let this job go wherever there is room now.
            self.scheduler.note_full(reserved.email, hold=delay or 0.0)
        if outcome.take_out is not None:
            self.scheduler.take_out(outcome.take_out, outcome.error)
        if delay is None:
            if outcome.never_sent:
                raise self._api.unreachable(outcome.error, attempt.number) from outcome.error
            raise outcome.error
        self._tell("retrying", sub, email=reserved.email, attempt=sub.attempt, error=outcome.error)

    async def _reconcile(
        self, sub: Submission, outcome: Reconcile, reserved: _Reserved, attempt: Attempt
    ) -> Job | None:
        """The POST may have created a job: adopt it, send again if provably not, else give up."""
        ref = sub.client_ref
        sent_at = sub.sent_at or time.time()
        verdict = await self._reconciler.reconcile(
            ref, email=reserved.email, sent_at=sent_at, sent_mono=sub.sent_mono
        )
        sub.post_answered()
        if isinstance(verdict, Job):
            self._tell(
                "reconciled",
                sub,
                jobid=verdict.jobid,
                email=verdict.email,
                detail="the job existed; adopted, not resent",
            )
            return verdict
        if verdict == Verdict.ABSENT and outcome.absence_proves:
            self._tell(
                "reconciled", sub, email=reserved.email, detail="no job was created; resending"
            )
            self._place_again(sub, PlaceAgain(error=outcome.error), reserved, attempt)
            return None
        raise SubmissionUncertain(
            endpoint=f"POST {sub.path}",
            client_ref=ref,
            email=reserved.email,
            sent_at=sent_at,
            detail=f"Cause: {outcome.error}",
        ) from outcome.error

    def _accept(
        self, sub: Submission, job: Job, reserved: _Reserved, reservation: Reservation
    ) -> JobHandle:
        """Count the job on its account, hand it to the tracker and return its handle; its
        credits stay reserved until the job ends, then count as spent."""
        placed = reserved.email
        if placed is not None and job.email != placed:
            self.scheduler.release(placed, tenant=sub.tenant)
            self.scheduler.commit(job.email, job.jobid, reserved=False, tenant=sub.tenant)
        else:
            self.scheduler.commit(job.email, job.jobid, tenant=sub.tenant)
        reserved.committed = True
        reservation.accepted(account=job.email)
        self._tell("submitted", sub, jobid=job.jobid, email=job.email, credits=reservation.cost)
        # A job that calls back its `replyUrl` lets the poller sweep slowly.
        watch = self._tracker.track(
            job.jobid,
            job.email,
            client_ref=sub.client_ref,
            webhook=bool(sub.request.get("replyUrl")),
            credits=reservation.cost,
            tenant=sub.tenant,
        )
        watch.add_listener(lambda ended: self._job_ended(ended, reservation))
        self._tracker.settle_if_ended(job)
        return JobHandle(
            self._tracker,
            watch,
            email=job.email,
            client_ref=sub.client_ref,
            timeout=sub.job_timeout,
        )

    def _job_ended(self, watch: Watch, reservation: Reservation) -> None:
        """A job this client placed ended: its credits count as spent. When a limit or a
        credit floor makes prices matter, the first song an account completes has the
        account's usage report read once for the song's price (without them, no request)."""
        reservation.settle(watch.spent(watch.job))
        email = watch.email
        job = watch.job
        if email is None or email in self._priced or job is None or not job.is_completed:
            return
        if not self.spend.limited and self._balances is None:
            return
        self._priced.add(email)
        with contextlib.suppress(ClientClosedError):  # closing: the price no longer matters
            self._host.start_background(self._learn_song_price, email, name=f"price {email}")

    async def _learn_song_price(self, email: str) -> None:
        """The price of a song as the API charged it, from the account's usage report (a
        free read); future reservations use it."""
        try:
            usage = await self._api.account_usage(email)
        except FlowMusicError as error:
            logger.info("GET /accounts/usage for %s failed (%s); prices as before", email, error)
            return
        self.spend.costs.learn_song_price(usage)

    # ----- jobs accepted earlier ---------------------------------------------------------------

    async def recover(
        self,
        client_ref: str,
        *,
        email: str | None,
        sent_at: float,
        path: JobPath = "/music",
        timeout: float | None = None,
        tenant: str | None = None,
    ) -> JobHandle | None:
        """After a restart: the handle of the job a journalled POST created, or None if none was.

        Raises:
            SubmissionUncertain: it cannot be decided (the POST is too old to prove absence
                and its job is no longer running); check by hand.
        """
        await self.refresh_accounts()
        verdict = await self._reconciler.reconcile(client_ref, email=email, sent_at=sent_at)
        if isinstance(verdict, Job):
            return self.attach(
                verdict.jobid, verdict.email, client_ref=client_ref, timeout=timeout, tenant=tenant
            )
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
        tenant: str | None = None,
    ) -> JobHandle:
        """A handle on a job accepted earlier (here or elsewhere), counted on its account (and
        its `tenant`'s jobs in flight)."""
        job_timeout = self._timing.job_timeout if timeout is None else check_seconds(timeout)
        watch = self._tracker.track(
            jobid, email, client_ref=client_ref, fresh=False, count=True, tenant=tenant
        )
        return JobHandle(
            self._tracker, watch, email=email, client_ref=client_ref, timeout=job_timeout
        )

    # ----- closing -----------------------------------------------------------------------------

    def close(self) -> None:
        """No new POST leaves: every submission not yet sent is stopped (it ends with
        `ClientClosedError`; nothing was paid) and the scheduler refuses new waiters.
        POSTs already on their way finish in the client's task group."""
        if self._closing:
            return
        self._closing = True
        self._everything.stop(cancel_jobs=False)
        self.scheduler.close()


async def _run_hook(name: str, hook: Callable[[_HookArg], Awaitable[None]], arg: _HookArg) -> None:
    """Await a submission hook; an exception of its own becomes a typed error saying that
    nothing was sent (a `FlowMusicError`, such as a journal's `JournalError`, stays itself)."""
    try:
        await hook(arg)
    except FlowMusicError:
        raise
    except Exception as error:
        raise FlowMusicError(f"the {name} hook raised {error!r}; nothing was sent") from error
