"""The paid POST (flowmusic_async/_paid_post.py): never resent blindly. A lost or unreadable
answer is reconciled, a refusal is final, a 429 is placed again, and an answer that cannot be
decided ends in SubmissionUncertain."""

from __future__ import annotations

import anyio
import httpx
import pytest
from sim_helpers import INVALID_UTF8, TOO_DEEP, Rewriting, count, first_n, generate_all

from flowmusic_async import Event, FlowMusic, JobFailed, SubmissionUncertain, Timing
from flowmusic_async.testing import Faults
from flowmusic_async.testing.pytest_plugin import MakeClient, MakeSim

SCALE = 0.002  # a 40-150 s song takes 80-300 ms
# The simulators this module's tests build (flowmusic_make_sim) start from these.
pytestmark = pytest.mark.flowmusic_sim(
    time_scale=SCALE, seed=7, account_email="acct{i}@example.com"
)


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


@pytest.mark.anyio_backends("asyncio", "trio")
@pytest.mark.flowmusic_sim(seed=13, account_email="hostile{i}@example.com")
@pytest.mark.parametrize("body", [INVALID_UTF8, TOO_DEEP])
@pytest.mark.anyio
async def test_an_unreadable_answer_to_the_paid_post_is_reconciled_not_resent(
    body: bytes, flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """The job exists and is charged; its answer is garbage: found by reference, paid once."""
    sim = flowmusic_make_sim(2)
    transport = Rewriting(sim.transport(), first_n(1, "POST /v1/flowmusic/music", body))
    fm = flowmusic_make_client(sim, transport=transport)
    async with fm:
        with anyio.fail_after(20):
            job = await fm.generate("garbled answer")
    assert transport.rewritten == 1
    assert job.is_completed
    assert sim.stats.jobs_created == 1 and sim.stats.accepted_prompts["garbled answer"] == 1
