"""fm.submit_nowait: a handle at once, before a slot is free, with its state and position."""

from __future__ import annotations

import anyio
import httpx
import pytest

from flowmusic_async import ClientClosedError, FlowMusic, SongRequest, ValidationError
from flowmusic_async.testing import SimAccount, Simulator
from flowmusic_async.testing.pytest_plugin import MakeClient, MakeSim

SCALE = 0.005
pytestmark = [
    # The library's promises hold on both of anyio's backends.
    pytest.mark.anyio_backends("asyncio", "trio"),
    # The simulators this module's tests build (flowmusic_make_sim) start from these.
    pytest.mark.flowmusic_sim(time_scale=SCALE, seed=17, account_email="queue{i}@example.com"),
]


async def until(predicate: object, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await anyio.sleep(0.005)


@pytest.mark.serial  # songs of 0.2 s: the check must run while the first one renders
@pytest.mark.anyio
async def test_it_returns_at_once_and_reports_state_and_queue_position(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """A web route answers 202 straight away; the submissions run on without it."""
    sim = flowmusic_make_sim(1)
    async with flowmusic_make_client(sim) as fm:
        one = fm.submit_nowait("first in line")
        two = fm.submit_nowait(SongRequest(prompt="second in line", instrumental=True))
        assert (one.state, two.state, one.jobid) == ("queued", "queued", None)
        # Before their tasks have run a step: their places in line are already known.
        assert (one.position, two.position) == (0, 1)
        # trio runs ready tasks in random order: either may reach the free slot first.
        await until(lambda: "accepted" in (one.state, two.state))
        running, waiting = (one, two) if one.state == "accepted" else (two, one)
        assert waiting.state == "queued" and waiting.position == 0
        assert running.jobid is not None and running.position is None
        jobs = [await one, await two]
    assert [job.is_completed for job in jobs] == [True, True]
    assert (one.state, two.state) == ("done", "done")
    assert sim.stats.responses_429 == 0 and sim.stats.jobs_created == 2


@pytest.mark.anyio
async def test_cancelling_a_queued_submission_sends_nothing(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Still waiting for a slot: cancelled before any POST, nothing paid."""
    sim = flowmusic_make_sim(1)
    async with flowmusic_make_client(sim) as fm:
        first = fm.submit_nowait("holds the slot")
        await until(lambda: first.state == "accepted")
        second = fm.submit_nowait("never sent")
        await until(lambda: second.position == 0)
        await second.cancel()
        assert second.state == "cancelled"
        with pytest.raises(ClientClosedError):
            await second.accepted()
        await first
    assert sim.stats.jobs_created == 1
    assert "never sent" not in sim.stats.accepted_prompts


@pytest.mark.anyio
async def test_cancelling_an_accepted_submission_deletes_its_job(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Accepted and running: cancel() sends DELETE /jobs/{jobid} and waits for it."""
    sim = flowmusic_make_sim(1)
    async with flowmusic_make_client(sim) as fm:
        queued = fm.submit_nowait("cancel me once running")
        await queued.accepted()
        await queued.cancel()
        assert queued.state == "cancelled"
    assert sim.stats.requests[("DELETE /jobs/{jobid}", 204)] == 1


@pytest.mark.anyio
async def test_a_bad_request_is_refused_before_anything_is_queued(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Validation happens in the call, so the route can answer 400 itself."""
    sim = flowmusic_make_sim(1)
    async with flowmusic_make_client(sim) as fm:
        with pytest.raises(ValidationError):
            fm.submit_nowait("")
        with pytest.raises(ValidationError):
            fm.submit_nowait(42)  # type: ignore[arg-type]
    assert sum(sim.stats.requests.values()) == 0


@pytest.mark.anyio
async def test_webhook_only_mode_sweeps_slowly_and_the_callbacks_end_the_waits(
    flowmusic_make_client: MakeClient,
) -> None:
    """Every pending job has a replyUrl: the callbacks settle them; sweeps are a safety net."""
    holder: dict[str, FlowMusic] = {}

    async def deliver(request: httpx.Request) -> httpx.Response:
        result = await holder["fm"].webhooks.handle(request.content)
        return httpx.Response(result.http_status)

    account = SimAccount(email="hooks@example.com", max_jobs=4, credits=10_000.0)
    sim = Simulator(
        accounts=(account,),
        time_scale=SCALE,
        seed=19,
        webhook_transport=httpx.MockTransport(deliver),
    )
    async with sim, flowmusic_make_client(sim) as fm:
        holder["fm"] = fm
        with anyio.fail_after(10):
            jobs = [
                await fm.generate(f"called back {i}", reply_url="https://hooks.example.com/fm")
                for i in range(2)
            ]
    assert all(job.is_completed for job in jobs)
    assert sim.stats.webhooks_delivered == 2
    # A song takes 40-150 s of API time; polling every 3 s would sweep ~13-50 times per song.
    # Here: the first look at the accounts' jobs, then at most two safety sweeps per song.
    assert sim.stats.requests[("GET /jobs", 200)] <= 1 + 2 * len(jobs)


@pytest.mark.anyio
async def test_a_song_pinned_to_another_account_is_not_behind_one_still_on_its_way(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Places in line before the tasks run count only songs that want the same slots, as
    the scheduler's own line does: one pinned to account B waits behind nobody pinned to A."""
    sim = flowmusic_make_sim(1, 1, account_email="pin{i}@example.com")
    async with flowmusic_make_client(sim) as fm:
        on_a = fm.submit_nowait(SongRequest(prompt="on A", email="pin0@example.com"))
        on_b = fm.submit_nowait(SongRequest(prompt="on B", email="pin1@example.com"))
        also_a = fm.submit_nowait(SongRequest(prompt="on A too", email="pin0@example.com"))
        anywhere = fm.submit_nowait("any account")
        assert (on_a.position, on_b.position, also_a.position, anywhere.position) == (0, 0, 1, 0)
        jobs = [await on_a, await on_b, await also_a, await anywhere]
    assert all(job.is_completed for job in jobs)
    assert sim.stats.jobs_created == 4 and sim.stats.responses_429 == 0
