"""The spend ledger: what operations cost, and credits reserved and spent against limits.

Every paid POST reserves its estimated cost here before it leaves. A reservation counts
against the client's limit, its batch's and its tenant's from the moment it is taken, so N
submissions in flight can never pass one check together: the check and the reservation happen
in one call with no await between them (tasks of one event loop cannot interleave there).

A reservation lives in three stages, and is held by a context manager so every way out of the
POST gives it back (docs/concepts/spending.md):

- held (``with ledger.reserve(cost, ...) as reservation:``): the POST may leave;
- ``reservation.accepted(account=...)``: the job exists, its credits stay committed after the
  ``with`` block, until ``reservation.settle(spent)`` when the job ends (completed, failed but
  charged, cancelled);
- leaving the block before ``accepted()`` releases it (refused, 402, 429 given up, an error).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Literal

import msgspec

from ._errors import BudgetExceeded, ValidationError
from ._models import Usage

__all__ = [
    "DEFAULT_COSTS",
    "AccountPosition",
    "OPERATIONS",
    "CostTable",
    "Reservation",
    "SpendLedger",
    "SpendTotals",
    "Spending",
]

OPERATIONS = ("song", "extend", "replace", "cover", "remix", "effect", "stems", "lyrics")

# The usage report's types that charge credits (the others, a grant or the daily free
# credits, add them).
CHARGED_USAGE = frozenset({"producer-usage", "riffusion"})
# A song's price in credits is not documented; 10 is the simulator's default and is replaced by
# what the account's usage report shows once a job has been charged (CostTable.learn).
# extend/replace/cover/remix are assumed to cost a generation, effect and stems nothing
# (docs/api-notes.md#q31-edit-costs); lyrics are documented free
# (docs/api-notes.md#q24-lyrics-cost).
DEFAULT_COSTS: Mapping[str, float] = {
    "song": 10.0,
    "extend": 10.0,
    "replace": 10.0,
    "cover": 10.0,
    "remix": 10.0,
    "effect": 0.0,
    "stems": 0.0,
    "lyrics": 0.0,
}
# Float sums of fractional costs drift by a few ulps; a reservation that lands exactly on the
# limit must still fit.
_SLACK = 1e-9

Scope = Literal["client", "batch", "tenant"]
CostSource = Literal["default", "configured", "learned"]


def _credits(field: str, value: float) -> float:
    """`value` as a finite, non-negative number of credits, or a ValidationError naming it."""
    if type(value) is float and 0.0 <= value < math.inf:  # the common case, on every song
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(field, f"must be a number of credits, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValidationError(field, f"must be a finite number of credits >= 0, not {value}")
    return float(value)


def _key(field: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(field, "must be a non-empty string")
    return value


class CostTable:
    """Credits per operation: defaults, then the user's own figures, then what the API charged.

    An operation's cost is, by precedence, the last charge the API reported for it
    (`learn`), else the figure the user configured, else `DEFAULT_COSTS`. Learned charges win
    because they are what the account actually paid; `source(operation)` says which applies.

    Args:
        costs: operation -> credits, over the defaults (keys from `OPERATIONS`).
    """

    def __init__(self, costs: Mapping[str, float] | None = None) -> None:
        self._configured: dict[str, float] = {}
        self._learned: dict[str, float] = {}
        for operation, credits in (costs or {}).items():
            self._configured[self._operation(operation)] = _credits(
                f"costs[{operation!r}]", credits
            )

    @staticmethod
    def _operation(operation: str) -> str:
        if operation not in OPERATIONS:
            raise ValidationError(
                "operation", f"unknown operation {operation!r}; known: {', '.join(OPERATIONS)}"
            )
        return operation

    def cost(self, operation: str) -> float:
        """Credits one `operation` is expected to spend."""
        operation = self._operation(operation)
        if operation in self._learned:
            return self._learned[operation]
        return self._configured.get(operation, DEFAULT_COSTS[operation])

    def source(self, operation: str) -> CostSource:
        """Where `cost(operation)` comes from: "learned", "configured" or "default"."""
        operation = self._operation(operation)
        if operation in self._learned:
            return "learned"
        return "configured" if operation in self._configured else "default"

    def learn(self, operation: str, credits: float) -> None:
        """Record what the API charged for one `operation` (e.g. a job's row in the account's
        usage report); later estimates use it."""
        self._learned[self._operation(operation)] = _credits("credits", credits)

    def learn_song_price(self, usage: Usage) -> float | None:
        """Learn a song's price from an account's usage report: the median of the songs it
        was charged for (a grant or the daily free credits are conversations too, but not
        charges). The price learned, or None when the report shows no charged song."""
        charged = {event.conversation_id for event in usage.events if event.type in CHARGED_USAGE}
        prices = sorted(
            song.credits
            for song in usage.summary.per_conversation
            if song.conversation_id in charged and song.credits > 0
        )
        if not prices:
            return None
        price = prices[len(prices) // 2]
        self.learn("song", price)
        return price

    def as_dict(self) -> dict[str, float]:
        """Every operation's current cost."""
        return {operation: self.cost(operation) for operation in OPERATIONS}


class SpendTotals(msgspec.Struct, frozen=True, kw_only=True):
    """Credits of one scope (the client, a batch, a tenant or an account).

    Attributes:
        spent: credits of jobs that ended (completed, cancelled, or failed and charged).
        reserved: credits held for submissions in flight and for accepted jobs still running.
        limit: the scope's limit in credits, or None for none.
    """

    spent: float = 0.0
    reserved: float = 0.0
    limit: float | None = None

    @property
    def remaining(self) -> float | None:
        """Credits that may still be reserved under the limit (None: no limit)."""
        if self.limit is None:
            return None
        return max(0.0, self.limit - self.spent - self.reserved)


class Spending(msgspec.Struct, frozen=True, kw_only=True):
    """What a client has spent and holds, per scope: the answer to `fm.spending()`.

    Attributes:
        client: the whole client's totals, against its `spend_limit`.
        batches: per batch id.
        tenants: per tenant key.
        accounts: per account email (accepted jobs; a held reservation has no account yet
            unless one was named).
    """

    client: SpendTotals = SpendTotals()
    batches: dict[str, SpendTotals] = {}
    tenants: dict[str, SpendTotals] = {}
    accounts: dict[str, SpendTotals] = {}


class AccountPosition(msgspec.Struct, frozen=True, kw_only=True):
    """One account seen from one client's ledger.

    Attributes:
        held: credits reserved for submissions to it that it has not accepted yet.
        accepted_total: credits of every job it accepted from this client so far (corrected
            by settle() to what each really cost); only the difference between two readings
            means anything.
    """

    held: float = 0.0
    accepted_total: float = 0.0


class _Tally:
    __slots__ = ("reserved", "spent")

    def __init__(self) -> None:
        self.reserved = 0.0
        self.spent = 0.0


class Reservation:
    """Credits held for one paid submission; a context manager (see the module docstring).

    Methods may be called from any task of the ledger's event loop; each is idempotent past
    its stage (settling twice, or releasing a settled reservation, does nothing).

    Attributes:
        cost: the credits reserved.
        tenant: the tenant it counts against, or None.
        batch: the batch it counts against, or None.
        account: the account whose job it pays for, once known.
        state: "held", "accepted", "settled" or "released".
        spent: the credits settled (None until then).
    """

    __slots__ = ("_ledger", "account", "batch", "cost", "spent", "state", "tenant")

    def __init__(
        self,
        ledger: SpendLedger,
        cost: float,
        *,
        tenant: str | None,
        batch: str | None,
        account: str | None,
    ) -> None:
        self._ledger = ledger
        self.cost: float = cost
        self.tenant: str | None = tenant
        self.batch: str | None = batch
        self.account: str | None = account
        self.state: Literal["held", "accepted", "settled", "released"] = "held"
        self.spent: float | None = None

    def __repr__(self) -> str:
        return f"<Reservation {self.cost:g} credits {self.state}>"

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.state == "held":
            self.release()

    def accepted(self, *, account: str | None = None) -> None:
        """The job exists (or may: an uncertain POST): keep its credits committed after the
        ``with`` block until `settle`. `account`: the account that runs it."""
        if self.state != "held":
            return
        if account is not None and account != self.account:
            self._ledger._move_account(self, account)
        self._ledger._accept(self)
        self.state = "accepted"

    def settle(self, spent: float | None = None) -> None:
        """The job ended: `spent` credits (default: the reserved cost) count as spent; the
        reservation is no longer held. A job the API did not charge settles with 0."""
        if self.state in ("settled", "released"):
            return
        amount = self.cost if spent is None else _credits("spent", spent)
        self._ledger._finish(self, amount)
        self.state = "settled"
        self.spent = amount

    def release(self) -> None:
        """Nothing was (or will be) spent: give the credits back."""
        if self.state in ("settled", "released"):
            return
        self._ledger._finish(self, 0.0)
        self.state = "released"


class SpendLedger:
    """Limits in credits for a client, its batches and its tenants; reservations against them.

    Share one ledger between every task of one event loop: no method awaits, so a check and
    the reservation it allows cannot be split by another task. It is not thread-safe.

    Args:
        limit: the client's limit over its lifetime, in credits; None: none.
        tenant_limit: the limit of every tenant without one of its own; None: none.
        tenant_limits: tenant key -> its own limit.
        costs: operation -> credits, over `DEFAULT_COSTS` (see `CostTable`).
    """

    def __init__(
        self,
        *,
        limit: float | None = None,
        tenant_limit: float | None = None,
        tenant_limits: Mapping[str, float] | None = None,
        costs: Mapping[str, float] | None = None,
    ) -> None:
        self.costs: CostTable = CostTable(costs)
        self._limit = None if limit is None else _credits("spend_limit", limit)
        self._tenant_default = (
            None if tenant_limit is None else _credits("tenant_limit", tenant_limit)
        )
        self._tenant_limits: dict[str, float] = {}
        for tenant, credits in (tenant_limits or {}).items():
            self.set_tenant_limit(tenant, credits)
        self._batch_limits: dict[str, float] = {}
        self._client = _Tally()
        self._batches: dict[str, _Tally] = {}
        self._tenants: dict[str, _Tally] = {}
        self._accounts: dict[str, _Tally] = {}
        # Per account, for balance checks (see `position`): credits held for submissions not
        # yet accepted, and the running total of credits of jobs it accepted.
        self._held_on: dict[str, float] = {}
        self._accepted_on: dict[str, float] = {}

    # limits -----------------------------------------------------------------------------------

    def set_batch_limit(self, batch: str, limit: float | None) -> None:
        """Limit one batch (``generate_many(spend_limit=...)``); None removes the limit."""
        batch = _key("batch", batch)
        if limit is None:
            self._batch_limits.pop(batch, None)
        else:
            self._batch_limits[batch] = _credits("spend_limit", limit)

    def set_tenant_limit(self, tenant: str, limit: float | None) -> None:
        """Limit one tenant; None falls back to the ledger's `tenant_limit`."""
        tenant = _key("tenant", tenant)
        if limit is None:
            self._tenant_limits.pop(tenant, None)
        else:
            self._tenant_limits[tenant] = _credits(f"tenant_limits[{tenant!r}]", limit)

    @property
    def limited(self) -> bool:
        """Any limit is set (so what a song really costs matters)."""
        return bool(
            self._limit is not None
            or self._tenant_default is not None
            or self._tenant_limits
            or self._batch_limits
        )

    def _tenant_limit(self, tenant: str) -> float | None:
        return self._tenant_limits.get(tenant, self._tenant_default)

    # reservations -----------------------------------------------------------------------------

    def reserve(
        self,
        cost: float,
        *,
        tenant: str | None = None,
        batch: str | None = None,
        account: str | None = None,
    ) -> Reservation:
        """Hold `cost` credits for one submission, or raise `BudgetExceeded` (nothing held).

        Refused when spent + reserved + `cost` would cross the client's limit, the batch's or
        the tenant's. Use the result as ``with ledger.reserve(...) as reservation:``.

        Args:
            cost: the submission's estimated credits (``ledger.costs.cost("song")``).
            tenant: the tenant it is for; counted and limited per tenant.
            batch: the batch it belongs to; counted and limited per batch.
            account: the account it will run on, when already chosen.
        """
        cost = _credits("cost", cost)
        tenant = None if tenant is None else _key("tenant", tenant)
        batch = None if batch is None else _key("batch", batch)
        for scope, key, tally, limit in self._scopes(tenant, batch) if self.limited else ():
            if limit is not None and tally.spent + tally.reserved + cost > limit + _SLACK:
                raise BudgetExceeded(
                    scope=scope,
                    key=key,
                    limit=limit,
                    spent=tally.spent,
                    reserved=tally.reserved,
                    cost=cost,
                )
        reservation = Reservation(self, cost, tenant=tenant, batch=batch, account=account)
        for tally in self._tallies(reservation):
            tally.reserved += cost
        if account is not None:
            self._add_held(account, cost)
        return reservation

    def _scopes(
        self, tenant: str | None, batch: str | None
    ) -> Iterable[tuple[Scope, str | None, _Tally, float | None]]:
        yield "client", None, self._client, self._limit
        if batch is not None:
            tally = self._batches.get(batch) or _Tally()
            yield "batch", batch, tally, self._batch_limits.get(batch)
        if tenant is not None:
            tally = self._tenants.get(tenant) or _Tally()
            yield "tenant", tenant, tally, self._tenant_limit(tenant)

    def _tallies(self, reservation: Reservation) -> list[_Tally]:
        tallies = [self._client]
        for key, table in (
            (reservation.batch, self._batches),
            (reservation.tenant, self._tenants),
            (reservation.account, self._accounts),
        ):
            if key is not None:
                tallies.append(_tally_of(table, key))
        return tallies

    def _move_account(self, reservation: Reservation, account: str) -> None:
        if reservation.account is not None:
            self._accounts[reservation.account].reserved -= reservation.cost
            self._add_held(reservation.account, -reservation.cost)
        reservation.account = account
        _tally_of(self._accounts, account).reserved += reservation.cost
        self._add_held(account, reservation.cost)

    def _add_held(self, account: str, credits: float) -> None:
        self._held_on[account] = self._held_on.get(account, 0.0) + credits

    def _accept(self, reservation: Reservation) -> None:
        if reservation.account is not None:
            self._add_held(reservation.account, -reservation.cost)
            self._accepted_on[reservation.account] = (
                self._accepted_on.get(reservation.account, 0.0) + reservation.cost
            )

    def _finish(self, reservation: Reservation, spent: float) -> None:
        for tally in self._tallies(reservation):
            tally.reserved -= reservation.cost
            tally.spent += spent
        account = reservation.account
        if account is None:
            return
        if reservation.state == "held":  # never accepted: nothing reached the account
            self._add_held(account, -reservation.cost)
            if spent:  # settled straight from held: the job was accepted after all
                self._accepted_on[account] = self._accepted_on.get(account, 0.0) + spent
        else:  # the account was charged the cost when it accepted the job; now the real figure
            self._accepted_on[account] += spent - reservation.cost

    # reading ----------------------------------------------------------------------------------

    def reserved_on(self, account: str) -> float:
        """Credits held for jobs on `account` (accepted and running, or reserved for it)."""
        tally = self._accounts.get(account)
        return max(0.0, tally.reserved) if tally is not None else 0.0

    def position(self, account: str) -> AccountPosition:
        """What this client holds and has committed on `account`, for a balance check: a live
        balance read at some moment already reflects the jobs accepted before it, never the
        submissions still held (see `Balances`)."""
        return AccountPosition(
            held=max(0.0, self._held_on.get(account, 0.0)),
            accepted_total=self._accepted_on.get(account, 0.0),
        )

    def spending(self) -> Spending:
        """A snapshot of spent and reserved credits per client, batch, tenant and account."""
        return Spending(
            client=_totals(self._client, self._limit),
            batches={b: _totals(t, self._batch_limits.get(b)) for b, t in self._batches.items()},
            tenants={t: _totals(v, self._tenant_limit(t)) for t, v in self._tenants.items()},
            accounts={a: _totals(t, None) for a, t in self._accounts.items()},
        )


def _tally_of(table: dict[str, _Tally], key: str) -> _Tally:
    """`table[key]`, made on first use (once per key: `setdefault(key, _Tally())` would make
    one on every call, and this runs for every song)."""
    tally = table.get(key)
    if tally is None:
        tally = table[key] = _Tally()
    return tally


def _totals(tally: _Tally, limit: float | None) -> SpendTotals:
    # Rounded at 9 places: the float drift of many fractional costs is not worth reporting.
    return SpendTotals(
        spent=round(tally.spent, 9), reserved=round(max(0.0, tally.reserved), 9), limit=limit
    )
