"""The scheduler on its own: FIFO slots, reservations, health, other processes' jobs."""

from __future__ import annotations

import time

import anyio
import pytest

from flowmusic_async import Account, AccountError, AccountJobs, InsufficientCreditsError, RunningJob
from flowmusic_async._scheduler import Scheduler


def accounts(**limits: int) -> dict[str, Account]:
    return {
        f"{name}@x.com": Account(email=f"{name}@x.com", max_jobs=n) for name, n in limits.items()
    }


def running(**jobids: list[str]) -> dict[str, AccountJobs]:
    return {
        f"{name}@x.com": AccountJobs(
            running=len(ids),
            max_jobs=2,
            jobs=tuple(RunningJob(jobid=i, status="pending") for i in ids),
        )
        for name, ids in jobids.items()
    }


@pytest.mark.anyio
async def test_slots_are_handed_out_in_request_order_and_never_beyond_max_jobs() -> None:
    """FIFO fairness and the hard cap: the third waiter gets the first slot freed."""
    scheduler = Scheduler()
    scheduler.update_accounts(accounts(a=2))
    assert await scheduler.acquire() == "a@x.com"
    assert await scheduler.acquire() == "a@x.com"
    scheduler.commit("a@x.com", "job-1")
    scheduler.commit("a@x.com", "job-2")
    order: list[str] = []

    async def wait(name: str) -> None:
        await scheduler.acquire()
        order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, "first")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(wait, "second")
        await anyio.wait_all_tasks_blocked()
        assert scheduler.waiting == 2 and order == []
        scheduler.job_ended("job-1")
        await anyio.wait_all_tasks_blocked()
        assert order == ["first"]
        scheduler.release("a@x.com")  # the first waiter's POST created nothing
    assert order == ["first", "second"]


@pytest.mark.anyio
async def test_a_free_slot_is_taken_without_yielding_to_the_loop() -> None:
    """A batch takes hundreds of free slots at its start; a task step for each one crowded
    every turn of the loop. With room on an account, acquire() returns without a checkpoint."""
    scheduler = Scheduler()
    scheduler.update_accounts(accounts(a=2))
    others_ran: list[str] = []

    async def other() -> None:
        others_ran.append("other")

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        assert await scheduler.acquire() == "a@x.com"
        assert others_ran == []  # no turn of the loop was given away
    assert others_ran == ["other"] and scheduler.snapshot()["a@x.com"].in_flight == 1


@pytest.mark.anyio
async def test_a_cancelled_waiter_gives_its_slot_back() -> None:
    """Cancelling a submission while it waits must not leak a reservation."""
    scheduler = Scheduler()
    scheduler.update_accounts(accounts(a=1))
    await scheduler.acquire()
    with anyio.move_on_after(0.01):
        await scheduler.acquire()
    assert scheduler.waiting == 0
    scheduler.release("a@x.com")
    assert scheduler.snapshot()["a@x.com"].in_flight == 0


@pytest.mark.anyio
async def test_jobs_of_other_processes_take_slots_until_they_leave_the_list() -> None:
    """GET /jobs reconciliation: jobs we did not place still count against maxJobs."""
    scheduler = Scheduler()
    scheduler.update_accounts(accounts(a=2))
    scheduler.reconcile(running(a=["theirs-1", "theirs-2"]), swept_at=time.monotonic())
    assert scheduler.snapshot()["a@x.com"].in_flight == 2
    with anyio.move_on_after(0.01) as scope:
        await scheduler.acquire()
    assert scope.cancelled_caught
    scheduler.reconcile(running(a=["theirs-1"]), swept_at=time.monotonic())
    assert await scheduler.acquire() == "a@x.com"


@pytest.mark.anyio
async def test_a_sweep_older_than_a_job_does_not_end_it() -> None:
    """A listing sent before our POST was answered must not free that job's slot."""
    scheduler = Scheduler()
    scheduler.update_accounts(accounts(a=1))
    swept_at = time.monotonic()
    await scheduler.acquire()
    scheduler.commit("a@x.com", "new-job")
    assert scheduler.reconcile({}, swept_at=swept_at) == []
    assert scheduler.reconcile({}, swept_at=time.monotonic()) == ["new-job"]


@pytest.mark.anyio
async def test_when_every_account_is_out_of_credits_waiters_get_the_402() -> None:
    """No funded account left: queued submissions fail with the server's 402, not a hang."""
    scheduler = Scheduler()
    scheduler.update_accounts(accounts(a=1, b=1))
    await scheduler.acquire()
    await scheduler.acquire()
    error = InsufficientCreditsError("POST /music -> 402", status=402, email="a@x.com")
    caught: list[BaseException] = []

    async def wait() -> None:
        try:
            await scheduler.acquire()
        except InsufficientCreditsError as exc:
            caught.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        scheduler.take_out("a@x.com", error)
        scheduler.take_out("b@x.com", error)
    # Each waiter gets its own exception object, with the server's class and fields.
    assert len(caught) == 1 and caught[0] is not error
    assert type(caught[0]) is type(error) and caught[0].email == error.email
    assert str(caught[0]) == str(error)


@pytest.mark.anyio
async def test_an_account_in_error_state_is_never_chosen() -> None:
    """An account whose record carries `error` (596 territory) is out of rotation from the start."""
    scheduler = Scheduler()
    broken = Account(email="bad@x.com", max_jobs=4, error="refresh token rejected")
    scheduler.update_accounts({"bad@x.com": broken, **accounts(ok=1)})
    assert await scheduler.acquire() == "ok@x.com"
    assert not scheduler.snapshot()["bad@x.com"].healthy
    with pytest.raises(AccountError) as caught:
        await scheduler.acquire("bad@x.com")
    assert caught.value.email == "bad@x.com" and caught.value.reason == "refresh token rejected"


@pytest.mark.anyio
async def test_unknown_accounts_leave_placement_to_the_server() -> None:
    """Without an account list there is nothing to count: acquire passes the request through."""
    scheduler = Scheduler()
    assert await scheduler.acquire() is None
    scheduler.update_accounts(accounts(a=1))
    assert await scheduler.acquire("elsewhere@x.com") == "elsewhere@x.com"


async def _occupy(scheduler: Scheduler, count: int, tenant: str | None) -> list[str]:
    """Take and commit `count` free slots for `tenant`; their jobids."""
    jobids: list[str] = []
    for _ in range(count):
        email = await scheduler.acquire(tenant=tenant)
        jobid = f"job-{tenant}-{len(jobids)}-{time.monotonic_ns()}"
        scheduler.commit(email, jobid, tenant=tenant)
        jobids.append(jobid)
    return jobids


@pytest.mark.anyio
async def test_a_newcomer_tenant_gets_the_next_free_slots_not_the_end_of_the_queue() -> None:
    """One tenant's 50 queued songs must not make another's 2 wait behind them: the next two
    slots freed go to the newcomer, then the first tenant's line goes on, oldest first."""
    scheduler = Scheduler()
    scheduler.update_accounts(accounts(a=4))
    running = await _occupy(scheduler, 4, "big")
    order: list[str] = []

    async def wait(tenant: str, n: int) -> None:
        await scheduler.acquire(tenant=tenant)
        order.append(f"{tenant}{n}")

    async with anyio.create_task_group() as tg:
        for n in range(50):
            tg.start_soon(wait, "big", n)
            await anyio.wait_all_tasks_blocked()
        for n in range(2):
            tg.start_soon(wait, "small", n)
            await anyio.wait_all_tasks_blocked()
        assert scheduler.waiting == 52
        for jobid in running:  # each freed slot is handed on once its reservation is given back
            scheduler.job_ended(jobid)
            await anyio.wait_all_tasks_blocked()
        assert order == ["small0", "small1", "big0", "big1"]
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_tenants_with_equal_weight_take_turns_and_a_weight_of_2_takes_two() -> None:
    """Round-robin by jobs in flight per weight: with 6 slots, weights 2 and 1 end at 4 and 2."""
    scheduler = Scheduler(tenant_weights={"gold": 2})
    scheduler.update_accounts(accounts(a=6))
    blocker = await _occupy(scheduler, 6, None)
    got: list[str] = []

    async def wait(tenant: str) -> None:
        email = await scheduler.acquire(tenant=tenant)
        scheduler.commit(email, f"{tenant}-{len(got)}", tenant=tenant)
        got.append(tenant)

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(wait, "gold")
            tg.start_soon(wait, "plain")
        await anyio.wait_all_tasks_blocked()
        for jobid in blocker:
            scheduler.job_ended(jobid)
            await anyio.wait_all_tasks_blocked()
        assert sorted(got) == ["gold"] * 4 + ["plain"] * 2
        usage = {t.tenant: t for t in scheduler.tenant_usage()}
        assert usage["gold"].in_flight == 4 and usage["plain"].in_flight == 2
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_tenant_at_its_cap_waits_while_its_free_slots_go_to_others() -> None:
    """The per-tenant cap counts reserved and running jobs; a capped tenant never idles a slot
    another tenant could use, and gets the next one once a job of its own ends."""
    scheduler = Scheduler(tenant_max_jobs={"big": 2})
    scheduler.update_accounts(accounts(a=4))
    big = await _occupy(scheduler, 2, "big")
    got: list[str] = []

    async def wait(tenant: str) -> None:
        email = await scheduler.acquire(tenant=tenant)
        scheduler.commit(email, f"{tenant}-{len(got)}", tenant=tenant)
        got.append(tenant)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, "big")
        await anyio.wait_all_tasks_blocked()
        assert got == [] and scheduler.snapshot()["a@x.com"].free == 2  # capped, slots idle
        tg.start_soon(wait, "other")
        tg.start_soon(wait, "other")
        await anyio.wait_all_tasks_blocked()
        assert got == ["other", "other"]  # the capped tenant's older waiter was passed over
        scheduler.job_ended("other-0")
        await anyio.wait_all_tasks_blocked()
        assert got == ["other", "other"]  # a free slot, but "big" is still at its cap
        scheduler.job_ended(big[0])
        await anyio.wait_all_tasks_blocked()
        assert got == ["other", "other", "big"]


@pytest.mark.anyio
async def test_a_waiter_pinned_to_a_full_account_does_not_hold_up_its_tenant() -> None:
    """Pinned waiters still work per tenant: a tenant whose oldest waiter is pinned to a full
    account gets a free slot elsewhere for its next waiter."""
    scheduler = Scheduler()
    scheduler.update_accounts(accounts(a=1, b=1))
    await scheduler.acquire("a@x.com", tenant="t")
    order: list[str] = []

    async def wait(name: str, email: str | None) -> None:
        await scheduler.acquire(email, tenant="t")
        order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, "pinned-to-a", "a@x.com")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(wait, "anywhere", None)
        await anyio.wait_all_tasks_blocked()
        assert order == ["anywhere"]
        assert scheduler.position(object()) is None
        scheduler.release("a@x.com", tenant="t")
    assert order == ["anywhere", "pinned-to-a"]


@pytest.mark.anyio
async def test_position_counts_the_other_tenants_served_first() -> None:
    """A newcomer is next in line; the big tenant's head waits behind the newcomer's songs."""
    scheduler = Scheduler()
    scheduler.update_accounts(accounts(a=2))
    await _occupy(scheduler, 2, "big")
    owners = {name: object() for name in ("big0", "big1", "small0", "small1")}

    async def wait(name: str, tenant: str) -> None:
        await scheduler.acquire(owner=owners[name], tenant=tenant)

    async with anyio.create_task_group() as tg:
        for name in owners:
            tg.start_soon(wait, name, name[:-1])
            await anyio.wait_all_tasks_blocked()
        positions = {name: scheduler.position(owner) for name, owner in owners.items()}
        assert positions == {"small0": 0, "small1": 1, "big0": 2, "big1": 3}
        assert scheduler.position_for_new("newcomer") == 0
        assert scheduler.position_for_new("big") == 4
        tg.cancel_scope.cancel()
