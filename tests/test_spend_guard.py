"""The spend guard through the engine: budgets hold, judged by the simulator's own charges.

Every accepted song spends credits and a cancelled one is not refunded, so a limit must be
checked before a POST leaves, counting the credits of submissions in flight as well as
those spent (docs/concepts/spending.md). These tests run the client against the simulator
and read what the simulator charged, not what the client believes.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest

from flowmusic_async import BatchAborted, BudgetExceeded, Event, FlowMusic, Outcome
from flowmusic_async.testing import Faults, SimAccount, Simulator

SONG = 10.0  # the client's default price of a song, and the simulator's


def accounts(count: int, *, max_jobs: int = 16, credits: float = 100_000.0) -> tuple[Any, ...]:
    return tuple(
        SimAccount(email=f"acct{i:02d}@example.com", max_jobs=max_jobs, credits=credits)
        for i in range(count)
    )


async def run_batch(fm: FlowMusic, prompts: list[str], **options: Any) -> list[Outcome]:
    outcomes: list[Outcome] = []
    async with fm.generate_many(prompts, **options) as stream:
        async for outcome in stream:
            outcomes.append(outcome)
    return outcomes


@pytest.mark.anyio
async def test_a_client_limit_holds_over_800_slots_with_429s_and_lost_answers() -> None:
    """2,000 prompts on 800 slots, a limit of 300 songs, 429s and 15% of POST answers lost:
    the simulator charges at most the limit, and the budget is used up to one song."""
    budget = 300 * SONG + 5  # not a multiple: the last 5 credits cannot pay for a song
    sim = Simulator(
        accounts=accounts(50),
        time_scale=0.02,
        seed=7,
        faults=Faults(burst_429=40, lost_response_rate=0.15),
    )
    async with sim.client(spend_limit=budget) as fm:
        outcomes = await run_batch(fm, [f"song {i}" for i in range(2000)])
        spending = fm.spending()
    assert sim.stats.lost_responses > 0 and sim.stats.requests.get(("POST /music", 429), 0) > 0
    charged = sim.stats.total_credits_spent
    assert charged <= budget
    assert sim.stats.jobs_created == math.floor(budget / SONG)  # none unused, none paid twice
    assert sim.stats.duplicate_submissions == 0
    refused = [o for o in outcomes if not o.ok and isinstance(o.error, BudgetExceeded)]
    assert len(refused) == 2000 - sim.stats.jobs_created
    assert spending.client.reserved == 0 and spending.client.spent == charged


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio", "trio")
async def test_a_batch_limit_stops_that_batch_while_another_runs_on() -> None:
    """One batch's limit refuses its own songs only; a batch beside it goes on."""
    sim = Simulator(accounts=accounts(1, max_jobs=8), time_scale=0.005)
    async with sim.client() as fm, anyio.create_task_group() as tg:
        results: dict[str, list[Outcome]] = {}

        async def run(name: str, count: int, limit: float | None) -> None:
            prompts = [f"{name} {i}" for i in range(count)]
            results[name] = await run_batch(fm, prompts, spend_limit=limit)

        tg.start_soon(run, "capped", 12, 5 * SONG)
        tg.start_soon(run, "free", 12, None)
    capped_ok = sum(o.ok for o in results["capped"])
    assert capped_ok == 5
    assert all(isinstance(o.error, BudgetExceeded) for o in results["capped"] if not o.ok)
    assert sum(o.ok for o in results["free"]) == 12
    assert sim.stats.jobs_created == 17 and sim.stats.total_credits_spent == 17 * SONG


@pytest.mark.anyio
async def test_a_refused_submission_sends_nothing_and_names_the_limit() -> None:
    """Over the limit: `BudgetExceeded` before any POST, saying which limit and how much."""
    sim = Simulator(accounts=accounts(1), time_scale=0.005)
    async with sim.client(spend_limit=SONG - 1) as fm:
        with pytest.raises(BudgetExceeded) as refused:
            await fm.generate("too dear")
    assert refused.value.scope == "client" and refused.value.cost == SONG
    assert refused.value.limit == SONG - 1 and refused.value.spent == 0
    assert sim.stats.jobs_created == 0
    assert sim.stats.requests.get(("POST /music", 201), 0) == 0


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio", "trio")
async def test_a_cancelled_job_counts_as_spent() -> None:
    """DELETE frees the slot but refunds nothing: the budget says the same."""
    sim = Simulator(accounts=accounts(1), time_scale=0.05)
    events: list[Event] = []
    async with sim.client(spend_limit=SONG, event_hooks=[events.append]) as fm:
        handle = await fm.submit("cancel me")
        await handle.cancel()
        assert fm.spending().client.spent == SONG
        with pytest.raises(BudgetExceeded):
            await fm.generate("no budget left")
    assert sim.stats.total_credits_spent == SONG and sim.stats.jobs_created == 1
    assert [e.credits for e in events if e.kind == "cancelled"] == [SONG]


@pytest.mark.anyio
async def test_a_prompt_refused_by_moderation_costs_nothing() -> None:
    """A moderated song is not charged, and its credits are free again for the next one."""
    sim = Simulator(
        accounts=accounts(1), time_scale=0.005, moderate=lambda text: "forbidden" in text
    )
    async with sim.client(spend_limit=SONG) as fm:
        with pytest.raises(Exception, match="moderation"):
            await fm.generate("forbidden words")
        assert fm.spending().client.spent == 0
        await fm.generate("a fine song")  # the budget of one song is still there
    assert sim.stats.total_credits_spent == SONG


@pytest.mark.anyio
async def test_events_carry_the_credits_reserved_and_spent() -> None:
    """An observer sees what each song reserved as it was queued and sent, and what it cost."""
    sim = Simulator(accounts=accounts(1), time_scale=0.005)
    events: list[Event] = []
    async with sim.client(event_hooks=[events.append]) as fm:
        await fm.generate("one song")
    credits = {e.kind: e.credits for e in events}
    assert credits["queued"] == credits["submitted"] == credits["completed"] == SONG


async def _floor_client(sim: Simulator, floor: float, songs: int) -> list[Outcome]:
    async with sim.client(min_credits_left=floor) as fm:
        try:
            return await run_batch(fm, [f"song {i}" for i in range(songs)])
        except BatchAborted:
            return []


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio", "trio")
async def test_two_clients_keep_every_account_above_the_floor() -> None:
    """The balance is the one figure two processes share: with a floor of 500 credits, no
    account goes below it by more than what was in flight when it was crossed."""
    floor, start, max_jobs = 500.0, 1000.0, 4
    sim = Simulator(accounts=accounts(2, max_jobs=max_jobs, credits=start), time_scale=0.01)
    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(_floor_client, sim, floor, 100)
    for email in ("acct00@example.com", "acct01@example.com"):
        balance = sim.credits(email)
        # At most the jobs already placed on the account when it reached the floor.
        assert floor - max_jobs * SONG <= balance <= floor + SONG, (email, balance)
    assert sim.stats.jobs_created >= (2 * (start - floor) / SONG) - 2 * max_jobs


@pytest.mark.anyio
async def test_an_account_at_the_floor_comes_back_after_a_top_up() -> None:
    """Taken out at the floor is not forever: a balance that rises puts the account back."""
    sim = Simulator(accounts=accounts(1, max_jobs=2, credits=3 * SONG), time_scale=0.005)
    async with sim.client(min_credits_left=SONG) as fm:
        await fm.generate("one")
        await fm.generate("two")
        with pytest.raises(Exception, match="credit floor"):
            await fm.generate("three: the floor")
        sim.world.accounts["acct00@example.com"].credits += 5 * SONG  # a top-up
        await fm._submitter.refresh_accounts(force=True)
        await fm.generate("three, after the top-up")
    assert sim.stats.jobs_created == 3
