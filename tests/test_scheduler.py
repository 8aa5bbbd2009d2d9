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
