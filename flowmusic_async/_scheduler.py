"""The scheduler: places each paid submission on an account that has a free slot.

Flow Music runs at most `maxJobs` jobs per account at once and answers 429 to anything more.
We learn the accounts and their limits from GET /accounts, count what runs on each (our jobs,
our POSTs in flight, and jobs of other processes seen in GET /jobs), and hand out slots in the
order they were asked for. Nothing is sent to an account that is full, so a 429 is an
exception, not the way capacity is discovered.

All state changes happen without an `await` in between, so the event loop's single thread is
the only lock needed. A Scheduler belongs to one client and may be shared by all its tasks.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping

import anyio
import msgspec

from ._errors import AccountError, FlowMusicError, InsufficientCreditsError, NoAccountAvailable
from ._models import Account, AccountJobs

DEFAULT_MAX_JOBS = 4


class SlotUsage(msgspec.Struct, frozen=True, kw_only=True):
    """One account's capacity as this client sees it.

    `in_flight` counts our running jobs, our POSTs under way and other processes' running jobs.
    `reason` says why an unhealthy account is out of rotation.
    """

    max_jobs: int
    in_flight: int
    healthy: bool
    reason: str | None = None


class _AccountSlots:
    """Mutable bookkeeping for one account."""

    def __init__(self, email: str, max_jobs: int) -> None:
        self.email = email
        self.max_jobs = max_jobs
        self.ours: dict[str, float] = {}  # jobid -> monotonic time we learned it was accepted
        self.reserved = 0  # POSTs under way
        self.external = 0  # running jobs in GET /jobs that are not ours
        self.out_reason: str | None = None  # why it is out of rotation (596, 402, removed)
        self.out_error: FlowMusicError | None = None

    @property
    def in_flight(self) -> int:
        return len(self.ours) + self.reserved + self.external

    @property
    def free(self) -> int:
        return self.max_jobs - self.in_flight

    @property
    def healthy(self) -> bool:
        return self.out_reason is None


class _Waiter:
    def __init__(self, email: str | None) -> None:
        self.email = email
        self.event = anyio.Event()
        self.assigned: str | None = None
        self.error: FlowMusicError | None = None


class Scheduler:
    """Per-account capacity, account health and a FIFO queue of submissions waiting for a slot."""

    def __init__(self) -> None:
        self._accounts: dict[str, _AccountSlots] = {}
        self._queue: deque[_Waiter] = deque()
        # False until GET /accounts has answered with at least one account: until then (or if
        # it never can) we send no `email` and let the server choose, handling 429 by backoff.
        self.known: bool = False
        self.loaded_at: float | None = None

    # ----- learning the accounts ---------------------------------------------------------------

    def update_accounts(self, accounts: Mapping[str, Account]) -> None:
        """Take in a fresh GET /accounts: limits, new and removed accounts, error states."""
        self.loaded_at = time.monotonic()
        for email, record in accounts.items():
            # maxJobs is always on the record per the contract; open question 7's conservative
            # default covers a record that lacks it.
            max_jobs = record.max_jobs or DEFAULT_MAX_JOBS
            slots = self._accounts.get(email)
            if slots is None:
                slots = self._accounts[email] = _AccountSlots(email, max_jobs)
            slots.max_jobs = max_jobs
            if record.error:
                slots.out_reason = f"account in error state: {record.error}"
                slots.out_error = AccountError(
                    f"GET /accounts: account {email} is in error state: {record.error}",
                    status=596,
                    endpoint="GET /accounts",
                    server_message=record.error,
                    reason=record.error,
                    email=email,
                )
            elif slots.out_reason and slots.out_reason.startswith("account in error state"):
                # Re-added with a fresh refresh token: back in rotation.
                slots.out_reason = slots.out_error = None
        for email, slots in self._accounts.items():
            if email not in accounts and not slots.ours and not slots.reserved:
                slots.out_reason = "account removed (no longer in GET /accounts)"
        self.known = bool(accounts)
        self._dispatch()

    def reconcile(self, running: Mapping[str, AccountJobs], *, swept_at: float) -> list[str]:
        """Take in a GET /jobs sweep started at monotonic time `swept_at`.

        Returns our jobids that have left the running list (their slots are freed now). Jobs we
        learned of after the sweep was sent are kept: the listing may predate them.
        """
        ended: list[str] = []
        for email, slots in self._accounts.items():
            listing = running.get(email)
            listed = {job.jobid for job in listing.jobs} if listing else set()
            if listing is not None and listing.max_jobs:
                slots.max_jobs = listing.max_jobs
            for jobid, since in list(slots.ours.items()):
                if since < swept_at and jobid not in listed:
                    del slots.ours[jobid]
                    ended.append(jobid)
            # Jobs we cannot name are other processes' (or ours whose POST answer is still on
            # its way: counted twice for a moment, which only ever leaves a slot idle).
            slots.external = len(listed - slots.ours.keys())
        self._dispatch()
        return ended

    # ----- slots ---------------------------------------------------------------------------------

    async def acquire(self, email: str | None = None) -> str | None:
        """Wait for a free slot and reserve it; returns the account to send the job to.

        Returns `email` unchanged (None: the server chooses) when capacity is not tracked for
        it: the account list is unknown, or names no such account. Raises the last 402/596
        error seen when no account that could take the job is left in rotation.

        Args:
            email: the account the job must run on (a named account, or an edit's clip
                account); None for any account.
        """
        if not self.known or (email is not None and email not in self._accounts):
            return email
        waiter = _Waiter(email)
        self._queue.append(waiter)
        self._dispatch()
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter in self._queue:
                self._queue.remove(waiter)
            elif waiter.assigned is not None:
                self.release(waiter.assigned)
            raise
        if waiter.error is not None:
            raise waiter.error
        return waiter.assigned

    def release(self, email: str | None) -> None:
        """Give back a reservation whose POST created no job."""
        slots = self._accounts.get(email) if email else None
        if slots is not None and slots.reserved > 0:
            slots.reserved -= 1
            self._dispatch()

    def commit(self, email: str | None, jobid: str, *, reserved: bool = True) -> None:
        """Turn a reservation into a running job (or count an adopted job, reserved=False)."""
        slots = self._accounts.get(email) if email else None
        if slots is None:
            return
        if reserved and slots.reserved > 0:
            slots.reserved -= 1
        slots.ours[jobid] = time.monotonic()
        self._dispatch()

    def job_ended(self, jobid: str) -> None:
        """Free the slot of a job that completed, failed or was cancelled."""
        for slots in self._accounts.values():
            if slots.ours.pop(jobid, None) is not None:
                self._dispatch()
                return

    def note_full(self, email: str | None) -> None:
        """A 429 said `email` is full: count unseen jobs in its slots until the next sweep."""
        slots = self._accounts.get(email) if email else None
        if slots is not None:
            slots.external = max(slots.external, slots.max_jobs - len(slots.ours) - slots.reserved)

    def take_out(self, email: str | None, error: FlowMusicError) -> None:
        """Take an account out of rotation (402: no credits; 596: broken; 404: removed)."""
        slots = self._accounts.get(email) if email else None
        if slots is not None:
            slots.out_reason = f"{type(error).__name__}: {error.server_message or error}"
            slots.out_error = error
            self._dispatch()

    # ----- observation ---------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Submissions queued for a slot."""
        return len(self._queue)

    @property
    def has_external_jobs(self) -> bool:
        return any(slots.external for slots in self._accounts.values())

    def our_jobs(self) -> dict[str, float]:
        """Every running job we placed: jobid -> monotonic time of acceptance."""
        return {jobid: t for slots in self._accounts.values() for jobid, t in slots.ours.items()}

    def snapshot(self) -> dict[str, SlotUsage]:
        return {
            email: SlotUsage(
                max_jobs=slots.max_jobs,
                in_flight=slots.in_flight,
                healthy=slots.healthy,
                reason=slots.out_reason,
            )
            for email, slots in self._accounts.items()
        }

    # ----- dispatch ------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Hand free slots to queued waiters, oldest first; fail those no account can serve.

        Called on every change, so it stops scanning as soon as no slot is left: with a long
        queue (a batch of hundreds) the cost per call stays proportional to what it hands out.
        Waiters that no healthy account can ever serve are failed first, in a full scan, since
        an account leaving rotation may strand waiters anywhere in the queue.
        """
        if not self._queue:
            return
        healthy = [slots for slots in self._accounts.values() if slots.healthy]
        if len(healthy) < len(self._accounts) or not healthy:
            self._fail_stranded(healthy)
        free_left = sum(max(0, slots.free) for slots in healthy)
        served: list[_Waiter] = []
        for waiter in self._queue:
            if free_left <= 0:
                break
            if waiter.email is not None:
                slots = self._accounts[waiter.email]
                if slots.free <= 0:
                    continue
                best = slots
            else:
                best = max(healthy, key=lambda slots: slots.free / slots.max_jobs)
            best.reserved += 1
            free_left -= 1
            waiter.assigned = best.email
            served.append(waiter)
        for waiter in served:
            self._queue.remove(waiter)
            waiter.event.set()

    def _fail_stranded(self, healthy: list[_AccountSlots]) -> None:
        stranded = [
            waiter
            for waiter in self._queue
            if (not healthy if waiter.email is None else not self._accounts[waiter.email].healthy)
        ]
        for waiter in stranded:
            candidates = (
                list(self._accounts.values())
                if waiter.email is None
                else [self._accounts[waiter.email]]
            )
            waiter.error = self._no_account_error(candidates, waiter.email)
            self._queue.remove(waiter)
            waiter.event.set()

    @staticmethod
    def _no_account_error(candidates: list[_AccountSlots], email: str | None) -> FlowMusicError:
        errors = [slots.out_error for slots in candidates if slots.out_error is not None]
        # Prefer the credits error: "top up" is the actionable message for a batch that ran dry.
        for error in errors:
            if isinstance(error, InsufficientCreditsError):
                return error
        if errors:
            return errors[-1]
        where = f"account {email}" if email else "any account"
        return NoAccountAvailable(
            f"no Flow Music account left in rotation for {where}", email=email
        )
