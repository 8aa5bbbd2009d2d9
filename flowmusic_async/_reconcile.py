"""Reconciling: did a paid POST whose answer was lost create a job?

Every submission carries a client reference in `replyRef` (after the caller's own reference,
if any), and the server echoes the request in the job record. So when an answer is lost
(dropped connection, 5xx, broken body) we look for our reference among the running jobs of
the account instead of sending again and paying twice.

The verdict rests on one assumption where the API's documentation is silent
(docs/api-notes.md#q6-sync-jobs-hold-a-slot and #q8-job-retention):
a job is listed by GET /jobs for as long as it runs, and runs at least
`Timing.min_job_seconds`. A listing taken within that span of sending that does not show the
job therefore proves it was never created.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping

from ._errors import FlowMusicError
from ._models import AccountJobs, Job
from ._timing import Timing

logger = logging.getLogger("flowmusic_async")

_REF_PREFIX = "fma:"
_REF_SEPARATOR = "|"


def new_client_ref() -> str:
    """A fresh reference that identifies one logical submission across retries and restarts."""
    return f"{_REF_PREFIX}{uuid.uuid4().hex}"


def compose_reply_ref(user_ref: str | None, client_ref: str) -> str:
    """The `replyRef` to send: the caller's own reference (if any), then ours."""
    return f"{user_ref}{_REF_SEPARATOR}{client_ref}" if user_ref else client_ref


def split_reply_ref(reply_ref: str | None) -> tuple[str | None, str | None]:
    """(the caller's reference, our client reference) from a `replyRef` we composed."""
    if not reply_ref:
        return None, None
    user, sep, ours = reply_ref.rpartition(_REF_SEPARATOR)
    if ours.startswith(_REF_PREFIX):
        return (user if sep else None), ours
    return reply_ref, None


class Verdict(enum.Enum):
    """Outcome of reconciling when no job was found."""

    ABSENT = "absent"  # proven not created: safe to send again
    UNDECIDED = "undecided"  # may exist: never resend blindly


class Reconciler:
    """Looks for the job a POST tagged with a client reference created.

    Args:
        list_running: GET /jobs.
        get_job: GET /jobs/{jobid}.
        known_jobs: the jobids this client already knows (they cannot be the lost one).
        timing: for `min_job_seconds` and `reconcile_delay`.
        sleep: the wait between the two looks (the client's `RetryPolicy.sleep`).
    """

    def __init__(
        self,
        *,
        list_running: Callable[[], Awaitable[Mapping[str, AccountJobs]]],
        get_job: Callable[[str], Awaitable[Job]],
        known_jobs: Callable[[], Mapping[str, object]],
        timing: Timing,
        sleep: Callable[[float], Awaitable[object]],
    ) -> None:
        self._list_running = list_running
        self._get_job = get_job
        self._known_jobs = known_jobs
        self._timing = timing
        self._sleep = sleep
        # replyRef of every foreign job already read, so a second search costs no request.
        self._refs_seen: dict[str, str | None] = {}

    async def reconcile(
        self, client_ref: str, *, email: str | None, sent_at: float, sent_mono: float | None = None
    ) -> Job | Verdict:
        """The job record when found; else `Verdict.ABSENT` if provably none, else `UNDECIDED`.

        Two looks, `reconcile_delay` apart, cover a request the server was still finishing.
        "Provably none" needs the POST to be younger than `Timing.min_job_seconds` at the last
        look, measured on the monotonic clock when the POST left this process: a wall clock
        stepped back (NTP, a resumed VM) would make an old POST look young, and resending it
        would pay twice.

        Args:
            client_ref: the reference the POST carried.
            email: the account it was sent to (None: look at every account).
            sent_at: `time.time()` when the POST was sent.
            sent_mono: `time.monotonic()` when it was sent, if by this process; None for a
                POST found in a journal after a restart, whose age is then taken from the wall
                clock, conservatively (a negative age proves nothing).
        """
        look_started = time.monotonic()
        look_started_wall = time.time()
        for look in range(2):
            if look:
                await self._sleep(self._timing.reconcile_delay)
            look_started = time.monotonic()
            look_started_wall = time.time()
            try:
                job = await self._find(await self._list_running(), client_ref, email)
            except FlowMusicError as error:
                logger.warning("reconciling %s failed: %s", client_ref, error)
                return Verdict.UNDECIDED
            if job is not None:
                return job
        if sent_mono is not None:
            age = look_started - sent_mono
        else:
            age = look_started_wall - sent_at
            if age < 0:
                return Verdict.UNDECIDED  # the wall clock went back since: its age is unknown
        if age < self._timing.min_job_seconds:
            return Verdict.ABSENT
        return Verdict.UNDECIDED

    async def _find(
        self, running: Mapping[str, AccountJobs], client_ref: str, email: str | None
    ) -> Job | None:
        known = self._known_jobs()
        for account, listing in running.items():
            if email is not None and account != email:
                continue
            for entry in listing.jobs:
                if entry.jobid in known:
                    continue
                if entry.jobid in self._refs_seen:
                    if split_reply_ref(self._refs_seen[entry.jobid])[1] == client_ref:
                        return await self._get_job(entry.jobid)
                    continue
                job = await self._get_job(entry.jobid)
                self._refs_seen[entry.jobid] = job.request_reply_ref
                if split_reply_ref(job.request_reply_ref)[1] == client_ref:
                    return job
        return None
