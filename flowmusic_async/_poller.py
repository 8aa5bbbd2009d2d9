"""The poller: one task per client that watches every pending job.

Instead of a loop per job, one sweep of GET /jobs (running jobs of every account) tells which
jobs are still running; only a job that has left that list costs a GET /jobs/{jobid}, once, to
read its final record. The cost of waiting is one request per `poll_interval`, however many
jobs are pending. When GET /jobs is unavailable the poller falls back to reading each job
that is old enough to have finished, once per interval.

Waiters wait on their own job's event, so a completion wakes only them; cancelling a waiter
never touches the poller. The poller runs in the client's task group and ends with it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import anyio

from ._errors import (
    ClientClosedError,
    FlowMusicError,
    NotFoundError,
    PermissionDeniedError,
)
from ._events import EventHooks
from ._models import AccountJobs, Job
from ._scheduler import Scheduler
from ._timing import Timing

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

logger = logging.getLogger("flowmusic_async")

ListRunning = Callable[[], Awaitable[Mapping[str, AccountJobs]]]
GetJob = Callable[[str], Awaitable[Job]]

# Final records are fetched a few at a time: enough to keep latency low when many jobs end
# in one sweep, few enough not to burst the API.
_FETCH_CONCURRENCY = 8


class Watch:
    """One pending job and whoever waits for it."""

    def __init__(self, jobid: str, email: str | None, *, owned: bool, check_from: float) -> None:
        self.jobid = jobid
        self.email = email
        self.added_at: float = time.monotonic()
        self.check_from = check_from  # the job cannot have ended before this (monotonic)
        self.done: anyio.Event = anyio.Event()
        self.job: Job | None = None
        self.error: FlowMusicError | None = None
        self.waiters = 0
        # Owned by a handle: kept until the job ends even while nobody awaits it, so its
        # result is there when the handle is awaited later.
        self.owned = owned
        self.check_directly = False  # left the running list but its record still said pending
        self.client_ref: str | None = None  # our replyRef tag, checked by the webhook receiver

    def resolve(self, *, job: Job | None = None, error: FlowMusicError | None = None) -> None:
        if self.done.is_set():
            return
        self.job, self.error = job, error
        self.done.set()


class Poller:
    """Watches pending jobs for one client; start it with `await task_group.start(poller.run)`."""

    def __init__(
        self,
        *,
        list_running: ListRunning,
        get_job: GetJob,
        scheduler: Scheduler,
        timing: Timing,
        events: EventHooks,
        refresh_accounts: Callable[[], Awaitable[None]],
    ) -> None:
        self._list_running = list_running
        self._get_job = get_job
        self._scheduler = scheduler
        self._timing = timing
        self._events = events
        self._refresh_accounts = refresh_accounts
        self._watches: dict[str, Watch] = {}
        self._wake = anyio.Event()
        self._sweep_unavailable = False
        self._closed = False

    # ----- watching ------------------------------------------------------------------------------

    def watch(
        self, jobid: str, email: str | None = None, *, owned: bool = False, fresh: bool = True
    ) -> Watch:
        """Start (or join) watching `jobid`.

        Args:
            fresh: the job was accepted just now, so it cannot end before `first_check_after`.
                False for a job of unknown age (attached by id): it is looked at on the next tick.
        """
        if self._closed:
            raise ClientClosedError("the client is closed; no job can be watched")
        watch = self._watches.get(jobid)
        if watch is None:
            check_from = time.monotonic()
            if fresh:
                check_from += self._timing.first_check_after
            watch = self._watches[jobid] = Watch(jobid, email, owned=owned, check_from=check_from)
            self.poke()
        watch.owned = watch.owned or owned
        return watch

    def resolve(
        self, jobid: str, *, job: Job | None = None, error: FlowMusicError | None = None
    ) -> None:
        """Settle a watch from outside the loop (a webhook's verified record, a cancel)."""
        watch = self._watches.pop(jobid, None)
        if watch is not None:
            self._settle(watch, job=job, error=error)

    def forget(self, watch: Watch) -> None:
        """Drop a watch nobody needs any more (its last waiter left, it is not owned)."""
        if watch.waiters == 0 and not watch.owned and self._watches.get(watch.jobid) is watch:
            del self._watches[watch.jobid]

    def get(self, jobid: str) -> Watch | None:
        return self._watches.get(jobid)

    def poke(self) -> None:
        """Wake the loop if it idles: there is work again."""
        self._wake.set()

    # ----- the loop ------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Sweep until cancelled; on the way out, fail every outstanding wait clearly."""
        task_status.started()
        next_sweep = 0.0  # monotonic; sweeps run at a fixed rate, however long a tick takes
        try:
            while True:
                if not self._busy():
                    await self._wake.wait()  # nothing to watch: sleep until work arrives
                    self._wake = anyio.Event()
                    continue
                # A plain sleep, not a wait on `_wake`: new work arriving must not keep pushing
                # the next sweep back.
                delay = self._sweep_at(next_sweep) - time.monotonic()
                if delay > 0:
                    await anyio.sleep(delay)
                started = time.monotonic()
                await self._tick()
                jitter = random.uniform(-self._timing.poll_jitter, self._timing.poll_jitter)
                next_sweep = started + self._timing.poll_interval * (1 + jitter)
        finally:
            self._closed = True
            closed = ClientClosedError("the client was closed while this job was being awaited")
            for watch in list(self._watches.values()):
                watch.resolve(error=closed)
            self._watches.clear()

    def _busy(self) -> bool:
        return bool(self._watches or self._scheduler.our_jobs() or self._scheduler.waiting)

    def _sweep_at(self, next_sweep: float) -> float:
        """When to sweep next: on the fixed-rate schedule, but not before anything can have ended.

        Songs run at least 40 s, so sweeping for jobs younger than `first_check_after` is
        wasted, unless submissions wait for slots that other processes' jobs hold.
        """
        if self._scheduler.waiting and self._scheduler.has_external_jobs:
            return next_sweep
        earliest = self._earliest_check()
        return next_sweep if earliest is None else max(next_sweep, earliest)

    def _earliest_check(self) -> float | None:
        after = self._timing.first_check_after
        checks = [w.check_from for w in self._watches.values()]
        checks += [accepted + after for accepted in self._scheduler.our_jobs().values()]
        return min(checks) if checks else None

    async def _tick(self) -> None:
        await self._refresh_accounts()
        swept_at = time.monotonic()
        to_fetch: list[Watch] = []
        running = await self._sweep()
        if running is not None:
            self._sweep_unavailable = False
            self._scheduler.reconcile(running, swept_at=swept_at)
            listed = {job.jobid for jobs in running.values() for job in jobs.jobs}
            for watch in list(self._watches.values()):
                # A watch added after the sweep was sent may simply not be in it yet.
                left = watch.added_at < swept_at and watch.jobid not in listed
                if left or watch.check_directly:
                    to_fetch.append(watch)
        else:
            # Fallback: read each job that is old enough to have finished.
            now = time.monotonic()
            to_fetch = [w for w in self._watches.values() if w.check_from <= now]
        if to_fetch:
            await self._fetch_all(to_fetch)

    async def _sweep(self) -> Mapping[str, AccountJobs] | None:
        try:
            running = await self._list_running()
        except FlowMusicError as error:
            if not self._sweep_unavailable:
                logger.warning(
                    "GET /jobs failed (%s); reading jobs one by one until it works", error
                )
            self._sweep_unavailable = True
            return None
        return running

    async def _fetch_all(self, watches: list[Watch]) -> None:
        limiter = anyio.CapacityLimiter(_FETCH_CONCURRENCY)

        async def fetch(watch: Watch) -> None:
            async with limiter:
                await self._fetch(watch)

        async with anyio.create_task_group() as tg:
            for watch in watches:
                tg.start_soon(fetch, watch)

    async def _fetch(self, watch: Watch) -> None:
        try:
            job = await self._get_job(watch.jobid)
        except (NotFoundError, PermissionDeniedError) as error:
            # 404: unknown or expired; 403: another user's job. Neither will ever change.
            self._scheduler.job_ended(watch.jobid)
            self._finish(watch, error=error)
            return
        except FlowMusicError as error:
            logger.info("GET /jobs/%s failed (%s); will look again", watch.jobid, error)
            watch.check_directly = True
            return
        if job.is_terminal:
            self._scheduler.job_ended(watch.jobid)
            self._finish(watch, job=job)
        else:
            # Still pending although no longer listed (listing lag, or a sync job): read it
            # directly next time instead of trusting the sweep.
            watch.check_directly = True

    def _finish(
        self, watch: Watch, *, job: Job | None = None, error: FlowMusicError | None = None
    ) -> None:
        if self._watches.get(watch.jobid) is watch:
            del self._watches[watch.jobid]
        self._settle(watch, job=job, error=error)

    def _settle(self, watch: Watch, *, job: Job | None, error: FlowMusicError | None) -> None:
        if job is not None and job.is_completed:
            self._events.emit("completed", jobid=job.jobid, email=job.email)
        elif job is not None:
            self._events.emit("failed", jobid=job.jobid, email=job.email, detail=_failure_code(job))
        elif error is not None:
            self._events.emit("failed", jobid=watch.jobid, email=watch.email, error=error)
        watch.resolve(job=job, error=error)


def _failure_code(job: Job) -> str | None:
    return job.error.code if job.error is not None else None
