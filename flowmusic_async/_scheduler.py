"""The scheduler: places each paid submission on an account that has a free slot.

Flow Music runs at most `maxJobs` jobs per account at once and answers 429 to anything more.
We learn the accounts and their limits from GET /accounts, count what runs on each (our jobs,
our POSTs in flight, and jobs of other processes seen in GET /jobs), and hand out slots in the
order they were asked for. Nothing is sent to an account that is full, so a 429 is an
exception, not the way capacity is discovered. When one comes anyway (another process took the
slot between two sweeps), the account counts as full until a later sweep shows room or the
backoff runs out: handing its slot straight to the next waiter would only earn another 429.

Waiters queue per tenant (the key a caller passes as `tenant=`: a Discord guild, a web app's
user; work without one is the tenant None). A free slot goes to the tenant with work waiting
that has the fewest jobs in flight (reserved or running) for its weight, ties to the one served
least recently: tenants take turns, a tenant of weight 2 holds twice the slots of a tenant of
weight 1, and one tenant's 500 queued songs do not make a newcomer wait behind them. A tenant
at its cap on jobs in flight is passed over, so its waiters never idle a slot another tenant
could use. Within a tenant, waiters queue in ticket order: one queue for "any account" and one
per account for waiters that must run there (a named `email`, an edit's clip account). A
submission takes its ticket when it is made (`ticket()`), so among a tenant's submissions
waiting together the earliest made is served first, and a job placed again after a 429 keeps
its place. (A slot free when a
submission arrives is taken at once: under trio, which runs ready tasks in random order, two
submissions made in the same instant may arrive in either order.) The queues are heaps:
handing out a slot looks only at the heads of the tenants with work waiting, so its cost
barely grows with the number of waiters; a cancelled waiter is marked and skipped when it reaches a
head, not searched for.

All state changes happen without an `await` in between, so the event loop's single thread is
the only lock needed. A Scheduler belongs to one client and may be shared by all its tasks.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Literal, NamedTuple

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


AccountHealth = Literal["ok", "429 hold-off", "402", "596", "error"]
"""An account's state for placement: in rotation (ok), held back after a 429 until a sweep shows
room, out of credits (402), in error state (596), or out for another reason (removed, 404)."""


class SlotUsage(msgspec.Struct, frozen=True, kw_only=True):
    """One account's capacity as this client sees it.

    `in_flight` counts our running jobs, our POSTs under way and other processes' running jobs
    (`running_ours + reserved + running_others`); `free` is what may be placed there now (0
    while unhealthy or held off after a 429). `reason` says why an account is not "ok".
    `balance` is the last known credit balance, None while nothing reports it.
    """

    max_jobs: int
    in_flight: int
    healthy: bool
    reason: str | None = None
    running_ours: int = 0
    running_others: int = 0  # other processes' jobs, from the last GET /jobs sweep
    reserved: int = 0  # our POSTs on their way
    free: int = 0
    health: AccountHealth = "ok"
    balance: float | None = None


class TenantUsage(msgspec.Struct, frozen=True, kw_only=True):
    """One tenant's share of the client: songs queued for a slot, jobs in flight (reserved or
    running), and its weight and cap (`max_jobs`, None: no cap)."""

    tenant: str | None
    queued: int
    in_flight: int
    weight: float = 1.0
    max_jobs: int | None = None


class CapacitySnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """What the slots are doing, and when a song queued now would start (`fm.capacity()`).

    Attributes:
        accounts: per account email, its `SlotUsage`.
        queued: submissions waiting for a slot, every tenant together.
        tenants: each tenant with work queued or in flight.
        render_seconds: the mean time from acceptance to end of this client's recent jobs
            (None until one has ended).
        estimated_start: seconds from now until a song queued now would get a slot, from
            `render_seconds` and the current occupancy (0: a slot is free; None: unknown).
        taken_at: when the snapshot was taken (`time.time()`).
    """

    accounts: dict[str, SlotUsage]
    queued: int
    tenants: tuple[TenantUsage, ...] = ()
    render_seconds: float | None = None
    estimated_start: float | None = None
    taken_at: float = 0.0


class _Tenant:
    """One tenant's queues and count of jobs in flight (reserved + running)."""

    __slots__ = ("any", "cap", "in_flight", "key", "pinned", "served_at", "waiting", "weight")

    def __init__(self, key: str | None, weight: float, cap: int | None) -> None:
        self.key = key
        self.weight = weight
        self.cap = cap  # most jobs in flight at once, None: no cap
        self.in_flight = 0
        self.waiting = 0  # its waiters still waiting (the heaps may hold departed ones too)
        self.served_at = -1  # when it was last handed a slot (a serial), for taking turns
        self.any: list[_Waiter] = []  # heap of its waiters that may run on any account
        self.pinned: dict[str, list[_Waiter]] = {}  # email -> heap of its waiters pinned there

    def capped(self) -> bool:
        return self.cap is not None and self.in_flight >= self.cap


class CapacityView(NamedTuple):
    """What the gauges read at each collection: per-account slots and the queue for a slot."""

    slots: Mapping[str, SlotUsage]
    queued: int


class _Waiter:
    def __init__(
        self, email: str | None, seq: int, owner: object = None, tenant: _Tenant | None = None
    ) -> None:
        self.email = email
        self.owner = owner  # whose wait this is (a submission), for `position`
        self.tenant = tenant
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

    @property
    def in_flight(self) -> int:
        return len(self.ours) + self.reserved + self.external

    @property
    def free(self) -> int:
        if self.full_since is not None and time.monotonic() < self.full_until:
            return 0
        # in_flight spelled out: dispatch reads this for every account on every change.
        return self.max_jobs - len(self.ours) - self.reserved - self.external

    @property
    def healthy(self) -> bool:
        return self.out_reason is None

    @property
    def held_off(self) -> bool:
        return self.full_since is not None and time.monotonic() < self.full_until

    @property
    def health(self) -> AccountHealth:
        if self.out_reason is not None:
            if isinstance(self.out_error, InsufficientCreditsError):
                return "402"
            if isinstance(self.out_error, AccountError):
                return "596"
            return "error"
        return "429 hold-off" if self.held_off else "ok"


class Scheduler:
    """Per-account capacity, account health, and per-tenant queues of submissions waiting for a
    slot (see the module docstring for the order they are served in).

    Args:
        tenant_weights: a tenant's share of the slots relative to others (default 1).
        tenant_max_jobs: the most jobs a tenant may have in flight (reserved or running) at
            once: one number for every tenant (the tenant None included), or per tenant.
    """

    def __init__(
        self,
        *,
        tenant_weights: Mapping[str, float] | None = None,
        tenant_max_jobs: int | Mapping[str, int] | None = None,
    ) -> None:
        self._accounts: dict[str, _AccountSlots] = {}
        self._job_accounts: dict[str, _AccountSlots] = {}  # our running job -> its account
        self._job_tenants: dict[str, _Tenant] = {}  # our running job -> whose it is
        self._weights: dict[str, float] = dict(tenant_weights or {})
        self._caps = tenant_max_jobs
        # Tenants with work queued or in flight; those with work queued, in arrival order.
        self._tenants: dict[str | None, _Tenant] = {}
        self._queued: dict[str | None, _Tenant] = {}
        self._served = itertools.count()
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
            self._fail_unplaceable(None)
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
                    self._tenant_job_ended(jobid)
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
        tenant: str | None = None,
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
            tenant: whose work it is; slots are shared fairly between tenants.
        """
        if self._closed:
            raise ClientClosedError("this FlowMusic client is closing; no new job is placed")
        if not self.known or (email is not None and email not in self._accounts):
            return email
        candidates = [self._accounts[email]] if email is not None else self._all()
        if not any(slots.healthy for slots in candidates):
            raise copy_for_waiter(self._no_account_error(candidates, email))
        owner_tenant = self._tenant(tenant)
        waiter = _Waiter(email, self.ticket() if ticket is None else ticket, owner, owner_tenant)
        queue = owner_tenant.any if email is None else owner_tenant.pinned.setdefault(email, [])
        heapq.heappush(queue, waiter)
        owner_tenant.waiting += 1
        self._queued[tenant] = owner_tenant
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
                self._left_queue(owner_tenant)
                self._forget_if_idle(owner_tenant)
            elif waiter.assigned is not None:
                self.release(waiter.assigned, tenant=tenant)
            raise
        return self._handed(waiter)

    @staticmethod
    def _handed(waiter: _Waiter) -> str | None:
        if waiter.error is not None:
            raise waiter.error
        return waiter.assigned

    def release(self, email: str | None, *, tenant: str | None = None) -> None:
        """Give back a reservation whose POST created no job."""
        slots = self._accounts.get(email) if email else None
        if slots is not None and slots.reserved > 0:
            slots.reserved -= 1
            owner = self._tenants.get(tenant)
            if owner is not None and owner.in_flight > 0:
                owner.in_flight -= 1
                self._forget_if_idle(owner)
            self._dispatch()

    def commit(
        self, email: str | None, jobid: str, *, reserved: bool = True, tenant: str | None = None
    ) -> None:
        """Turn a reservation into a running job (or count an adopted job, reserved=False)."""
        slots = self._accounts.get(email) if email else None
        if slots is None:
            return
        if jobid in self._job_tenants:  # counted once, whatever came before
            self._tenant_job_ended(jobid)
        owner = self._tenants.get(tenant) or self._tenant(tenant)
        if reserved and slots.reserved > 0:
            slots.reserved -= 1  # the reservation already counts on its tenant
        else:
            owner.in_flight += 1
        slots.ours[jobid] = time.monotonic()
        self._job_accounts[jobid] = slots
        self._job_tenants[jobid] = owner
        self._dispatch()

    def job_ended(self, jobid: str) -> None:
        """Free the slot of a job that completed, failed or was cancelled."""
        slots = self._job_accounts.pop(jobid, None)
        owner = self._job_tenants.pop(jobid, None)
        if owner is not None:
            owner.in_flight -= 1
            if not owner.in_flight and not owner.waiting:
                self._forget_if_idle(owner)
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
        self._fail_unplaceable(slots)
        if not any(other.healthy for other in self._accounts.values()):
            self._fail_unplaceable(None)
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
        for owner in list(self._queued.values()):
            for queue in [owner.any, *owner.pinned.values()]:
                while queue:
                    waiter = heapq.heappop(queue)
                    if not waiter.gone:
                        waiter.error = ClientClosedError(
                            "the client was closed before this job was sent (nothing was paid)",
                            email=waiter.email,
                        )
                        self._waiting -= 1
                        owner.waiting -= 1
                        waiter.event.set()
            self._left_queue(owner)

    # ----- observation ---------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Submissions queued for a slot."""
        return self._waiting

    def position(self, owner: object) -> int | None:
        """Waiters served before `owner`'s (0: next), or None if it is not waiting.

        Within its tenant, the waiters that arrived earlier and could take the same slots; of
        every other tenant, those it would be handed first, by its jobs in flight and weight
        (an estimate: jobs end in an order nobody knows). It walks the queues, so it is for a
        caller's occasional question, not for the engine's hot path.
        """
        for tenant in self._queued.values():
            queues = [tenant.any, *tenant.pinned.values()]
            mine = next((w for q in queues for w in q if w.owner is owner and not w.gone), None)
            if mine is not None:
                break
        else:
            return None
        return self._place_in_line(tenant, mine.seq, mine.email)

    def position_of_ticket(self, ticket: int, *, tenant: str | None, email: str | None) -> int:
        """Where a submission made with `ticket` stands before it has joined a queue (it is
        still on its way to `acquire`), counted as `position` counts a waiter."""
        owner = self._tenants.get(tenant) or _Tenant(tenant, self._weight(tenant), None)
        return self._place_in_line(owner, ticket, email)

    def _place_in_line(self, tenant: _Tenant, ticket: int, email: str | None) -> int:
        """The waiters of `tenant` with older tickets that could take the same slots (any
        account's, and `email`'s when pinned to it), plus those of other tenants served first."""
        queues = [tenant.any] if email is None else [tenant.any, tenant.pinned.get(email, [])]
        earlier = sum(1 for queue in queues for w in queue if not w.gone and w.seq < ticket)
        return earlier + self._others_first(tenant, earlier)

    def position_for_new(self, tenant: str | None = None) -> int:
        """Waiters that would be served before a submission of `tenant` queued now."""
        owner = self._tenants.get(tenant) or _Tenant(tenant, self._weight(tenant), None)
        return owner.waiting + self._others_first(owner, owner.waiting)

    def _others_first(self, tenant: _Tenant, rank: int) -> int:
        """How many waiters of other tenants are handed a slot before `tenant`'s waiter of
        `rank` in its own line: those whose tenants stay below it in jobs in flight per weight."""
        share = (tenant.in_flight + rank) / tenant.weight
        return sum(
            min(other.waiting, max(0, math.ceil(share * other.weight - other.in_flight)))
            for other in self._queued.values()
            if other is not tenant
        )

    def estimate_start(self, position: int, *, render_seconds: float) -> float | None:
        """Seconds until the waiter at `position` would get a slot, if jobs take
        `render_seconds` from acceptance to end (None without any slot to wait for)."""
        now = time.monotonic()
        healthy = [slots for slots in self._accounts.values() if slots.healthy]
        free_now = sum(max(0, slots.free) for slots in healthy)
        if position < free_now:
            return 0.0
        ends = sorted(
            [max(0.0, render_seconds - (now - t)) for s in healthy for t in s.ours.values()]
            # Other processes' jobs and our POSTs under way: their age is unknown to us.
            + [render_seconds / 2] * sum(s.external for s in healthy)
            + [render_seconds] * sum(s.reserved for s in healthy)
        )
        if not ends:
            return None
        turn = position - free_now
        return ends[turn % len(ends)] + (turn // len(ends)) * render_seconds

    @property
    def needs_sweeps(self) -> bool:
        """Submissions wait for slots that only a sweep can show free.

        That is, slots held by other processes' jobs, or an account a 429 said was full; our
        own jobs cannot end before they are old enough, so they alone need no early sweep.
        """
        return self._waiting > 0 and any(
            slots.external or slots.full_since is not None for slots in self._accounts.values()
        )

    def free_slots(self) -> int:
        """Slots free now on the healthy accounts."""
        return sum(max(0, s.free) for s in self._accounts.values() if s.healthy)

    def total_slots(self) -> int:
        """The sum of `maxJobs` over the healthy accounts (0 while the accounts are unknown)."""
        return sum(slots.max_jobs for slots in self._accounts.values() if slots.healthy)

    def our_jobs(self) -> dict[str, float]:
        """Every running job we placed: jobid -> monotonic time of acceptance."""
        return {jobid: t for slots in self._accounts.values() for jobid, t in slots.ours.items()}

    def snapshot(self) -> dict[str, SlotUsage]:
        """Every known account's slots, as `SlotUsage`."""
        return {
            email: SlotUsage(
                max_jobs=slots.max_jobs,
                in_flight=slots.in_flight,
                healthy=slots.healthy,
                reason=slots.out_reason
                or ("429: held off until a sweep shows room" if slots.held_off else None),
                running_ours=len(slots.ours),
                running_others=slots.external,
                reserved=slots.reserved,
                free=max(0, slots.free) if slots.healthy else 0,
                health=slots.health,
            )
            for email, slots in self._accounts.items()
        }

    def tenant_usage(self) -> tuple[TenantUsage, ...]:
        """Every tenant with work queued or in flight, oldest first."""
        return tuple(
            TenantUsage(
                tenant=tenant.key,
                queued=tenant.waiting,
                in_flight=tenant.in_flight,
                weight=tenant.weight,
                max_jobs=tenant.cap,
            )
            for tenant in self._tenants.values()
        )

    # ----- tenants -------------------------------------------------------------------------------

    def _weight(self, key: str | None) -> float:
        return self._weights.get(key, 1.0) if key is not None else 1.0

    def _tenant(self, key: str | None) -> _Tenant:
        tenant = self._tenants.get(key)
        if tenant is None:
            caps = self._caps
            if caps is None or isinstance(caps, int):
                cap = caps  # one cap for every tenant, the tenant None included
            else:  # a mapping names tenants; work without one is not capped by it
                cap = caps.get(key) if key is not None else None
            tenant = self._tenants[key] = _Tenant(key, self._weight(key), cap)
        return tenant

    def _tenant_job_ended(self, jobid: str) -> None:
        tenant = self._job_tenants.pop(jobid, None)
        if tenant is not None:
            tenant.in_flight -= 1
            self._forget_if_idle(tenant)

    def _left_queue(self, tenant: _Tenant) -> None:
        """Drop `tenant` from the turns once none of its waiters waits (its heaps may still
        hold departed ones: they go with it)."""
        if tenant.waiting == 0 and self._queued.get(tenant.key) is tenant:
            del self._queued[tenant.key]
            tenant.any.clear()
            tenant.pinned.clear()

    def _forget_if_idle(self, tenant: _Tenant) -> None:
        idle = tenant.waiting == 0 and tenant.in_flight <= 0
        if idle and self._tenants.get(tenant.key) is tenant:
            del self._tenants[tenant.key]

    # ----- dispatch ------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Hand free slots to queued waiters: the tenant furthest below its share first, then
        oldest first within it.

        Called on every change. One look at each account per call, then each slot handed out
        costs a look at the heads of each waiting tenant's queues, never a walk through the
        waiters behind them. Handing out a slot changes only that account, so the list of open
        accounts is kept up to date rather than rebuilt.
        """
        if not self._waiting:
            return
        open_accounts = {
            s.email: s for s in self._accounts.values() if s.out_reason is None and s.free > 0
        }
        while self._waiting and open_accounts:
            best_any: _AccountSlots | None = None
            waiter: _Waiter | None = None
            slots: _AccountSlots | None = None
            queue: list[_Waiter] = []
            owner: _Tenant | None = None
            rank = (math.inf, 0)
            taking_turns = len(self._queued) > 1  # one tenant alone needs no ranking
            for tenant in self._queued.values():
                if tenant.cap is not None and tenant.in_flight >= tenant.cap:
                    continue
                if taking_turns:
                    mine = (tenant.in_flight / tenant.weight, tenant.served_at)
                    if owner is not None and mine >= rank:
                        continue
                pick: _Waiter | None = _head(tenant.any)
                pick_slots = pick_queue = None
                if pick is not None:
                    if best_any is None:
                        best_any = max(open_accounts.values(), key=_room)
                    pick_slots, pick_queue = best_any, tenant.any
                if tenant.pinned:
                    for email, pinned_queue in list(tenant.pinned.items()):
                        pinned = _head(pinned_queue)
                        if pinned is None:
                            del tenant.pinned[email]
                            continue
                        open_slots = open_accounts.get(email)
                        if open_slots is not None and (pick is None or pinned.seq < pick.seq):
                            pick, pick_slots, pick_queue = pinned, open_slots, pinned_queue
                if pick is not None and pick_slots is not None and pick_queue is not None:
                    waiter, slots, queue, owner = pick, pick_slots, pick_queue, tenant
                    if not taking_turns:
                        break
                    rank = mine
            if waiter is None or slots is None or owner is None:
                return
            heapq.heappop(queue)
            slots.reserved += 1
            owner.in_flight += 1
            owner.waiting -= 1
            owner.served_at = next(self._served)
            waiter.assigned = slots.email
            self._waiting -= 1
            if not owner.waiting:
                self._left_queue(owner)
            waiter.event.set()
            if slots.free <= 0:
                del open_accounts[slots.email]

    def _fail_unplaceable(self, account: _AccountSlots | None) -> None:
        """Fail the waiters no account can take any more: those pinned to `account`, or (None)
        those for any account, when no account is left in rotation."""
        for tenant in list(self._queued.values()):
            if account is None:
                queue = tenant.any
                candidates = self._all()
            else:
                queue = tenant.pinned.get(account.email, [])
                candidates = [account]
            if not queue:
                continue
            error = self._no_account_error(candidates, None if account is None else account.email)
            while queue:
                waiter = heapq.heappop(queue)
                if waiter.gone:
                    continue
                waiter.error = copy_for_waiter(error)
                self._waiting -= 1
                tenant.waiting -= 1
                waiter.event.set()
            self._left_queue(tenant)

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


def _room(slots: _AccountSlots) -> float:
    """A waiter for any account goes where the most of the account is free."""
    return slots.free / slots.max_jobs


def _head(queue: list[_Waiter]) -> _Waiter | None:
    """The oldest waiter still waiting in `queue` (waiters that left are dropped on the way)."""
    while queue and queue[0].gone:
        heapq.heappop(queue)
    return queue[0] if queue else None
