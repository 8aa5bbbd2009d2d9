"""The job tracker: every accepted job this client waits for, until it ends.

It owns the poller (the one task that sees jobs end), the per-job records (`Watch`), the
DELETEs that cancel jobs, and what a `JobHandle` reads. Jobs come to it accepted; placing
and paying for them is the submitter's business. Task ownership and shutdown order:
docs/architecture.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import anyio
import anyio.lowlevel

from ._errors import ClientClosedError, FlowMusicError, JobFailed, JobTimeout, copy_for_waiter
from ._events import EventHooks
from ._host import ServiceHost
from ._models import AccountJobs, Job
from ._poller import Capacity, Poller
from ._timing import Timing
from ._watch import Watch

__all__ = ["Capacity", "JobTracker", "TrackerAPI", "wait_bounded"]

logger = logging.getLogger("flowmusic_async")


class TrackerAPI(Protocol):
    """The API calls the tracker makes."""

    async def list_running(self) -> Mapping[str, AccountJobs]:
        """GET /jobs."""

    async def get_job(self, jobid: str) -> Job:
        """GET /jobs/{jobid}."""

    async def cancel_job(self, jobid: str) -> None:
        """DELETE /jobs/{jobid}."""


class TrackedCapacity(Capacity, Protocol):
    """The slot accounting, as the tracker needs it: the poller's view, and counting a job
    accepted elsewhere (an earlier run's) on its account."""

    def commit(
        self, email: str | None, jobid: str, *, reserved: bool = True, tenant: str | None = None
    ) -> None:
        """Count a running job on its account (and on its tenant)."""


async def wait_bounded(done: anyio.Event, seconds: float) -> None:
    """Wait, shielded, at most `seconds` for cleanup work running in the client's task group."""
    with anyio.move_on_after(seconds, shield=True):
        await done.wait()


class JobTracker:
    """Tracks accepted jobs for one client; shared by all its tasks.

    Args:
        api: the API calls.
        host: where DELETEs run (they must finish whatever happens to their caller).
        capacity: told when jobs end, and read by the poller to time its sweeps.
        timing: every duration.
        events: told of every job's end.
        refresh_accounts: awaited before each sweep (the account list, when stale).
    """

    def __init__(
        self,
        api: TrackerAPI,
        *,
        host: ServiceHost,
        capacity: TrackedCapacity,
        timing: Timing,
        events: EventHooks,
        refresh_accounts: Callable[[], Awaitable[None]],
    ) -> None:
        self._api = api
        self._host = host
        self._capacity = capacity
        self._timing = timing
        self._events = events
        self._poller = Poller(
            list_running=api.list_running,
            get_job=api.get_job,
            capacity=capacity,
            timing=timing,
            events=events,
            refresh_accounts=refresh_accounts,
        )

    # ----- tracking ----------------------------------------------------------------------------

    async def run(self) -> None:
        """The poller's loop; runs in the client's background task group until it stops."""
        await self._poller.run()

    def poke(self) -> None:
        """There is work the poller must sweep for (a submission waits for a slot)."""
        self._poller.poke()

    def track(
        self,
        jobid: str,
        email: str | None,
        *,
        client_ref: str | None = None,
        fresh: bool = True,
        webhook: bool = False,
        count: bool = False,
        credits: float | None = None,
        tenant: str | None = None,
    ) -> Watch:
        """Watch an accepted job until it ends (kept even while nobody awaits it).

        Args:
            fresh: accepted just now (it cannot end before `Timing.first_check_after`).
            webhook: it calls back its `replyUrl` when it ends.
            count: count it on its account (a job accepted by an earlier run or process;
                the submitter counts the jobs it placed itself).
            credits: what its submission reserved for it.
        """
        if count:
            self._capacity.commit(email, jobid, reserved=False, tenant=tenant)
        return self._poller.watch(
            jobid,
            email,
            owned=True,
            fresh=fresh,
            client_ref=client_ref,
            webhook=webhook,
            credits=credits,
            tenant=tenant,
        )

    def mean_render_seconds(self) -> float | None:
        """The mean time from acceptance to end of this client's recent jobs (None: none yet)."""
        return self._poller.renders.mean()

    def watching(self, jobid: str) -> Watch | None:
        """The watch of a job this client waits for, if any (the webhook receiver checks it)."""
        return self._poller.get(jobid)

    def settle_if_ended(self, job: Job) -> bool:
        """A terminal record frees its slot and wakes its waiters at once; False if pending."""
        if not job.is_terminal:
            return False
        self._capacity.job_ended(job.jobid)
        self._poller.resolve(job.jobid, job=job)
        return True

    async def fetch_and_settle(self, jobid: str) -> Job:
        """Read a job now (a webhook's hint); if it has ended, wake its waiters at once."""
        job = await self._api.get_job(jobid)
        self.settle_if_ended(job)
        return job

    # ----- waiting -----------------------------------------------------------------------------

    async def wait(self, jobid: str, *, timeout: float) -> Job:
        """Wait for any job by id, including one submitted by an earlier process."""
        watch = self._poller.watch(jobid, fresh=False)
        return await self.await_watch(watch, deadline=time.monotonic() + timeout, email=watch.email)

    async def await_watch(self, watch: Watch, *, deadline: float, email: str | None) -> Job:
        """Wait for `watch` until `deadline` (monotonic); each waiter gets its own error object."""
        if not watch.done.is_set():
            with watch.waiter(), anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                await watch.done.wait()
            if not watch.done.is_set():
                raise self.deadline_passed(watch, deadline=deadline, email=email)
        return self.result_of(watch)

    def result_of(self, watch: Watch) -> Job:
        """The completed record of an ended watch, or a fresh copy of the error it ended with.

        Raises:
            JobFailed: the job ended failed (including cancelled).
            FlowMusicError: what ended the wait (the client closed, the job is unknown, ...).
        """
        self._poller.forget(watch)
        if watch.error is not None:
            raise copy_for_waiter(watch.error)
        job = watch.job
        assert job is not None  # resolve() always sets one of job/error
        if not job.is_completed:
            raise JobFailed(job)
        return job

    def deadline_passed(self, watch: Watch, *, deadline: float, email: str | None) -> JobTimeout:
        """The error for a waiter whose deadline passed first (the job is left running)."""
        self._poller.forget(watch)
        self._events.emit(
            "timeout",
            client_ref=watch.client_ref,
            jobid=watch.jobid,
            email=email,
            tenant=watch.tenant,
        )
        return JobTimeout(watch.jobid, email=email, timeout=deadline - watch.added_at)

    # ----- cancelling --------------------------------------------------------------------------

    def request_cancel(self, watch: Watch) -> anyio.Event:
        """Cancel `watch`'s job server-side, in the client's task group; returns the event set
        once the DELETE is answered and the final record read (or that read failed).

        A second request while the first runs shares its events; after a failed DELETE, a new
        request tries again.
        """
        cancelling, new = watch.start_cancel()
        if new:
            try:
                self._host.start_soon(self._cancel, watch, name=f"cancel {watch.jobid}")
            except ClientClosedError as error:
                logger.warning("job %s left running: %s", watch.jobid, error)
                watch.cancel_ended(error)
        return cancelling.done

    def cancel_answered(self, watch: Watch) -> anyio.Event:
        """`request_cancel` for a caller that has left: the event is set once the DELETE is
        answered (the record is read after that, in the client's task group)."""
        self.request_cancel(watch)
        cancelling = watch.cancelling
        return cancelling.answered if cancelling is not None else _already_set()

    async def cancel_for_departed(self, watch: Watch) -> None:
        """The caller waiting for `watch` is being cancelled: cancel its job server-side, in
        the client's task group, and wait for that at most `cleanup_timeout` (shielded)."""
        await wait_bounded(self.cancel_answered(watch), self._timing.cleanup_timeout)

    def cancel_all(self, watches: list[Watch], *, per_turn: int) -> anyio.Event:
        """Cancel these jobs server-side from the client's task group, asking for `per_turn`
        DELETEs per turn of the event loop (hundreds in one turn froze it); returns the event
        set once every DELETE is answered (the final records are read after that).

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

    async def _cancel(self, watch: Watch) -> None:
        error: FlowMusicError | None = None
        try:
            watch.cancel_sent()
            try:
                await self._api.cancel_job(watch.jobid)
            except FlowMusicError as failed:
                # Reported, not raised: the caller asked for a cancellation and gets it; the
                # job may run on (the poller still watches it while the client is open).
                error = failed
                logger.warning(
                    "DELETE /jobs/%s failed: %s; the job may still be running", watch.jobid, error
                )
                self._events.emit(
                    "cancel_failed",
                    client_ref=watch.client_ref,
                    jobid=watch.jobid,
                    email=watch.email,
                    error=error,
                    tenant=watch.tenant,
                )
                return
            self._capacity.job_ended(watch.jobid)
            watch.cancel_answered()
            try:
                job = await self._api.get_job(watch.jobid)
            except FlowMusicError:
                return  # the poller settles the job when its record can be read
            self.settle_if_ended(job)  # still pending: the record lags; the poller settles it
        finally:
            watch.cancel_ended(error)

    # ----- closing -----------------------------------------------------------------------------

    @property
    def left_running(self) -> list[tuple[str, str | None]]:
        """(jobid, email) of the jobs still running when the client closed, not cancelled."""
        return [
            (watch.jobid, watch.email)
            for watch in self._poller.left_running
            if not watch.cancel_requested
        ]

    def close(self) -> None:
        """End every open wait with `ClientClosedError` naming its job; the jobs are left
        running (they are paid; `fm.wait(jobid)` picks them up), listed in one warning."""
        self._poller.close()
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


def _already_set() -> anyio.Event:
    done = anyio.Event()
    done.set()
    return done
