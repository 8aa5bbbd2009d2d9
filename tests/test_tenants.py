"""Tenants: fair queues, caps, cancelling a tenant's queued songs, and the capacity snapshot,
judged by what the simulator itself saw."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anyio
import pytest

from flowmusic_async import (
    AccountJobs,
    ClientClosedError,
    Event,
    FlowMusic,
    QueuedJob,
    SongRequest,
    Timing,
    ValidationError,
)
from flowmusic_async._scheduler import Scheduler
from flowmusic_async.testing import SimAccount, Simulator

SCALE = 0.001  # a 40-150 s song renders in 0.04-0.15 s


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The library's promises hold on both of anyio's backends."""
    return str(request.param)


def make_sim(max_jobs: int = 16, accounts: int = 1) -> Simulator:
    return Simulator(
        accounts=tuple(
            SimAccount(email=f"fair{i}@example.com", max_jobs=max_jobs, credits=1e9)
            for i in range(accounts)
        ),
        time_scale=SCALE,
        seed=26,
    )


def client(sim: Simulator, events: list[Event], **options: Any) -> FlowMusic:
    return FlowMusic(
        token=sim.token,
        base_url=sim.base_url,
        transport=sim.transport(),
        timing=Timing.scaled(SCALE),
        event_hooks=[events.append],
        **options,
    )


async def until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.001)


def jobs_of(events: list[Event], tenant: str | None) -> list[str]:
    return [e.jobid for e in events if e.kind == "submitted" and e.tenant == tenant and e.jobid]


def most_at_once(sim: Simulator, jobids: list[str]) -> int:
    """The most of `jobids` the simulator ran at the same time (its own start and end times)."""
    edges = sorted(
        [(sim.stats.jobs[j].created, 1) for j in jobids]
        + [(sim.stats.jobs[j].finished, -1) for j in jobids]
    )
    running = peak = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.serial
@pytest.mark.anyio
@pytest.mark.parametrize("cap", [None, 4])
async def test_a_second_tenant_is_served_at_the_next_free_slots_not_after_the_first_queue(
    cap: int | None,
) -> None:
    """A queues 500 songs on 16 slots, then B queues 2: B's songs take the next two slots to
    free, not the 501st and 502nd; with a cap of 4, A never runs more than 4 at once (seen by
    the simulator), and B still gets its slots."""
    sim = make_sim()
    events: list[Event] = []
    async with client(sim, events, tenant_max_jobs=cap) as fm:
        a_songs = [fm.submit_nowait(f"a {i}", tenant="A") for i in range(500)]
        # Every song of A has reached the scheduler (under trio they start in random order).
        await until(lambda: sum(e.kind == "queued" for e in events) == 500)
        assert fm.capacity().queued > 400
        b_songs: list[QueuedJob] = [fm.submit_nowait(f"b {i}", tenant="B") for i in range(2)]
        # Once both of B's songs wait in the scheduler, the next slots handed out are theirs.
        await until(lambda: all(q.position is not None or q.jobid for q in b_songs))
        placed_before = len([e for e in events if e.kind == "placed"])
        assert [q.position for q in b_songs if q.jobid is None] in ([0, 1], [0], [])
        jobs = [await q for q in b_songs]
        placed_after = [e.tenant for e in events if e.kind == "placed"][placed_before:]
        for song in a_songs:
            await song
    assert all(job.is_completed for job in jobs)
    b_jobids = jobs_of(events, "B")
    a_jobids = jobs_of(events, "A")
    assert len(b_jobids) == 2 and len(a_jobids) == 500
    # The client's own order: B's songs not yet placed were among the next placements. A
    # slot handed to A just before B arrived says "placed" when A's task next runs, which
    # under trio's random order may come after B's: at most the slots there are.
    b_left = placed_after.count("B")
    assert "B" not in placed_after[b_left + (cap or 16) :]
    # The simulator's order: B's jobs follow each other, with at most the slots already
    # reserved for A when B arrived in between, and long before A's queue ran out.
    order = [jobid for _, jobid in sorted((t.created, j) for j, t in sim.stats.jobs.items())]
    first_b = min(order.index(j) for j in b_jobids)
    assert max(order.index(j) for j in b_jobids) <= first_b + 1 + (cap or 16)
    assert first_b < 500  # not behind A's queue
    if cap is not None:
        assert most_at_once(sim, a_jobids) <= cap
        assert sim.stats.peak_running["fair0@example.com"] <= 16
    assert sim.stats.responses_429 == 0 and sim.stats.duplicate_submissions == 0


@pytest.mark.anyio
async def test_cancel_queued_stops_a_tenant_songs_not_yet_sent_and_nothing_is_paid() -> None:
    """A bot's "stop my songs": free (nothing sent) and immediate; other tenants' songs and the
    tenant's songs already running go on."""
    sim = make_sim(max_jobs=2)
    events: list[Event] = []
    async with client(sim, events) as fm:
        running = [fm.submit_nowait(f"first {i}", tenant="guild-1") for i in range(2)]
        await until(lambda: all(q.jobid for q in running))
        queued = [fm.submit_nowait(f"more {i}", tenant="guild-1") for i in range(5)]
        other = fm.submit_nowait(SongRequest(prompt="someone else"), tenant="guild-2")
        await until(lambda: fm.capacity().queued == 6)
        created = sim.stats.jobs_created
        assert fm.cancel_queued("guild-1") == 5
        for song in queued:
            with pytest.raises(ClientClosedError, match="stopped before it was sent"):
                await song
        assert (await other).is_completed
        assert all([(await song).is_completed for song in running])
        assert fm.cancel_queued("guild-1") == 0  # nothing left to stop
        again = await fm.generate("after the stop", tenant="guild-1")  # the tenant goes on
    assert again.is_completed
    assert sim.stats.jobs_created == created + 2  # guild-2's song and the new one; none of the 5
    cancelled = [e for e in events if e.kind == "cancelled"]
    assert len(cancelled) == 5 and {e.tenant for e in cancelled} == {"guild-1"}


@pytest.mark.anyio
async def test_every_event_of_a_submission_carries_its_tenant() -> None:
    """Observers (metrics, spend) group by tenant: no event of a tenant's song may lack it."""
    sim = make_sim(max_jobs=4)
    events: list[Event] = []
    async with client(sim, events) as fm:
        await fm.generate("tagged", tenant="user-7")
        async with fm.generate_many(["batch 1", "batch 2"], tenant="user-8") as outcomes:
            assert all([outcome.ok async for outcome in outcomes])
    by_ref: dict[str | None, set[str | None]] = {}
    for event in events:
        by_ref.setdefault(event.client_ref, set()).add(event.tenant)
    assert sorted(str(tenant) for tenants in by_ref.values() for tenant in tenants) == [
        "user-7",
        "user-8",
        "user-8",
    ]
    kinds = {e.kind for e in events if e.tenant == "user-7"}
    assert {"queued", "placed", "submitting", "submitted", "completed"} <= kinds


@pytest.mark.serial
@pytest.mark.anyio
async def test_the_capacity_snapshot_agrees_with_the_simulator_at_every_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At every GET /jobs sweep the snapshot counts every job the simulator listed, never more
    than maxJobs in flight, no other process's jobs (there are none) beyond our POSTs on their
    way, and maxJobs as the simulator has it. 300 songs on 2 accounts here, on both backends;
    2,000 (14 s a run on 2 busy cores) is `python -m benchmarks.bench_fairness
    --capacity-check 2000`, kept out of the suite."""
    sim = make_sim(max_jobs=6, accounts=2)
    events: list[Event] = []
    checked: list[int] = []
    fm = client(sim, events)
    original = Scheduler.reconcile

    def reconcile_and_check(
        self: Scheduler, running: Mapping[str, AccountJobs], *, swept_at: float
    ) -> list[str]:
        ended = original(self, running, swept_at=swept_at)
        if self is not fm._submitter.scheduler:
            return ended
        snapshot = fm.capacity()
        for email, usage in snapshot.accounts.items():
            listed = running[email].jobs if email in running else ()
            assert usage.max_jobs == 6 and usage.health == "ok"
            assert usage.running_ours + usage.running_others >= len(listed)
            assert usage.running_others <= usage.reserved
            assert usage.in_flight <= usage.max_jobs
            assert usage.free == usage.max_jobs - usage.in_flight
        assert snapshot.queued == sum(t.queued for t in snapshot.tenants)
        checked.append(len(running))
        return ended

    monkeypatch.setattr(Scheduler, "reconcile", reconcile_and_check)
    async with fm:
        songs = [fm.submit_nowait(f"song {i}", tenant=f"t{i % 3}") for i in range(300)]
        await until(lambda: fm.capacity().render_seconds is not None)
        later = fm.submit_nowait("late", tenant="t0")
        await until(lambda: later.position is not None or later.jobid is not None)
        estimate = later.estimated_start
        assert later.jobid is not None or (estimate is not None and estimate >= 0)
        for song in [*songs, later]:
            await song
        final = fm.capacity()
    assert len(checked) >= 10
    assert final.queued == 0 and final.tenants == ()
    assert all(u.in_flight == 0 and u.free == 6 for u in final.accounts.values())
    # Songs render 40-150 simulated seconds: what the client measured is within that, scaled.
    assert final.render_seconds is not None and final.render_seconds >= 40 * SCALE
    assert sim.stats.responses_429 == 0


@pytest.mark.anyio
async def test_a_tenant_that_is_not_a_string_is_refused_before_anything_is_sent() -> None:
    """A guild id passed as an int would make two tenants of one guild: refused, named."""
    sim = make_sim()
    async with client(sim, []) as fm:
        with pytest.raises(ValidationError, match="tenant"):
            await fm.generate("x", tenant=1234)  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="tenant"):
            fm.cancel_queued(None)  # type: ignore[arg-type]
        assert fm.cancel_queued("nobody") == 0
    assert sim.stats.jobs_created == 0
