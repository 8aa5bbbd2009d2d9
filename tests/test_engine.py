"""The job engine against the simulator: placement, capacity, cancelling, deadlines, events.

The poller's, the paid POST's, the host's and webhooks' own behaviour is proven in
test_poller.py, test_paid_post.py, test_host.py and test_webhooks.py."""

from __future__ import annotations

import anyio
import httpx
import pytest
from mock_api import TOKEN
from sim_helpers import count, generate_all

from flowmusic_async import (
    AuthenticationError,
    Event,
    FlowMusic,
    InsufficientCreditsError,
    JobFailed,
    JobTimeout,
)
from flowmusic_async.testing import Faults, SimAccount, Simulator
from flowmusic_async.testing.pytest_plugin import MakeClient, MakeSim

SCALE = 0.002  # a 40-150 s song takes 80-300 ms
# The simulators this module's tests build (flowmusic_make_sim) start from these.
pytestmark = pytest.mark.flowmusic_sim(
    time_scale=SCALE, seed=7, account_email="acct{i}@example.com"
)


@pytest.mark.anyio
async def test_generate_returns_the_completed_job_with_its_clips(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """The one-call path: submit in async mode, wait, get the clips."""
    sim = flowmusic_make_sim(2)
    async with flowmusic_make_client(sim) as fm:
        job = await fm.generate("uplifting synthwave with female vocals")
    assert job.is_completed and job.clips
    assert job.request["mode"] == "async"
    assert all(clip.audio_url for clip in job.clips)


@pytest.mark.anyio
async def test_sixty_songs_on_three_accounts_never_meet_a_429_and_fill_every_slot(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Capacity is respected, not discovered by errors: 0 answers of 429, every slot used."""
    sim = flowmusic_make_sim(2, 3, 4)
    async with flowmusic_make_client(sim) as fm:
        results = await generate_all(fm, [f"song {i}" for i in range(60)])
    assert all(not isinstance(r, Exception) and r.is_completed for r in results), results
    assert sim.stats.responses_429 == 0
    assert sim.stats.peak_running == {
        "acct0@example.com": 2,
        "acct1@example.com": 3,
        "acct2@example.com": 4,
    }


@pytest.mark.anyio
async def test_an_account_out_of_credits_and_one_broken_mid_run_are_routed_around(
    flowmusic_make_client: MakeClient,
) -> None:
    """402 and 596 take one account out of rotation each; every song completes elsewhere."""
    accounts = (
        SimAccount(email="poor@example.com", max_jobs=3, credits=30.0),  # three songs' worth
        SimAccount(email="flaky@example.com", max_jobs=3, credits=10_000.0),
        SimAccount(email="solid@example.com", max_jobs=3, credits=10_000.0),
    )
    sim = Simulator(
        accounts=accounts,
        time_scale=SCALE,
        seed=3,
        song_credits=10.0,
        faults=Faults(account_error_after={"flaky@example.com": 4}),
    )
    async with flowmusic_make_client(sim) as fm:
        results = await generate_all(fm, [f"routed {i}" for i in range(30)])
        capacity = fm.capacity().accounts
    assert all(not isinstance(r, Exception) for r in results), results
    assert count(sim, "POST /music", 402) >= 1
    # The broken account is learned from a 596, or earlier from GET /accounts: at most one POST.
    assert count(sim, "POST /music", 596) <= 1
    assert not capacity["poor@example.com"].healthy
    assert not capacity["flaky@example.com"].healthy
    assert capacity["solid@example.com"].healthy


@pytest.mark.anyio
async def test_no_funded_account_left_raises_insufficient_credits(
    flowmusic_make_client: MakeClient,
) -> None:
    """402 everywhere is final: the error says so instead of retrying forever."""
    sim = Simulator(
        accounts=(SimAccount(email="broke@example.com", max_jobs=2, credits=0.0),),
        time_scale=SCALE,
    )
    async with flowmusic_make_client(sim) as fm:
        with pytest.raises(InsufficientCreditsError) as caught:
            await fm.generate("no money")
    assert caught.value.email == "broke@example.com"


@pytest.mark.anyio
async def test_a_failed_job_raises_job_failed_with_its_record(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """A job that ends failed is an error carrying the record, jobid and account."""
    sim = flowmusic_make_sim(2, job_failure_rate=1.0)
    async with flowmusic_make_client(sim) as fm:
        with pytest.raises(JobFailed) as caught:
            await fm.generate("doomed")
    error = caught.value
    assert error.job.status == "failed" and error.jobid == error.job.jobid
    assert error.code == "moderation_reject" and error.email == "acct0@example.com"


@pytest.mark.anyio
async def test_cancelling_generate_cancels_the_job_server_side_and_frees_its_slot(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Cancellation does the right thing: DELETE /jobs/{jobid}, and the slot is free again."""
    sim = flowmusic_make_sim(1, time_scale=0.05)
    submitted = anyio.Event()

    def on_event(event: Event) -> None:
        if event.kind == "submitted":
            submitted.set()

    async with flowmusic_make_client(sim, event_hooks=[on_event]) as fm:
        async with anyio.create_task_group() as tg:
            tg.start_soon(fm.generate, "to be cancelled")
            with anyio.fail_after(5):
                await submitted.wait()
            tg.cancel_scope.cancel()
        assert count(sim, "DELETE /jobs/{jobid}", 204) == 1
        assert fm.capacity().accounts["acct0@example.com"].in_flight == 0
        running = await fm.jobs.list()
    assert not running.get("acct0@example.com") or running["acct0@example.com"].running == 0


@pytest.mark.anyio
async def test_a_deadline_raises_job_timeout_and_leaves_the_job_running(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """JobTimeout carries the jobid; the job keeps running and can be awaited again."""
    sim = flowmusic_make_sim(1)
    async with flowmusic_make_client(sim) as fm:
        handle = await fm.submit("slow", deadline=0.001)
        with pytest.raises(JobTimeout) as caught:
            await handle
        assert caught.value.jobid == handle.jobid
        assert count(sim, "DELETE /jobs/{jobid}") == 0
        job = await fm.wait(handle.jobid)
    assert job.is_completed


@pytest.mark.anyio
async def test_wait_attaches_to_a_job_submitted_by_another_client(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """fm.wait(jobid) picks up a job from an earlier process by its id."""
    sim = flowmusic_make_sim(2)
    async with flowmusic_make_client(sim) as first:
        handle = await first.submit("handed over")
        jobid = handle.jobid
    async with flowmusic_make_client(sim) as second:
        job = await second.wait(jobid)
    assert job.jobid == jobid and job.is_completed


@pytest.mark.anyio
async def test_an_edit_runs_on_its_clip_account_and_is_counted_there(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Edits go to the clip's own account, whose slots the scheduler counts."""
    sim = flowmusic_make_sim(1, 1)
    async with flowmusic_make_client(sim) as fm:
        song = await fm.generate("source", email="acct1@example.com")
        edited = await fm.edit(
            "extend", song.clips[0].clip, instruction="add an outro", extend_s=20
        )
    assert edited.email == "acct1@example.com" and edited.operation == "extend"
    assert edited.is_completed


@pytest.mark.anyio
async def test_events_trace_a_job_from_queue_to_completion(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Observers see every step, with jobid and account, in order."""
    sim = flowmusic_make_sim(1)
    seen: list[Event] = []
    async with flowmusic_make_client(sim, event_hooks=[seen.append]) as fm:
        job = await fm.generate("observed")
    kinds = [e.kind for e in seen]
    assert kinds == ["queued", "placed", "submitting", "submitted", "completed"]
    assert seen[-1].jobid == job.jobid and seen[1].email == "acct0@example.com"


@pytest.mark.anyio
async def test_without_an_account_list_the_server_chooses(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """When GET /accounts fails, placement falls back to the server (no email sent)."""
    sim = flowmusic_make_sim(2, faults=Faults(error_rate={"GET /accounts": 1.0}))
    async with flowmusic_make_client(sim, max_retries=0) as fm:
        job = await fm.generate("anywhere")
    assert job.is_completed and "email" not in job.request


@pytest.mark.anyio_backends("trio")
@pytest.mark.anyio
async def test_the_engine_runs_under_trio(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Sleeping and synchronising only through anyio keeps the library runnable under trio."""
    sim = flowmusic_make_sim(2)
    async with flowmusic_make_client(sim) as fm:
        results = await generate_all(fm, ["trio one", "trio two", "trio three"])
    assert all(r.is_completed for r in results)


@pytest.mark.anyio
async def test_jobs_of_another_process_are_counted_before_the_first_placement(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Capacity is respected from the start: slots held by others are never probed with a 429."""
    sim = flowmusic_make_sim(2, 2)
    async with flowmusic_make_client(sim) as other:
        for i in range(2):  # another process fills acct0
            await other.music.create(f"someone else's {i}", mode="async", email="acct0@example.com")
    async with flowmusic_make_client(sim) as fm:
        results = await generate_all(fm, [f"mine {i}" for i in range(6)])
    assert all(r.is_completed for r in results)
    assert sim.stats.responses_429 == 0
    assert sim.stats.peak_running == {"acct0@example.com": 2, "acct1@example.com": 2}


@pytest.mark.anyio
async def test_the_token_never_reaches_the_logs(
    caplog: pytest.LogCaptureFixture, flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Every log line of a run with retries, reconciling and failures stays free of the token."""
    sim = flowmusic_make_sim(
        2, faults=Faults(lost_response_rate=0.5, error_rate={"GET /jobs": 0.3})
    )
    caplog.set_level("DEBUG")
    async with flowmusic_make_client(sim) as fm:
        await generate_all(fm, [f"logged {i}" for i in range(6)])
        with pytest.raises(JobFailed):
            await fm.generate("[moderate] logged refusal")
        assert sim.token not in repr(fm)
    assert caplog.records  # the run did log (httpx, retries), so the check below means something
    assert all(sim.token not in record.getMessage() for record in caplog.records)


@pytest.mark.anyio
async def test_the_first_two_reads_run_at_once_and_their_errors_reach_the_caller_as_such() -> None:
    """The first GET /accounts and GET /jobs are read together (one round trip before the
    first POST); a 401 still reaches the caller as AuthenticationError and a bug as its own
    exception, not wrapped in the ExceptionGroup of the task group that runs the two reads."""
    in_flight = 0
    most = 0

    async def slow_ok(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await anyio.sleep(0.05)
        in_flight -= 1
        return httpx.Response(200, json={})  # no accounts, no running jobs

    async with FlowMusic(token=TOKEN, transport=httpx.MockTransport(slow_ok)) as fm:
        await fm._submitter.refresh_accounts()
    assert most == 2  # both reads were on their way at once

    def unauthorized(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "Unauthorized"})

    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug in a transport")

    for handler, expected in ((unauthorized, AuthenticationError), (broken, RuntimeError)):
        async with FlowMusic(token=TOKEN, transport=httpx.MockTransport(handler)) as fm:
            with pytest.raises(expected):
                await fm._submitter.refresh_accounts()
