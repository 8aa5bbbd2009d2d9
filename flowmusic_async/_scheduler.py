"""The scheduler: places each paid submission on an account that has a free slot.

Flow Music runs at most `maxJobs` jobs per account at once and answers 429 to anything more.
We learn the accounts and their limits from GET /accounts, count what runs on each (our jobs,
our POSTs in flight, and jobs of other processes seen in GET /jobs), and hand out slots in the
order they were asked for. Nothing is sent to an account that is full, so a 429 is an
exception, not the way capacity is discovered. When one comes anyway (another process took the
slot between two sweeps), the account counts as full until a later sweep shows room or the
backoff runs out: handing its slot straight to the next waiter would only earn another 429.

Waiters queue in ticket order: one queue for "any account" and one per account for waiters
that must run there (a named `email`, an edit's clip account). A submission takes its ticket
when it is made (`ticket()`), so among the submissions waiting together the earliest made is
served first, and a job placed again after a 429 keeps its place. (A slot free when a
submission arrives is taken at once: under trio, which runs ready tasks in random order, two
submissions made in the same instant may arrive in either order.) The queues are heaps:
handing out a slot looks only at their heads, so its cost barely grows with the number of
waiters; a cancelled waiter is marked and skipped when it reaches a
head, not searched for.

All state changes happen without an `await` in between, so the event loop's single thread is
the only lock needed. A Scheduler belongs to one client and may be shared by all its tasks.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

import anyio
import msgspec

from ._errors import (
    AccountError,
    ClientClosedError,
    FlowMusicError,
    InsufficientCreditsError,
    NoAccountAvailable,
    copy_for_waiter,
)
from ._models import Account, AccountJobs

logger = logging.getLogger("flowmusic_async")

# docs/api-notes.md#q7-default-maxjobs: the conservative default when an account's maxJobs is
# unknown.
DEFAULT_MAX_JOBS = 4
MIN_MAX_JOBS, MAX_MAX_JOBS = 1, 16  # the documented range (contract 4)
AT_FLOOR = "at the credit floor (min_credits_left)"


class SlotUsage(msgspec.Struct, frozen=True, kw_only=True):
    """One account's capacity as this client sees it.

    `in_flight` counts our running jobs, our POSTs under way and other processes' running jobs.
    `reason` says why an unhealthy account is out of rotation.
    """

    max_jobs: int
    in_flight: int
    healthy: bool
    reason: str | None = None


class CapacityView(NamedTuple):
    """What the gauges read at each collection: per-account slots and the queue for a slot."""

    slots: Mapping[str, SlotUsage]
    queued: int


class _Waiter:
    def __init__(self, email: str | None, seq: int, owner: object = None) -> None:
        self.email = email
        self.owner = owner  # whose wait this is (a submission), for `position`
        self.seq = seq  # arrival order, shared by every queue
        self.event = anyio.Event()
        self.assigned: str | None = None
        self.error: FlowMusicError | None = None
        self.gone = False  # its caller left; skipped when it reaches the head of its queue

    def __lt__(self, other: _Waiter) -> bool:  # heap order: the older ticket first
        return self.seq < other.seq


class _AccountSlots:
    """Mutable bookkeeping for one account."""

    def __init__(self, email: str, max_jobs: int) -> None:
        self.email = email
        self.max_jobs = max_jobs
        self.ours: dict[str, float] = {}  # jobid -> monotonic time we learned it was accepted
        self.reserved = 0  # POSTs under way
        self.external = 0  # running jobs in GET /jobs that are not ours
        self.full_since: float | None = None  # a 429 said full at this (monotonic) time
        self.full_until = 0.0  # ... and we hold off until then, unless a sweep shows room
        self.out_reason: str | None = None  # why it is out of rotation (596, 402, removed)
        self.out_error: FlowMusicError | None = None
        self.pinned: list[_Waiter] = []  # heap of the waiters that must run on this account

    @property
    def in_flight(self) -> int:
        return len(self.ours) + self.reserved + self.external

    @property
    def free(self) -> int:
        if self.full_since is not None and time.monotonic() < self.full_until:
            return 0
        return self.max_jobs - self.in_flight

    @property
    def healthy(self) -> bool:
        return self.out_reason is None


class Scheduler:
    """Per-account capacity, account health and FIFO queues of submissions waiting for a slot."""

    def __init__(self) -> None:
        self._accounts: dict[str, _AccountSlots] = {}
        self._job_accounts: dict[str, _AccountSlots] = {}  # our running job -> its account
        self._any: list[_Waiter] = []  # heap of the waiters that may run on any account
        self._waiting = 0
        self._seq = itertools.count()
        self._closed = False
        self._clamped: set[tuple[str, object]] = set()  # (email, bad maxJobs) already logged
        # False until GET /accounts has answered with at least one account: until then (or if
        # it never can) we send no `email` and let the server choose, handling 429 by backoff.
        self.known: bool = False
        self.loaded_at: float | None = None

    # ----- learning the accounts ---------------------------------------------------------------

    def update_accounts(self, accounts: Mapping[str, Account]) -> None:
        """Take in a fresh GET /accounts: limits, new and removed accounts, error states."""
        self.loaded_at = time.monotonic()
        for email, record in accounts.items():
            max_jobs = self._clamp(email, record.max_jobs)
            slots = self._accounts.get(email)
            if slots is None:
                slots = self._accounts[email] = _AccountSlots(email, max_jobs)
            slots.max_jobs = max_jobs
            if record.error:
                self.take_out(
                    email,
                    AccountError(
                        f"GET /accounts: account {email} is in error state: {record.error}",
                        status=596,
                        endpoint="GET /accounts",
                        server_message=record.error,
                        reason=record.error,
                        email=email,
                    ),
                    reason=f"account in error state: {record.error}",
                )
            elif slots.out_reason and slots.out_reason.startswith("account in error state"):
                # Re-added with a fresh refresh token: back in rotation.
                slots.out_reason = slots.out_error = None
        for email, slots in self._accounts.items():
            if email not in accounts and not slots.ours and not slots.reserved:
                self.take_out(
                    email,
                    NoAccountAvailable(f"account {email} was removed", email=email),
                    reason="account removed (no longer in GET /accounts)",
                )
        self.known = bool(accounts)
        if self.known and not any(slots.healthy for slots in self._accounts.values()):
            self._fail_queue(self._any, list(self._accounts.values()), None)
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
            if listing is not None and listing.max_jobs is not None:
                slots.max_jobs = self._clamp(email, listing.max_jobs)
            for jobid, since in list(slots.ours.items()):
                if since < swept_at and jobid not in listed:
                    del slots.ours[jobid]
                    self._job_accounts.pop(jobid, None)
                    ended.append(jobid)
            # Jobs we cannot name are other processes' (or ours whose POST answer is still on
            # its way: counted twice for a moment, which only ever leaves a slot idle).
            slots.external = len(listed - slots.ours.keys())
            if slots.full_since is not None and swept_at > slots.full_since:
                slots.full_since = None  # this sweep counted what the 429 could not show us
        self._dispatch()
        return ended

    def forget_external(self) -> None:
        """GET /jobs is unavailable: stop counting other processes' jobs we can no longer see.

        Otherwise a waiter behind a job of another process would wait for a sweep that never
        comes. Without the listing, the server's 429 (and our backoff) is the fallback.
        """
        for slots in self._accounts.values():
            slots.external = 0
        self._dispatch()

    # ----- slots ---------------------------------------------------------------------------------

    def ticket(self) -> int:
        """A place in line, taken when a submission is made (see the module docstring)."""
        return next(self._seq)

    async def acquire(
        self,
        email: str | None = None,
        *,
        owner: object = None,
        ticket: int | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> str | None:
        """Wait for a free slot and reserve it; returns the account to send the job to.

        Returns `email` unchanged (None: the server chooses) when capacity is not tracked for
        it: the account list is unknown, or names no such account. Raises the last 402/596
        error seen when no account that could take the job is left in rotation.

        Args:
            email: the account the job must run on (a named account, or an edit's clip
                account); None for any account.
            owner: who waits (see `position`).
            ticket: its place in line (`ticket()`); default: behind everyone now waiting.
            on_wait: called when no slot is free at once, so that the poller keeps sweeping
                (a slot held by another process frees only when a sweep sees it end).
        """
        if self._closed:
            raise ClientClosedError("this FlowMusic client is closing; no new job is placed")
        if not self.known or (email is not None and email not in self._accounts):
            return email
        candidates = [self._accounts[email]] if email is not None else self._all()
        if not any(slots.healthy for slots in candidates):
            raise copy_for_waiter(self._no_account_error(candidates, email))
        waiter = _Waiter(email, self.ticket() if ticket is None else ticket, owner)
        heapq.heappush(self._accounts[email].pinned if email is not None else self._any, waiter)
        self._waiting += 1
        self._dispatch()
        if waiter.event.is_set():  # a free slot: taken without a task step
            return self._handed(waiter)
        if on_wait is not None:
            on_wait()
        try:
            await waiter.event.wait()
        except BaseException:
            if not waiter.event.is_set():
                waiter.gone = True
                self._waiting -= 1
            elif waiter.assigned is not None:
                self.release(waiter.assigned)
            raise
        return self._handed(waiter)

    @staticmethod
    def _handed(waiter: _Waiter) -> str | None:
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
        self._job_accounts[jobid] = slots
        self._dispatch()

    def job_ended(self, jobid: str) -> None:
        """Free the slot of a job that completed, failed or was cancelled."""
        slots = self._job_accounts.pop(jobid, None)
        if slots is not None and slots.ours.pop(jobid, None) is not None:
            self._dispatch()

    def note_full(self, email: str | None, *, hold: float) -> None:
        """A 429 said `email` is full: give it no slot until a later sweep shows room.

        Args:
            hold: the longest to hold off (the backoff or Retry-After of that 429), so that an
                account is never held forever when sweeps are unavailable.
        """
        slots = self._accounts.get(email) if email else None
        if slots is not None:
            now = time.monotonic()
            slots.full_since = now
            slots.full_until = now + hold

    def take_out(
        self, email: str | None, error: FlowMusicError, *, reason: str | None = None
    ) -> None:
        """Take an account out of rotation (402: no credits; 596: broken; 404: removed).

        Waiters that can no longer be served anywhere are failed now, once, with that error.
        """
        slots = self._accounts.get(email) if email else None
        if slots is None:
            return
        slots.out_reason = reason or f"{type(error).__name__}: {error.server_message or error}"
        slots.out_error = error
        self._fail_queue(slots.pinned, [slots], slots.email)
        if not any(other.healthy for other in self._accounts.values()):
            self._fail_queue(self._any, self._all(), None)
        self._dispatch()

    def hold_at_floor(self, email: str, error: FlowMusicError) -> None:
        """Take an account out of rotation until `put_back`: its balance is at the credit
        floor (`FlowMusic(min_credits_left=...)`)."""
        self.take_out(email, error, reason=AT_FLOOR)

    def out_at_floor(self) -> list[str]:
        """The accounts held out at the credit floor."""
        return [email for email, slots in self._accounts.items() if slots.out_reason == AT_FLOOR]

    def put_back(self, email: str) -> None:
        """An account held at the credit floor may take jobs again (its balance rose)."""
        slots = self._accounts.get(email)
        if slots is not None and slots.out_reason == AT_FLOOR:
            slots.out_reason = slots.out_error = None
            self._dispatch()

    def close(self) -> None:
        """Refuse new waiters and fail the queued ones: the client is closing."""
        self._closed = True
        for queue in [self._any, *(slots.pinned for slots in self._accounts.values())]:
            while queue:
                waiter = heapq.heappop(queue)
                if not waiter.gone:
                    waiter.error = ClientClosedError(
                        "the client was closed before this job was sent (nothing was paid)",
                        email=waiter.email,
                    )
                    self._waiting -= 1
                    waiter.event.set()

    # ----- observation ---------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Submissions queued for a slot."""
        return self._waiting

    def position(self, owner: object) -> int | None:
        """Waiters served before `owner`'s (0: next), or None if it is not waiting.

        Counts the waiters that arrived earlier and could take the same slots. It walks the
        queues, so it is for a caller's occasional question, not for the engine's hot path.
        """
        queues = [self._any, *(slots.pinned for slots in self._accounts.values())]
        mine = next((w for q in queues for w in q if w.owner is owner and not w.gone), None)
        if mine is None:
            return None
        ahead = self._any if mine.email is None else self._accounts[mine.email].pinned
        earlier = [w for w in ahead if not w.gone and w.seq < mine.seq]
        if mine.email is not None:
            earlier += [w for w in self._any if not w.gone and w.seq < mine.seq]
        return len(earlier)

    @property
    def needs_sweeps(self) -> bool:
        """Submissions wait for slots that only a sweep can show free.

        That is, slots held by other processes' jobs, or an account a 429 said was full; our
        own jobs cannot end before they are old enough, so they alone need no early sweep.
        """
        return self._waiting > 0 and any(
            slots.external or slots.full_since is not None for slots in self._accounts.values()
        )

    def total_slots(self) -> int:
        """The sum of `maxJobs` over the healthy accounts (0 while the accounts are unknown)."""
        return sum(slots.max_jobs for slots in self._accounts.values() if slots.healthy)

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
        """Hand free slots to queued waiters, oldest first.

        Called on every change. One look at each account per call, then each slot handed out
        costs a look at the head of each open account's queue, never a walk through the
        waiters behind them. Handing out a slot changes only that account, so the list of open
        accounts is kept up to date rather than rebuilt.
        """
        if not self._waiting:
            return
        open_accounts = [s for s in self._accounts.values() if s.healthy and s.free > 0]
        while self._waiting and open_accounts:
            chosen: tuple[_Waiter, _AccountSlots, list[_Waiter]] | None = None
            head = _head(self._any)
            if head is not None:
                best = max(open_accounts, key=lambda slots: slots.free / slots.max_jobs)
                chosen = (head, best, self._any)
            for slots in open_accounts:
                pinned = _head(slots.pinned)
                if pinned is not None and (chosen is None or pinned.seq < chosen[0].seq):
                    chosen = (pinned, slots, slots.pinned)
            if chosen is None:
                return
            waiter, slots, queue = chosen
            heapq.heappop(queue)
            slots.reserved += 1
            waiter.assigned = slots.email
            self._waiting -= 1
            waiter.event.set()
            if slots.free <= 0:
                open_accounts.remove(slots)

    def _fail_queue(
        self, queue: list[_Waiter], candidates: list[_AccountSlots], email: str | None
    ) -> None:
        """Fail every waiter of `queue`: none of `candidates` can take a job any more."""
        if not queue:
            return
        error = self._no_account_error(candidates, email)
        while queue:
            waiter = heapq.heappop(queue)
            if waiter.gone:
                continue
            waiter.error = copy_for_waiter(error)
            self._waiting -= 1
            waiter.event.set()

    def _all(self) -> list[_AccountSlots]:
        return list(self._accounts.values())

    def _clamp(self, email: str, max_jobs: object) -> int:
        """maxJobs as a usable number: the documented 1-16, or the default when unreadable."""
        if isinstance(max_jobs, int) and not isinstance(max_jobs, bool):
            if MIN_MAX_JOBS <= max_jobs <= MAX_MAX_JOBS:
                return max_jobs
            value = min(max(max_jobs, MIN_MAX_JOBS), MAX_MAX_JOBS)
        else:
            value = DEFAULT_MAX_JOBS
        if (email, max_jobs) not in self._clamped:
            self._clamped.add((email, max_jobs))
            logger.warning(
                "account %s reports maxJobs=%r (documented: 1-16); counting it as %d",
                email,
                max_jobs,
                value,
            )
        return value

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


def _head(queue: list[_Waiter]) -> _Waiter | None:
    """The oldest waiter still waiting in `queue` (waiters that left are dropped on the way)."""
    while queue and queue[0].gone:
        heapq.heappop(queue)
    return queue[0] if queue else None
