"""The poller: one task per client that watches every pending job.

Instead of a loop per job, one sweep of GET /jobs (running jobs of every account) tells which
jobs are still running; only a job that has left that list costs a GET /jobs/{jobid}, once, to
read its final record. The cost of waiting is one request per `poll_interval`, however many
jobs are pending. When GET /jobs is unavailable the poller falls back to reading each job
that is old enough to have finished, once per interval.

Final records are read apart from the sweeps, as many at once as jobs have ended (up to a
bound): on a slow network, a sweep never waits for the reads of the last one, and a burst of
completions is read in one round trip rather than in rounds of a few.

Waiters wait on their own job's event, so a completion wakes only them; cancelling a waiter
never touches the poller. An unexpected error in a sweep is logged and the next sweep goes on:
one broken answer must not end every wait. The poller runs in the client's own task group.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.abc

from ._errors import (
    ClientClosedError,
    FlowMusicError,
    NotFoundError,
    PermissionDeniedError,
)
from ._events import EventHooks
from ._lanes import take_place
from ._models import AccountJobs, Job
from ._timing import Timing
from ._watch import Watch

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

logger = logging.getLogger("flowmusic_async")

ListRunning = Callable[[], Awaitable[Mapping[str, AccountJobs]]]
GetJob = Callable[[str], Awaitable[Job]]

# Final records read at once. Enough for every job of 50 accounts x 16 slots ending in one
# sweep to be read in a single round trip; a bound all the same, so that a client never opens
# more connections than the API can reasonably be asked to serve.
FETCH_CONCURRENCY = 64

# A sweep's own bookkeeping (the listing reconciled against every watch and slot) may take at
# most 1/SWEEP_WORK_RATIO of the time between sweeps; past that the interval is stretched,
# up to SWEEP_STRETCH_MAX x `poll_interval`. At the real API's timing this never happens; it
# does when time is compressed, as on a fast simulator, where sweeping every few milliseconds
# would spend the loop on sweeps that find few new ends (docs/benchmarks.md).
SWEEP_WORK_RATIO = 100
SWEEP_STRETCH_MAX = 4


class Capacity(Protocol):
    """What the poller tells the slot accounting (the submitter's `Scheduler`), and asks it."""

    @property
    def waiting(self) -> int:
        """Submissions queued for a slot."""

    @property
    def needs_sweeps(self) -> bool:
        """Submissions wait for slots only a sweep can show free."""

    def our_jobs(self) -> dict[str, float]:
        """Our running jobs: jobid -> monotonic time of acceptance."""

    def reconcile(self, running: Mapping[str, AccountJobs], *, swept_at: float) -> list[str]:
        """Take in a GET /jobs sweep."""

    def forget_external(self) -> None:
        """GET /jobs is unavailable: stop counting jobs we can no longer see."""

    def job_ended(self, jobid: str) -> None:
        """Free the slot of a job that ended."""


class RenderDurations:
    """The mean time from acceptance to end of the last `keep` jobs accepted here."""

    def __init__(self, keep: int = 64) -> None:
        self._last: deque[float] = deque(maxlen=keep)

    def add(self, seconds: float | None) -> None:
        if seconds is not None:
            self._last.append(seconds)

    def mean(self) -> float | None:
        return sum(self._last) / len(self._last) if self._last else None


class Poller:
    """Watches pending jobs for one client; `run` runs in the client's background task group."""

    def __init__(
        self,
        *,
        list_running: ListRunning,
        get_job: GetJob,
        capacity: Capacity,
        timing: Timing,
        events: EventHooks,
        refresh_accounts: Callable[[], Awaitable[None]],
    ) -> None:
        self._list_running = list_running
        self._get_job = get_job
        self._capacity = capacity
        self._timing = timing
        self._events = events
        self._refresh_accounts = refresh_accounts
        self._watches: dict[str, Watch] = {}
        self._fetching: set[str] = set()  # jobids whose final record is being read
        # Jobids that left the running list while their record still said pending (listing
        # lag, a sync job): read directly at every sweep instead of trusting the listing.
        self._check_directly: set[str] = set()
        self._wake: anyio.Event | None = None
        self._sweep_unavailable = False
        self._closed = False
        self._fetches: anyio.abc.TaskGroup | None = None
        self.left_running: list[Watch] = []  # watches still pending when the poller closed
        self._fetch_limiter: anyio.CapacityLimiter | None = None
        self._sweep_work: list[float] = []  # seconds of bookkeeping of the last sweeps
        self._timing_warned = False  # the "timing does not match the server's clock" line
        self.renders = RenderDurations()  # how long our fresh jobs took, for estimates

    # ----- watching ------------------------------------------------------------------------------

    def watch(
        self,
        jobid: str,
        email: str | None = None,
        *,
        owned: bool = False,
        fresh: bool = True,
        client_ref: str | None = None,
        webhook: bool = False,
        credits: float | None = None,
        tenant: str | None = None,
    ) -> Watch:
        """Start (or join) watching `jobid`.

        Once the poller is closed, the watch comes back already ended with `ClientClosedError`
        naming the job (a POST whose answer arrived during the close still yields a handle).

        Args:
            fresh: the job was accepted just now, so it cannot end before `first_check_after`.
                False for a job of unknown age (attached by id): it is looked at on the next tick.
            client_ref: our reference for the submission that created the job.
            webhook: the job calls back its `replyUrl`, so sweeps may be slow.
        """
        watch = self._watches.get(jobid)
        if watch is None:
            check_from = time.monotonic()
            if fresh:
                check_from += self._timing.first_check_after
            watch = Watch(
                jobid,
                email,
                owned=owned,
                check_from=check_from,
                fresh=fresh,
                client_ref=client_ref,
                webhook=webhook,
                credits=credits,
                tenant=tenant,
            )
            if self._closed:
                self.left_running.append(watch)
                self._settle(watch, job=None, error=_closed_error(watch))
                return watch
            self._watches[jobid] = watch
            self.poke()
            return watch
        watch.join(owned=owned, client_ref=client_ref)
        return watch

    def resolve(
        self, jobid: str, *, job: Job | None = None, error: FlowMusicError | None = None
    ) -> None:
        """Settle a watch from outside the loop (a webhook's verified record, a cancel)."""
        watch = self._watches.pop(jobid, None)
        self._check_directly.discard(jobid)
        if watch is not None:
            self._settle(watch, job=job, error=error)

    def forget(self, watch: Watch) -> None:
        """Drop a watch nobody needs any more (its last waiter left, it is not owned)."""
        if watch.waiters == 0 and not watch.owned and self._watches.get(watch.jobid) is watch:
            del self._watches[watch.jobid]
            self._check_directly.discard(watch.jobid)

    def get(self, jobid: str) -> Watch | None:
        return self._watches.get(jobid)

    def poke(self) -> None:
        """Wake the loop if it idles: there is work again."""
        if self._wake is not None:
            self._wake.set()

    def close(self) -> list[Watch]:
        """Stop watching: fail every outstanding wait with `ClientClosedError` naming its job.

        The jobs themselves are left running (they are paid for; `fm.wait(jobid)` in another
        client picks them up). Returns the watches that were still pending.
        """
        self._closed = True
        pending = list(self._watches.values())
        self._watches.clear()
        self._check_directly.clear()
        for watch in pending:
            self._settle(watch, job=None, error=_closed_error(watch))
        self.left_running.extend(pending)
        self.poke()
        return pending

    # ----- the loop ------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Sweep until cancelled (the client closes); fetch final records alongside."""
        self._wake = anyio.Event()
        self._fetch_limiter = anyio.CapacityLimiter(FETCH_CONCURRENCY)
        try:
            async with anyio.create_task_group() as fetches:
                self._fetches = fetches
                task_status.started()
                await self._sweep_forever()
        finally:
            self._fetches = None
            self.close()

    async def _sweep_forever(self) -> None:
        next_sweep = 0.0  # monotonic; sweeps run at a fixed rate, however long a tick takes
        while not self._closed:
            if not self._busy():
                assert self._wake is not None
                await self._wake.wait()  # nothing to watch: sleep until work arrives
                self._wake = anyio.Event()
                continue
            # A plain sleep, not a wait on `_wake`: new work arriving must not keep pushing
            # the next sweep back.
            delay = self._sweep_at(next_sweep) - time.monotonic()
            if delay > 0:
                await anyio.sleep(delay)
            started = time.monotonic()
            try:
                await self._tick()
            except Exception:  # one broken answer must not end every wait
                logger.exception("a sweep of pending jobs failed; the next one goes on")
            jitter = random.uniform(-self._timing.poll_jitter, self._timing.poll_jitter)
            next_sweep = started + self._interval() * (1 + jitter)

    def _interval(self) -> float:
        """The time to the next sweep: `poll_interval` (stretched if sweeping would take more
        than its share of the loop, see SWEEP_WORK_RATIO), or the slow safety interval while
        every pending job will call back its `replyUrl` and no submission waits for a slot
        (webhook-only mode: the callbacks, verified by `fm.webhooks.handle`, end the waits)."""
        webhook_only = (
            self._watches
            and all(watch.webhook for watch in self._watches.values())
            and not self._capacity.waiting
        )
        if webhook_only:
            return self._timing.webhook_sweep_interval
        base = self._timing.poll_interval
        # The least of the last few sweeps: one garbage collection landing in a sweep must
        # not stretch the next interval.
        work = min(self._sweep_work, default=0.0)
        return min(max(base, work * SWEEP_WORK_RATIO), base * SWEEP_STRETCH_MAX)

    def _busy(self) -> bool:
        return bool(self._watches or self._capacity.our_jobs() or self._capacity.waiting)

    def _sweep_at(self, next_sweep: float) -> float:
        """When to sweep next: on the fixed-rate schedule, but not before anything can have ended.

        Songs run at least 40 s, so sweeping for jobs younger than `first_check_after` is
        wasted, unless submissions wait for slots only a sweep can show free.
        """
        if self._capacity.needs_sweeps:
            return next_sweep
        earliest = self._earliest_check()
        return next_sweep if earliest is None else max(next_sweep, earliest)

    def _earliest_check(self) -> float | None:
        after = self._timing.first_check_after
        checks = [w.check_from for w in self._watches.values()]
        checks += [accepted + after for accepted in self._capacity.our_jobs().values()]
        return min(checks) if checks else None

    async def _tick(self) -> None:
        await self._refresh_accounts()
        swept_at = time.monotonic()
        running = await self._sweep()
        if running is not None:
            self._sweep_unavailable = False
            work_from = time.perf_counter()
            self._capacity.reconcile(running, swept_at=swept_at)
            listed = {job.jobid for jobs in running.values() for job in jobs.jobs}
            # The jobs no longer listed, found by one set difference rather than a look at
            # every watch: this bookkeeping decides how often sweeps may come (above).
            for jobid in self._watches.keys() - listed:
                watch = self._watches[jobid]
                # A watch added after the sweep was sent may simply not be in it yet.
                if watch.added_at < swept_at:
                    self._start_fetch(watch)
            for jobid in list(self._check_directly):
                check = self._watches.get(jobid)
                if check is not None:
                    self._start_fetch(check)
            self._sweep_work = [*self._sweep_work[-2:], time.perf_counter() - work_from]
        else:
            # Fallback: read each job that is old enough to have finished.
            self._capacity.forget_external()
            now = time.monotonic()
            for watch in list(self._watches.values()):
                if watch.check_from <= now:
                    self._start_fetch(watch)

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

    def _start_fetch(self, watch: Watch) -> None:
        if watch.jobid in self._fetching or self._fetches is None:
            return
        self._fetching.add(watch.jobid)
        self._fetches.start_soon(self._fetch, watch)

    async def _fetch(self, watch: Watch) -> None:
        limiter = self._fetch_limiter
        assert limiter is not None
        try:
            await take_place(limiter, watch)
            try:
                job = await self._get_job(watch.jobid)
            finally:
                limiter.release_on_behalf_of(watch)
        except (NotFoundError, PermissionDeniedError) as error:
            # 404: unknown or expired; 403: another user's job. Neither will ever change.
            self._capacity.job_ended(watch.jobid)
            self._finish(watch, error=error)
            return
        except FlowMusicError as error:
            logger.info("GET /jobs/%s failed (%s); will look again", watch.jobid, error)
            self._check_directly.add(watch.jobid)
            return
        except Exception:
            logger.exception("reading job %s failed; will look again", watch.jobid)
            self._check_directly.add(watch.jobid)
            return
        finally:
            self._fetching.discard(watch.jobid)
        if job.is_terminal:
            self._capacity.job_ended(watch.jobid)
            self._check_clock(watch, job)
            self._finish(watch, job=job)
        else:
            # Still pending although no longer listed (listing lag, or a sync job): read it
            # directly next time instead of trusting the sweep.
            self._check_directly.add(watch.jobid)

    def _check_clock(self, watch: Watch, job: Job) -> None:
        """Warn once, in one line, when jobs end on a much faster clock than our timing's.

        Only a poll can tell: a job's own timestamps against the real time we saw pass. So a
        client that never polls (`jobs list`, a wrong token) never warns, and a simulator at
        the time scale the client's timing was made for never does either.
        """
        if self._timing_warned or not watch.fresh:
            return
        server_seconds = _seconds_between(job.created_at, job.completed_at)
        if server_seconds is None:
            return
        observed = time.monotonic() - watch.added_at
        server_scale = self._timing.too_slow_for(
            server_seconds=server_seconds, observed_seconds=observed
        )
        if server_scale is None:
            return
        self._timing_warned = True
        logger.warning(
            "timing too slow for this server: job %s ran %.0f s by its clock in %.1f s of ours; "
            "set FLOWMUSIC_TIME_SCALE (or timing=Timing.scaled(x)) to its time scale, "
            "%.2g or less (now %g)",
            watch.jobid,
            server_seconds,
            observed,
            server_scale,
            self._timing.scale(),
        )

    def _finish(
        self, watch: Watch, *, job: Job | None = None, error: FlowMusicError | None = None
    ) -> None:
        if self._watches.get(watch.jobid) is watch:
            del self._watches[watch.jobid]
        self._check_directly.discard(watch.jobid)
        self._settle(watch, job=job, error=error)

    def _settle(self, watch: Watch, *, job: Job | None, error: FlowMusicError | None) -> None:
        """Resolve a watch and emit its one terminal event (a second settle does nothing)."""
        if watch.done.is_set():
            return
        fields = {"client_ref": watch.client_ref, "jobid": watch.jobid, "tenant": watch.tenant}
        credits = watch.spent(job)
        if job is not None and job.is_completed:
            self.renders.add(watch.render_seconds())
            self._events.emit("completed", email=job.email, credits=credits, **fields)
        elif watch.cancel_requested and (job is None or job.is_failed):
            self._events.emit(
                "cancelled", email=watch.email, error=error, credits=credits, **fields
            )
        elif job is not None:
            self._events.emit(
                "failed", email=job.email, detail=_failure_code(job), credits=credits, **fields
            )
        else:
            self._events.emit("failed", email=watch.email, error=error, credits=credits, **fields)
        watch.resolve(job=job, error=error)


def _closed_error(watch: Watch) -> ClientClosedError:
    return ClientClosedError(
        f"the client was closed while job {watch.jobid} was awaited; the job was left "
        "running (resume with fm.wait(jobid))",
        jobid=watch.jobid,
        email=watch.email,
    )


def _seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds from one API timestamp to another (ISO 8601), or None when either is unreadable."""
    if not start or not end:
        return None
    try:
        began = datetime.fromisoformat(start.replace("Z", "+00:00"))
        ended = datetime.fromisoformat(end.replace("Z", "+00:00"))
        return (ended - began).total_seconds()
    except (ValueError, TypeError):  # a server's odd timestamp must not break a poll
        return None


def _failure_code(job: Job) -> str | None:
    return job.error.code if job.error is not None else None
