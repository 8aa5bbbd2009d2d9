"""The spend ledger: costs, limits per client/batch/tenant, and reservations held by `with`."""

from __future__ import annotations

import math

import anyio
import msgspec
import pytest

from flowmusic_async import BudgetExceeded, FlowMusicError, Spending, SpendTotals, ValidationError
from flowmusic_async._spend import DEFAULT_COSTS, OPERATIONS, CostTable, Reservation, SpendLedger


def state(reservation: Reservation) -> str:
    """The reservation's stage, read fresh (it changes behind mypy's narrowing)."""
    return reservation.state


def test_a_reservation_held_then_released_leaves_nothing_reserved_or_spent() -> None:
    """Leaving the `with` block before accepted() (a 402, a 429 given up) gives it all back."""
    ledger = SpendLedger(limit=100)
    with ledger.reserve(10, tenant="t", batch="b") as reservation:
        assert ledger.spending().client == SpendTotals(reserved=10, limit=100)
        assert reservation.state == "held"
    assert state(reservation) == "released"
    report = ledger.spending()
    assert report.client == SpendTotals(limit=100)
    assert report.batches == {"b": SpendTotals()} and report.tenants == {"t": SpendTotals()}


def test_an_exception_inside_the_block_releases_and_propagates() -> None:
    """Every way out of the POST before acceptance releases, an error included."""
    ledger = SpendLedger(limit=10)
    with pytest.raises(RuntimeError, match="POST failed"), ledger.reserve(10) as reservation:
        raise RuntimeError("POST failed")
    assert reservation.state == "released"
    assert ledger.spending().client.reserved == 0
    with ledger.reserve(10):  # the whole limit is available again
        pass


def test_an_accepted_job_stays_committed_after_the_block_until_it_is_settled() -> None:
    """accepted(): the job exists, so its credits count until the job ends, even past `with`."""
    ledger = SpendLedger(limit=25)
    with ledger.reserve(10, account="a@example.com") as reservation:
        reservation.accepted()
    assert reservation.state == "accepted"
    assert ledger.spending().client == SpendTotals(reserved=10, limit=25)
    with pytest.raises(BudgetExceeded), ledger.reserve(10), ledger.reserve(10):
        pass  # 10 committed + 10 held + 10 > 25
    reservation.settle()  # completed: the reserved cost is spent
    assert state(reservation) == "settled" and reservation.spent == 10
    assert ledger.spending().client == SpendTotals(spent=10, limit=25)
    assert ledger.spending().accounts == {"a@example.com": SpendTotals(spent=10)}


def test_settling_records_what_the_job_really_cost() -> None:
    """settle(spent): a cancelled or charged-failed job spends; an uncharged one settles at 0."""
    ledger = SpendLedger()
    for spent in (12.5, 0.0):
        with ledger.reserve(10) as reservation:
            reservation.accepted()
        reservation.settle(spent)
    assert ledger.spending().client == SpendTotals(spent=12.5)


def test_every_stage_is_idempotent_past_itself() -> None:
    """A second settle, a release after settle or an accepted() after release change nothing:
    the poller and a cancel may both report one job's end."""
    ledger = SpendLedger()
    with ledger.reserve(10) as reservation:
        reservation.accepted()
        reservation.accepted()
    reservation.settle(10)
    reservation.settle(3)
    reservation.release()
    reservation.accepted()
    assert reservation.state == "settled" and reservation.spent == 10
    assert ledger.spending().client == SpendTotals(spent=10)
    with ledger.reserve(5) as released:
        pass
    released.settle(5)
    released.accepted()
    assert released.state == "released" and ledger.spending().client == SpendTotals(spent=10)


def test_reservations_in_flight_count_so_two_cannot_pass_one_check_together() -> None:
    """The check is spent + reserved + cost: a limit of 25 admits two held 10s, not a third."""
    ledger = SpendLedger(limit=25)
    with ledger.reserve(10), ledger.reserve(10):
        with pytest.raises(BudgetExceeded) as refused:
            ledger.reserve(10)
        assert ledger.spending().client.reserved == 20  # the refused one held nothing
    error = refused.value
    assert (error.scope, error.key, error.limit, error.spent, error.reserved, error.cost) == (
        "client",
        None,
        25,
        0,
        20,
        10,
    )


def test_budget_exceeded_says_which_limit_and_the_figures() -> None:
    """The message names the scope and every figure; the error is a FlowMusicError."""
    ledger = SpendLedger(tenant_limits={"guild-1": 30})
    with ledger.reserve(20, tenant="guild-1") as reservation:
        reservation.accepted()
    reservation.settle(20)
    with ledger.reserve(5, tenant="guild-1"), pytest.raises(BudgetExceeded) as refused:
        ledger.reserve(10, tenant="guild-1")
    error = refused.value
    assert isinstance(error, FlowMusicError)
    assert (error.scope, error.key, error.spent, error.reserved, error.cost) == (
        "tenant",
        "guild-1",
        20,
        5,
        10,
    )
    assert str(error) == (
        "tenant 'guild-1' spend limit of 30 credits: 20 spent and 5 reserved, so 10 more "
        "would cross it; nothing was sent"
    )


def test_a_batch_limit_holds_while_other_batches_keep_running() -> None:
    """A full batch refuses its next song; another batch and unbatched work still reserve."""
    ledger = SpendLedger()
    ledger.set_batch_limit("nightly", 20)
    held = [ledger.reserve(10, batch="nightly") for _ in range(2)]
    with pytest.raises(BudgetExceeded) as refused:
        ledger.reserve(10, batch="nightly")
    assert (refused.value.scope, refused.value.key) == ("batch", "nightly")
    with ledger.reserve(10, batch="other"), ledger.reserve(10):
        pass
    held[0].release()
    with ledger.reserve(10, batch="nightly"):  # room again once one was released
        pass
    ledger.set_batch_limit("nightly", None)
    with ledger.reserve(100, batch="nightly"):
        pass
    assert ledger.spending().batches["nightly"] == SpendTotals(reserved=10)


def test_tenants_share_a_default_limit_and_may_have_their_own() -> None:
    """tenant_limit applies to every tenant without an entry of its own; each counts apart."""
    ledger = SpendLedger(tenant_limit=10, tenant_limits={"vip": 50})
    with ledger.reserve(10, tenant="a"), ledger.reserve(10, tenant="b"):
        with pytest.raises(BudgetExceeded):
            ledger.reserve(1, tenant="a")
        with ledger.reserve(40, tenant="vip"):
            pass
    ledger.set_tenant_limit("a", 15)
    with ledger.reserve(15, tenant="a"):
        pass
    ledger.set_tenant_limit("a", None)  # back to the default
    with pytest.raises(BudgetExceeded):
        ledger.reserve(11, tenant="a")
    assert ledger.spending().tenants["vip"].limit == 50
    assert ledger.spending().tenants["b"].limit == 10


def test_the_client_limit_applies_across_every_batch_and_tenant() -> None:
    """The client's limit is checked on every reservation, whatever its batch or tenant."""
    ledger = SpendLedger(limit=20)
    with (
        ledger.reserve(10, tenant="a"),
        ledger.reserve(10, batch="b"),
        pytest.raises(BudgetExceeded) as refused,
    ):
        ledger.reserve(1, tenant="c", batch="d")
    assert refused.value.scope == "client"


def test_a_reservation_landing_exactly_on_the_limit_fits_despite_float_sums() -> None:
    """Ten reservations of 0.1 credit fit a limit of 1.0 (0.1 * 10 != 1.0 in floats)."""
    ledger = SpendLedger(limit=1.0)
    held = [ledger.reserve(0.1) for _ in range(10)]
    with pytest.raises(BudgetExceeded):
        ledger.reserve(0.1)
    for reservation in held:
        reservation.accepted()
        reservation.settle()
    assert ledger.spending().client == SpendTotals(spent=1.0, limit=1.0)
    assert ledger.spending().client.remaining == 0


def test_a_free_operation_reserves_nothing_and_is_never_refused() -> None:
    """An effect (0 credits) passes a spent limit: refusing it would protect nothing."""
    ledger = SpendLedger(limit=0)
    with ledger.reserve(0) as reservation:
        reservation.accepted()
    reservation.settle()
    with pytest.raises(BudgetExceeded):
        ledger.reserve(0.5)


def test_account_reservations_follow_the_job_to_its_account() -> None:
    """reserved_on(email): what the balance check must subtract; accepted(account=) names
    the account the API placed the job on."""
    ledger = SpendLedger()
    chosen = ledger.reserve(10, account="a@example.com")
    placed = ledger.reserve(7)
    assert ledger.reserved_on("a@example.com") == 10 and ledger.reserved_on("b@example.com") == 0
    chosen.accepted(account="b@example.com")
    placed.accepted(account="b@example.com")
    assert ledger.reserved_on("a@example.com") == 0 and ledger.reserved_on("b@example.com") == 17
    chosen.settle()
    assert ledger.reserved_on("b@example.com") == 7
    assert ledger.spending().accounts["b@example.com"] == SpendTotals(spent=10, reserved=7)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SpendLedger(limit=-1),
        lambda: SpendLedger(limit=math.inf),
        lambda: SpendLedger(tenant_limit=math.nan),
        lambda: SpendLedger(tenant_limits={"": 5}),
        lambda: SpendLedger(costs={"songs": 5}),
        lambda: SpendLedger(costs={"song": -5}),
        lambda: SpendLedger().reserve(-1),
        lambda: SpendLedger().reserve(True),
        lambda: SpendLedger().reserve(1, tenant=""),
        lambda: SpendLedger().set_batch_limit("b", -3),
    ],
)
def test_bad_limits_costs_and_keys_are_refused_locally(make: object) -> None:
    """A negative, infinite or NaN figure, an unknown operation or an empty key would make a
    limit meaningless: refused with a ValidationError (a ValueError) naming the field."""
    assert callable(make)
    with pytest.raises(ValidationError):
        make()


def test_costs_come_from_defaults_then_configuration_then_what_the_api_charged() -> None:
    """An operation's cost: learned (what the account paid) over configured over default."""
    table = CostTable({"song": 12})
    assert table.as_dict() == {**DEFAULT_COSTS, "song": 12}
    assert (table.cost("song"), table.source("song")) == (12, "configured")
    assert (table.cost("effect"), table.source("effect")) == (0, "default")
    table.learn("song", 11.5)
    table.learn("stems", 2)
    assert (table.cost("song"), table.source("song")) == (11.5, "learned")
    assert table.cost("stems") == 2
    assert set(table.as_dict()) == set(OPERATIONS)
    with pytest.raises(ValidationError):
        table.cost("karaoke")


def test_the_report_is_a_frozen_struct_that_encodes_to_json() -> None:
    """fm.spending() hands back data a web app can return as is, and cannot be mutated."""
    ledger = SpendLedger(limit=50, tenant_limit=20)
    with ledger.reserve(10, tenant="t", batch="b", account="a@example.com") as reservation:
        reservation.accepted()
    report = ledger.spending()
    assert isinstance(report, Spending)
    with pytest.raises(AttributeError):
        report.client = SpendTotals()  # type: ignore[misc]
    assert msgspec.json.decode(msgspec.json.encode(report)) == {
        "client": {"spent": 0.0, "reserved": 10.0, "limit": 50.0},
        "batches": {"b": {"spent": 0.0, "reserved": 10.0, "limit": None}},
        "tenants": {"t": {"spent": 0.0, "reserved": 10.0, "limit": 20.0}},
        "accounts": {"a@example.com": {"spent": 0.0, "reserved": 10.0, "limit": None}},
    }
    assert report.client.remaining == 40 and report.batches["b"].remaining is None


@pytest.mark.anyio
async def test_800_concurrent_reservations_never_exceed_the_limit() -> None:
    """800 tasks reserve, yield (the POST in flight), then accept: at most floor(B/cost) are
    accepted, and exactly that many since none gives its reservation back."""
    budget, cost = 1000.0, 7.0
    ledger = SpendLedger(limit=budget)
    accepted: list[int] = []
    refused: list[int] = []

    async def submit(n: int) -> None:
        try:
            with ledger.reserve(cost, tenant=f"t{n % 5}") as reservation:
                await anyio.sleep(0)  # the POST is on the wire; others check meanwhile
                await anyio.sleep(0)
                reservation.accepted()
                accepted.append(n)
        except BudgetExceeded:
            refused.append(n)
            return
        await anyio.sleep(0)  # the job runs
        reservation.settle()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for n in range(800):
                tg.start_soon(submit, n)
    assert len(accepted) == math.floor(budget / cost) == 142
    assert len(refused) == 800 - 142
    assert ledger.spending().client == SpendTotals(spent=142 * cost, limit=budget)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_refused_submissions_that_retry_use_the_budget_up_to_one_cost(
    anyio_backend: str,
) -> None:
    """With a third of the POSTs failing (released) and refused tasks retrying while anything
    is still in flight, spent stays <= B and less than one cost of B is left unused."""
    budget, cost = 1000.0, 7.0
    ledger = SpendLedger(limit=budget)
    released = anyio.Event()
    paid: list[int] = []

    async def submit(n: int) -> None:
        nonlocal released
        attempt = 0
        while True:
            attempt += 1
            try:
                with ledger.reserve(cost) as reservation:
                    await anyio.sleep(0)
                    if (n + attempt) % 3 == 0:  # a 402/429 given up: nothing spent
                        raise LookupError
                    reservation.accepted()
            except BudgetExceeded as error:
                if error.reserved == 0:
                    return  # nothing in flight can free room: the budget is used up
                await released.wait()
                continue
            except LookupError:
                released.set()
                released = anyio.Event()
                continue
            await anyio.sleep(0)
            reservation.settle()
            paid.append(n)
            released.set()
            released = anyio.Event()
            return

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for n in range(800):
                tg.start_soon(submit, n)
    spent = ledger.spending().client.spent
    assert spent == len(paid) * cost <= budget
    assert budget - spent < cost
    assert len(paid) == math.floor(budget / cost)
