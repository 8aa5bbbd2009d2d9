"""The job engine against the simulator: placement, polling, reconciling, cancelling, deadlines."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from mock_api import TOKEN

from flowmusic_async import (
    AuthenticationError,
    ClientClosedError,
    Event,
    FlowMusic,
    InsufficientCreditsError,
    JobFailed,
    JobTimeout,
    SubmissionUncertain,
    Timing,
)
from flowmusic_async.testing import Faults, SimAccount, Simulator
from flowmusic_async.testing.pytest_plugin import MakeClient, MakeSim

SCALE = 0.002  # a 40-150 s song takes 80-300 ms
# The simulators this module's tests build (flowmusic_make_sim) start from these.
pytestmark = pytest.mark.flowmusic_sim(
    time_scale=SCALE, seed=7, account_email="acct{i}@example.com"
)


def count(sim: Simulator, endpoint: str, status: int | None = None) -> int:
    return sum(
        n for (ep, st), n in sim.stats.requests.items() if ep == endpoint and status in (None, st)
    )


async def generate_all(fm: FlowMusic, prompts: Sequence[str]) -> list[Any]:
    results: list[Any] = [None] * len(prompts)

    async def one(i: int, prompt: str) -> None:
        try:
            results[i] = await fm.generate(prompt)
        except Exception as error:  # collected and asserted on by the caller
            results[i] = error

    async with anyio.create_task_group() as tg:
        for i, prompt in enumerate(prompts):
            tg.start_soon(one, i, prompt)
    return results


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
async def test_lost_post_responses_never_cause_a_duplicate_charge(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Credits are money: 10% of POSTs lose their answer after the job exists; none paid twice."""
    sim = flowmusic_make_sim(
        10, 10, 10, 10, 10, time_scale=0.01, faults=Faults(lost_response_rate=0.1)
    )
    prompts = [f"lost-response song {i}" for i in range(200)]
    async with flowmusic_make_client(sim) as fm:
        results = await generate_all(fm, prompts)
    failures = [r for r in results if isinstance(r, Exception)]
    assert not failures, failures[:3]
    assert sim.stats.lost_responses > 5  # the fault really fired
    assert sim.stats.duplicate_submissions == 0
    assert set(sim.stats.accepted_prompts.values()) == {1}
    assert sorted(sim.stats.accepted_prompts) == sorted(prompts)


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
        capacity = fm.capacity()
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
async def test_waiting_costs_one_sweep_per_interval_not_one_request_per_job(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """One poller: 40 pending jobs cost about the same polling as one."""
    sim = flowmusic_make_sim(10, 10, 10, 10)
    async with flowmusic_make_client(sim) as fm:
        results = await generate_all(fm, [f"cheap {i}" for i in range(40)])
    assert all(r.is_completed for r in results)
    per_job_reads = count(sim, "GET /jobs/{jobid}")
    sweeps = count(sim, "GET /jobs")
    assert per_job_reads <= 40 + 4  # about one final read per job
    # Songs last 40-150 scaled seconds and all run at once: a sweep every 3 scaled seconds.
    assert sweeps <= (150 - 20) / 3 + 6
    # Everything else is one POST and one GET /accounts now and then: nothing per job per tick.
    total = sum(sim.stats.requests.values())
    assert total <= 40 + per_job_reads + sweeps + count(sim, "GET /accounts")


@pytest.mark.serial
@pytest.mark.anyio
@pytest.mark.parametrize("bookkeeping_s", [0.0, 0.004])
async def test_sweeps_are_spaced_out_when_their_bookkeeping_would_fill_the_loop(
    bookkeeping_s: float,
    monkeypatch: pytest.MonkeyPatch,
    flowmusic_make_sim: MakeSim,
    flowmusic_make_client: MakeClient,
) -> None:
    """A sweep may take 1/100 of the time between sweeps: 4 ms of reconciling stretches a
    25 ms interval to its cap of 4 x 25 ms; cheap sweeps keep the interval as configured."""
    # a song lasts 2 s or more: pending for the whole window
    sim = flowmusic_make_sim(4, time_scale=0.05)
    timing = msgspec.structs.replace(
        Timing.scaled(0.05), poll_interval=0.025, poll_jitter=0.0, first_check_after=0.0
    )
    async with flowmusic_make_client(sim, timing=timing) as fm:
        reconcile = fm._engine.scheduler.reconcile

        def slow_reconcile(*args: Any, **kwargs: Any) -> None:
            time.sleep(bookkeeping_s)  # blocks the loop, as a sweep of many jobs does
            reconcile(*args, **kwargs)

        monkeypatch.setattr(fm._engine.scheduler, "reconcile", slow_reconcile)
        handle = await fm.submit("a long wait")
        before = count(sim, "GET /jobs")
        await anyio.sleep(1.0)
        sweeps = count(sim, "GET /jobs") - before
        await handle.cancel()
    if bookkeeping_s:
        assert 6 <= sweeps <= 12  # every ~0.1 s (capped: 100 x 4 ms would be 0.4 s)
    else:
        assert sweeps >= 25  # every ~25 ms


@pytest.mark.anyio
async def test_a_moderated_prompt_is_final_and_sent_once(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """A refusal is never retried: the prompt must change, and each try would be another song.

    In async mode (the engine's) the POST is accepted and the job renders, then ends failed
    with moderation_reject, so the refusal arrives from a poll as JobFailed with the record.
    """
    sim = flowmusic_make_sim(2)
    seen: list[Event] = []
    async with flowmusic_make_client(sim, event_hooks=[seen.append]) as fm:
        with pytest.raises(JobFailed) as caught:
            await fm.generate("[moderate] something the model refuses")
    assert caught.value.code == "moderation_reject"
    assert caught.value.job.status == "failed" and caught.value.jobid == caught.value.job.jobid
    assert count(sim, "POST /music") == 1 and count(sim, "POST /music", 201) == 1
    assert seen[-1].kind == "failed" and seen[-1].detail == "moderation_reject"
    assert seen[-1].client_ref == seen[0].client_ref  # observers can close that submission


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
async def test_a_burst_of_429_is_waited_out_with_backoff(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """429 is handled with jittered backoff (Retry-After first), then the job goes through."""
    sim = flowmusic_make_sim(2, faults=Faults(burst_429=3))
    seen: list[Event] = []
    async with flowmusic_make_client(sim, event_hooks=[seen.append]) as fm:
        job = await fm.generate("patient")
    assert job.is_completed
    assert sim.stats.responses_429 == 3
    assert [e.kind for e in seen].count("retrying") == 3
    assert count(sim, "POST /music", 201) == 1


@pytest.mark.anyio
async def test_an_undecidable_post_raises_submission_uncertain_and_is_not_resent(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """When the answer is lost and the job list cannot be read, we stop and say so."""
    sim = flowmusic_make_sim(
        2, faults=Faults(lost_response_rate=1.0, error_rate={"GET /jobs": 1.0})
    )
    async with flowmusic_make_client(sim, max_retries=0) as fm:
        with pytest.raises(SubmissionUncertain) as caught:
            await fm.generate("unknowable")
    assert caught.value.client_ref and caught.value.client_ref.startswith("fma:")
    assert caught.value.email == "acct0@example.com"
    assert count(sim, "POST /music") == 1  # never blindly resent
    assert sim.stats.jobs_created == 1


@pytest.mark.anyio
async def test_a_post_refused_before_processing_is_proven_absent_and_resent(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """A 500 that created nothing is reconciled (not found while it must be listed) and resent."""
    sim = flowmusic_make_sim(2, faults=Faults(error_rate={"POST /music": 1.0}))
    seen: list[Event] = []

    def heal_after_reconciling(event: Event) -> None:
        seen.append(event)
        if event.kind == "reconciled":
            sim.faults.error_rate = {}

    async with flowmusic_make_client(sim, event_hooks=[heal_after_reconciling]) as fm:
        job = await fm.generate("second time lucky")
    assert job.is_completed
    assert count(sim, "POST /music", 500) == 1
    assert any(e.kind == "reconciled" for e in seen)
    assert sim.stats.jobs_created == 1 and sim.stats.duplicate_submissions == 0


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
        assert fm.capacity()["acct0@example.com"].in_flight == 0
        running = await fm.jobs.list()
    assert not running.get("acct0@example.com") or running["acct0@example.com"].running == 0


@pytest.mark.anyio
async def test_cancelling_one_waiter_leaves_the_other_waiting(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Cancelling one waiter never stops the shared poller or other waiters."""
    sim = flowmusic_make_sim(1)
    async with flowmusic_make_client(sim) as fm:
        handle = await fm.submit("shared")
        with anyio.move_on_after(0.001):
            await fm.wait(handle.jobid)
        job = await fm.wait(handle.jobid)
        assert (await handle).jobid == job.jobid
    assert job.is_completed


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
async def test_closing_the_client_fails_outstanding_waits_clearly(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Clean shutdown: a wait in flight ends with ClientClosedError, not a hang."""
    sim = flowmusic_make_sim(1, time_scale=1.0)
    outcome: list[BaseException] = []
    waiting = anyio.Event()
    async with anyio.create_task_group() as tg, flowmusic_make_client(sim) as fm:
        handle = await fm.submit("never finishes in time")

        async def waiter() -> None:
            waiting.set()
            try:
                await handle
            except ClientClosedError as error:
                outcome.append(error)

        tg.start_soon(waiter)
        await waiting.wait()
    assert outcome and isinstance(outcome[0], ClientClosedError)


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
async def test_a_webhook_wakes_the_waiter_before_the_next_sweep(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """A verified callback settles the wait at once; forged or broken ones do nothing."""
    received: list[bytes] = []
    arrived = anyio.Event()

    async def deliver(request: httpx.Request) -> httpx.Response:
        received.append(await request.aread())
        arrived.set()
        return httpx.Response(200)

    sim = flowmusic_make_sim(1, webhook_transport=httpx.MockTransport(deliver))
    slow_polling = msgspec.structs.replace(Timing.scaled(SCALE), poll_interval=3600.0)
    async with sim, flowmusic_make_client(sim, timing=slow_polling) as fm:
        handle = await fm.submit("called back", reply_url="https://hooks.example.com/fm")
        forged = msgspec.json.encode({"jobid": handle.jobid, "replyRef": "fma:forged"})
        assert (await fm.webhooks.handle(forged)).accepted is False
        assert (await fm.webhooks.handle(b"{not json")).http_status == 400
        assert (await fm.webhooks.handle(b" " * 10_000_000)).http_status == 413
        with anyio.fail_after(5):
            await arrived.wait()
        result = await fm.webhooks.handle(received[0])
        assert result.accepted and result.status == "completed"
        with anyio.fail_after(1):
            job = await handle
    assert job.is_completed


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


class _TimeoutOnPost(httpx.AsyncBaseTransport):
    """The simulator, except that every job POST times out on our side before any answer."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.posts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/music"):
            self.posts += 1
            raise httpx.ReadTimeout("timed out waiting for the answer", request=request)
        return await self.inner.handle_async_request(request)


@pytest.mark.anyio
async def test_a_post_that_timed_out_on_our_side_is_never_resent(
    flowmusic_make_sim: MakeSim,
) -> None:
    """After our own timeout the server may still create the job: not finding it proves nothing."""
    sim = flowmusic_make_sim(2)
    transport = _TimeoutOnPost(sim.transport())
    fm = FlowMusic(
        token=sim.token, base_url=sim.base_url, transport=transport, timing=Timing.scaled(SCALE)
    )
    async with fm:
        with pytest.raises(SubmissionUncertain) as caught:
            await fm.generate("slow server")
    assert transport.posts == 1
    assert "ReadTimeout" in str(caught.value)


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
async def test_without_the_running_list_jobs_are_read_one_by_one(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """When GET /jobs keeps failing, the poller falls back to reading each job that may be done."""
    sim = flowmusic_make_sim(2, 2, faults=Faults(error_rate={"GET /jobs": 1.0}))
    async with flowmusic_make_client(sim, max_retries=0) as fm:
        results = await generate_all(fm, [f"fallback {i}" for i in range(4)])
    assert all(r.is_completed for r in results)
    assert count(sim, "GET /jobs", 200) == 0
    assert count(sim, "GET /jobs/{jobid}", 200) >= 4
    assert sim.stats.responses_429 == 0


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
        await fm._engine.refresh_accounts()
    assert most == 2  # both reads were on their way at once

    def unauthorized(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "Unauthorized"})

    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug in a transport")

    for handler, expected in ((unauthorized, AuthenticationError), (broken, RuntimeError)):
        async with FlowMusic(token=TOKEN, transport=httpx.MockTransport(handler)) as fm:
            with pytest.raises(expected):
                await fm._engine.refresh_accounts()
