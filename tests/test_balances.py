"""Live balances read at most every N seconds, and the min_credits_left floor with reservations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import httpx
import pytest

from flowmusic_async import FlowMusic, ValidationError
from flowmusic_async._balances import Balances, balance_reader
from flowmusic_async._spend import SpendLedger
from flowmusic_async.testing import SimAccount, Simulator

pytestmark = pytest.mark.anyio

EMAIL = "shared@example.com"
COST = 10.0


def _reads(sim: Simulator) -> int:
    return sum(n for (key, status), n in sim.stats.requests.items() if "/accounts/" in key)


@dataclass
class Process:
    """One process (or bot replica) on the shared accounts: its own client, ledger, balances."""

    sim: Simulator
    fm: FlowMusic
    http: httpx.AsyncClient
    ledger: SpendLedger
    balances: Balances
    songs: int = 0

    async def submit_until_refused(self, tag: str) -> None:
        """A worker: ask the floor, reserve, POST; stop once the account may not take one."""
        n = 0
        while await self.balances.admits(EMAIL, COST):
            with self.ledger.reserve(COST, account=EMAIL) as reservation:
                n += 1
                body = {"prompt": f"{tag} {n}", "mode": "async", "email": EMAIL}
                answer = await self.http.post("/music", json=body)
                assert answer.status_code == 201, answer.text
                reservation.accepted()
                self.songs += 1
            self.sim.advance(200)  # the job ends: its slot is free (capacity is not tested here)


@asynccontextmanager
async def process(
    sim: Simulator, *, min_credits_left: float, refresh_every: float
) -> AsyncIterator[Process]:
    headers = {"Authorization": f"Bearer {sim.token}"}
    async with (
        sim.client() as fm,
        httpx.AsyncClient(transport=sim.transport(), base_url=sim.base_url, headers=headers) as h,
    ):
        ledger = SpendLedger()
        balances = Balances(
            read=balance_reader(fm.accounts),
            ledger=ledger,
            min_credits_left=min_credits_left,
            refresh_every=refresh_every,
        )
        yield Process(sim, fm, h, ledger, balances)


def _sim(credits: float) -> Simulator:
    return Simulator(
        accounts=(SimAccount(email=EMAIL, max_jobs=16, credits=credits),),
        time_scale=0.001,
        song_credits=COST,
    )


async def test_reservations_in_flight_keep_the_floor_between_reads() -> None:
    """Ten workers share one read of 100 credits with a floor of 30: exactly seven songs, as
    each held reservation lowers the estimate before its POST answers (without them all ten
    would pass the check on the same reading)."""
    sim = _sim(100.0)
    async with process(sim, min_credits_left=30, refresh_every=3600) as proc:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for worker in range(10):
                    tg.start_soon(proc.submit_until_refused, f"w{worker}")
        assert proc.songs == 7
        assert sim.credits(EMAIL) == 30.0
        assert proc.balances.reads == 1 and _reads(sim) == 1  # one read, not one per song
        assert proc.balances.estimate(EMAIL) == 30.0
        # A fresh read already includes the seven accepted jobs: not subtracted twice.
        assert await proc.balances.refresh(EMAIL, force=True) == 30.0
        assert proc.balances.balance(EMAIL) == 30.0 and not proc.balances.may_take(EMAIL, COST)


async def test_two_processes_on_the_same_account_keep_the_floor() -> None:
    """Two clients, each with its own ledger, spend one account down to the floor: the live
    balance is what they share, so it ends at the floor minus at most what the other had in
    flight when it was crossed (here every check reads: refresh_every=0)."""
    sim = _sim(1000.0)
    floor, workers = 500.0, 4
    async with (
        process(sim, min_credits_left=floor, refresh_every=0) as first,
        process(sim, min_credits_left=floor, refresh_every=0) as second,
    ):
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for worker in range(workers):
                    tg.start_soon(first.submit_until_refused, f"a{worker}")
                    tg.start_soon(second.submit_until_refused, f"b{worker}")
        left = sim.credits(EMAIL)
        assert first.songs > 0 and second.songs > 0
        assert left == 1000.0 - COST * (first.songs + second.songs)
        assert floor - workers * COST <= left < floor + COST
        assert not await first.balances.admits(EMAIL, COST)
        assert not await second.balances.admits(EMAIL, COST)


async def test_the_other_processes_spend_shows_at_the_next_read_not_before() -> None:
    """A process learns of another's spend only by reading: between reads its estimate is its
    own view; after refresh_every it sees the live balance and stops at the floor."""
    sim = _sim(100.0)
    now = [0.0]
    async with process(sim, min_credits_left=30, refresh_every=5) as mine:
        mine.balances = Balances(
            read=balance_reader(mine.fm.accounts),
            ledger=mine.ledger,
            min_credits_left=30,
            refresh_every=5,
            clock=lambda: now[0],
        )
        assert await mine.balances.admits(EMAIL, COST)  # reads 100
        sim.set_credits(EMAIL, 35.0)  # another process spent 65
        now[0] = 4.9
        assert await mine.balances.admits(EMAIL, COST)  # still the old reading
        assert mine.balances.reads == 1
        now[0] = 5.0
        assert not await mine.balances.admits(EMAIL, COST)  # 35 - 10 < 30
        assert mine.balances.reads == 2


async def test_concurrent_refreshes_of_one_account_share_one_read() -> None:
    """Many tasks asking at once cause one GET, not one each: never a read per song."""
    started, release = anyio.Event(), anyio.Event()
    calls: list[str] = []

    async def read(email: str) -> float | None:
        calls.append(email)
        started.set()
        await release.wait()
        return 50.0

    balances = Balances(read=read, ledger=SpendLedger(), refresh_every=60)
    results: list[float | None] = []

    async def ask() -> None:
        results.append(await balances.refresh(EMAIL))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(ask)
            await started.wait()
            release.set()
    assert calls == [EMAIL] and results == [50.0] * 20
    await balances.refresh("other@example.com")
    assert calls == [EMAIL, "other@example.com"]  # each account on its own schedule


async def test_held_and_accepted_reservations_count_until_a_read_includes_them() -> None:
    """Held reservations always count (the server has not charged them); accepted ones count
    until a read taken after their acceptance; a release gives the room back."""
    balance = [100.0]

    async def read(email: str) -> float | None:
        return balance[0]

    ledger = SpendLedger()
    balances = Balances(read=read, ledger=ledger, min_credits_left=0, refresh_every=0)
    assert await balances.refresh(EMAIL) == 100.0
    held = ledger.reserve(10, account=EMAIL)
    accepted = ledger.reserve(20, account=EMAIL)
    elsewhere = ledger.reserve(40)  # no account named yet: cannot be placed on one
    assert balances.estimate(EMAIL) == 70.0
    accepted.accepted()
    balance[0] = 80.0  # the server charged the accepted job
    assert balances.estimate(EMAIL) == 70.0  # the old reading, minus both
    assert await balances.refresh(EMAIL) == 70.0  # the new reading, minus the held one only
    held.release()
    elsewhere.accepted(account=EMAIL)  # the API placed it on this account
    assert balances.estimate(EMAIL) == 40.0
    accepted.settle(0)  # the job was not charged after all (a moderation refusal)
    assert balances.estimate(EMAIL) == 60.0
    assert balances.may_take(EMAIL, 60.0) and not balances.may_take(EMAIL, 60.5)


async def test_an_unknown_balance_is_not_refused_here() -> None:
    """No reading, or an account in error state (no credits field): 402/596 handle those."""

    async def read(email: str) -> float | None:
        return None

    balances = Balances(read=read, ledger=SpendLedger(), min_credits_left=10)
    assert balances.may_take(EMAIL, 5.0) and balances.estimate(EMAIL) is None
    assert await balances.admits(EMAIL, 1e9)
    assert balances.balance(EMAIL) is None


def test_bad_floor_or_interval_is_refused() -> None:
    """A negative or NaN floor/interval would silently disable the check."""

    async def read(email: str) -> float | None:
        return 0.0

    with pytest.raises(ValidationError):
        Balances(read=read, ledger=SpendLedger(), min_credits_left=-1)
    with pytest.raises(ValidationError):
        Balances(read=read, ledger=SpendLedger(), refresh_every=float("nan"))
