"""Batches: one outcome per request, crash-proof resumption, stopping only when nothing can work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from server_view import server_states

from flowmusic_async import (
    BatchAborted,
    Event,
    Failed,
    FlowMusic,
    Journal,
    Outcome,
    Timing,
    ValidationError,
)
from flowmusic_async.testing import SimAccount, Simulator
from flowmusic_async.testing.pytest_plugin import MakeClient, MakeSim

SCALE = 0.002
# The simulators this module's tests build (flowmusic_make_sim) start from these.
pytestmark = pytest.mark.flowmusic_sim(
    time_scale=SCALE, seed=11, account_email="batch{i}@example.com"
)


async def collect(fm: FlowMusic, requests: list[Any], **kwargs: Any) -> list[Outcome]:
    async with fm.generate_many(requests, **kwargs) as outcomes:
        return [outcome async for outcome in outcomes]


@pytest.mark.anyio
async def test_every_request_ends_in_exactly_one_outcome(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Nothing is lost: songs, a moderated prompt and a bad request each get one outcome."""
    sim = flowmusic_make_sim(2, 2)
    requests: list[Any] = [f"batch song {i}" for i in range(8)]
    requests += [
        "[moderate] refused",
        {"prompt": "x", "instrumental": True, "lyrics": "la"},
        {"bogus": 1},
    ]
    async with flowmusic_make_client(sim) as fm:
        outcomes = await collect(fm, requests)
    assert sorted(o.index for o in outcomes) == list(range(len(requests)))
    by_index = {o.index: o for o in outcomes}
    assert all(by_index[i].ok for i in range(8))
    # A moderated prompt is accepted, renders, then fails (moderation_reject), as on the API.
    assert type(by_index[8].error).__name__ == "JobFailed"
    assert getattr(by_index[8].error, "code", None) == "moderation_reject"
    assert isinstance(by_index[9].error, ValidationError) and by_index[9].error.field == "lyrics"
    assert isinstance(by_index[10].error, ValidationError) and by_index[10].error.field == "bogus"
    assert sim.stats.responses_429 == 0
    assert sum(sim.stats.accepted_prompts.values()) == 8  # invalid requests cost nothing


@pytest.mark.anyio
async def test_the_same_prompt_twice_means_two_songs(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Requests are keyed by content and occurrence, so duplicates in the input are both made."""
    sim = flowmusic_make_sim(2)
    async with flowmusic_make_client(sim) as fm:
        outcomes = await collect(fm, ["twice", "twice"])
    assert len({o.key for o in outcomes}) == 2 and all(o.ok for o in outcomes)
    assert sim.stats.accepted_prompts["twice"] == 2


@pytest.mark.anyio
async def test_a_rerun_with_the_journal_does_not_pay_again(
    tmp_path: Path, flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """A finished batch run again from its journal sends no POST at all."""
    sim = flowmusic_make_sim(3)
    journal = tmp_path / "songs.db"
    prompts = [f"journal song {i}" for i in range(5)]
    async with flowmusic_make_client(sim) as fm:
        first = await collect(fm, prompts, journal=journal)
    posts = sim.stats.requests[("POST /music", 201)]
    async with flowmusic_make_client(sim) as fm:
        second = await collect(fm, prompts, journal=journal)
    assert sim.stats.requests[("POST /music", 201)] == posts == 5
    assert all(o.resumed and o.ok for o in second)
    assert {o.key: o.job.jobid for o in first if o.job} == {
        o.key: o.job.jobid for o in second if o.job
    }


@pytest.mark.anyio
async def test_leaving_early_with_a_journal_lets_the_next_run_collect_the_running_jobs(
    tmp_path: Path, flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """With a journal, jobs running when the consumer leaves are awaited by jobid next time."""
    sim = flowmusic_make_sim(4)
    journal = tmp_path / "songs.db"
    prompts = [f"early exit {i}" for i in range(4)]
    async with (
        flowmusic_make_client(sim) as fm,
        fm.generate_many(prompts, journal=journal) as outcomes,
    ):
        async for _first in outcomes:
            break
    assert sim.stats.requests[("DELETE /jobs/{jobid}", 204)] == 0
    async with flowmusic_make_client(sim) as fm:
        second = await collect(fm, prompts, journal=journal)
    assert all(o.ok for o in second) and len(second) == 4
    assert sim.stats.duplicate_submissions == 0 and set(sim.stats.accepted_prompts.values()) == {1}


@pytest.mark.anyio
async def test_a_post_journalled_but_unanswered_is_adopted_not_resent(
    tmp_path: Path, flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """A crash between the POST and its answer: the job is found by its reference and adopted."""
    sim = flowmusic_make_sim(2, time_scale=0.02)
    path = tmp_path / "songs.db"
    journal = await Journal.open(path)
    [entry] = await journal.register([{"prompt": "crashed mid-post"}])
    ref = "fma:" + "ab" * 16
    async with flowmusic_make_client(sim) as fm:
        job = await fm.music.create(
            "crashed mid-post", mode="async", reply_ref=ref, email="batch0@example.com"
        )
        await journal.mark_submitting(
            entry.key, client_ref=ref, email="batch0@example.com", sent_at=time.time()
        )
        outcomes = await collect(fm, ["crashed mid-post"], journal=journal)
    await journal.close()
    assert outcomes[0].ok and outcomes[0].job is not None and outcomes[0].job.jobid == job.jobid
    assert sim.stats.jobs_created == 1


@pytest.mark.anyio
async def test_a_post_journalled_but_never_sent_is_sent_once(
    tmp_path: Path, flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """A crash after writing 'submitting' but before sending: proven absent, sent exactly once."""
    sim = flowmusic_make_sim(2, time_scale=0.02)
    path = tmp_path / "songs.db"
    async with await Journal.open(path) as journal:
        [entry] = await journal.register([{"prompt": "never sent"}])
        await journal.mark_submitting(
            entry.key, client_ref="fma:" + "cd" * 16, email=None, sent_at=time.time()
        )
    async with flowmusic_make_client(sim) as fm:
        outcomes = await collect(fm, ["never sent"], journal=path)
    assert outcomes[0].ok and sim.stats.jobs_created == 1


@pytest.mark.anyio
async def test_a_batch_with_no_funded_account_stops_with_batch_aborted(
    flowmusic_make_client: MakeClient,
) -> None:
    """402 everywhere stops the batch clearly instead of failing every request one by one."""
    sim = Simulator(
        accounts=(SimAccount(email="dry@example.com", max_jobs=2, credits=20.0),),
        time_scale=SCALE,
        song_credits=10.0,
    )
    got: list[Outcome] = []
    async with flowmusic_make_client(sim) as fm:
        with pytest.raises(BatchAborted) as caught:
            async with fm.generate_many([f"dry {i}" for i in range(6)]) as outcomes:
                async for outcome in outcomes:
                    got.append(outcome)
    assert sum(o.ok for o in got) == 2  # the two paid songs are still delivered
    assert type(caught.value.cause).__name__ == "InsufficientCreditsError"
    assert caught.value.not_started + len(got) == 6


def _read_lines(proc: subprocess.Popen[str], count: int) -> list[dict[str, Any]]:
    assert proc.stdout is not None
    lines: list[dict[str, Any]] = []
    while len(lines) < count:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(json.loads(line))
    return lines


def test_a_batch_killed_mid_run_resumes_without_paying_twice(tmp_path: Path) -> None:
    """SIGKILL mid-batch, run again with the journal: every song once, no duplicate submission."""
    scale = 0.05  # songs take 2-7.5 s, so a restart is well inside a job's shortest run
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowmusic_async.testing",
            "--port",
            "0",
            "--time-scale",
            str(scale),
            "--seed",
            "5",
            "--account",
            "kill0@example.com:4",
            "--account",
            "kill1@example.com:4",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline().split()
        assert ready[0] == "READY", ready
        base_url = ready[1]
        token = (
            httpx.get(base_url.split("/v1/")[0] + "/_sim/stats")
            .json()
            .get("token", "user:1001-simulatortoken")
        )
        journal = str(tmp_path / "killed.db")
        prompts = [f"kill test song {i}" for i in range(14)]
        child = [
            sys.executable,
            str(Path(__file__).with_name("batch_child.py")),
            base_url,
            token,
            journal,
            str(scale),
            *prompts,
        ]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
        first = subprocess.Popen(child, stdout=subprocess.PIPE, text=True, env=env)
        before = _read_lines(first, 5)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        second = subprocess.run(
            child, stdout=subprocess.PIPE, text=True, env=env, timeout=90, check=True
        )
        after = [json.loads(line) for line in second.stdout.splitlines()]
        stats = httpx.get(base_url.split("/v1/")[0] + "/_sim/stats").json()
    finally:
        server.kill()
        server.wait(timeout=10)
    assert len(before) == 5
    assert len(after) == 14 and all(line["jobid"] for line in after), after
    assert {o["key"]: o["jobid"] for o in before}.items() <= {
        o["key"]: o["jobid"] for o in after
    }.items()
    assert stats["duplicate_submissions"] == 0
    assert sorted(stats["accepted_prompts"]) == sorted(prompts)
    assert set(stats["accepted_prompts"].values()) == {1}


@pytest.mark.anyio
async def test_a_timed_out_song_is_awaited_again_by_the_next_run(
    tmp_path: Path, flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """JobTimeout leaves the job running, so a rerun collects it instead of paying again."""
    sim = flowmusic_make_sim(2)
    journal = tmp_path / "songs.db"
    async with flowmusic_make_client(sim) as fm:
        first = await collect(fm, ["slow one"], journal=journal, deadline=0.001)
    assert type(first[0].error).__name__ == "JobTimeout"
    async with flowmusic_make_client(sim) as fm:
        second = await collect(fm, ["slow one"], journal=journal)
    assert second[0].ok and second[0].job is not None
    assert isinstance(first[0], Failed)
    assert second[0].job.jobid == first[0].error.jobid
    assert sim.stats.jobs_created == 1


@pytest.mark.anyio
async def test_an_async_iterable_of_requests_is_read_as_the_batch_goes(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """A stream of prompts (an async generator) feeds the batch without being read up front."""
    sim = flowmusic_make_sim(2)
    read = 0

    async def prompts() -> Any:
        nonlocal read
        for i in range(6):
            read += 1
            yield f"streamed {i}"

    async with flowmusic_make_client(sim) as fm:
        outcomes = await collect(fm, prompts())
    assert read == 6 and sorted(o.index for o in outcomes) == list(range(6))
    assert all(o.ok for o in outcomes) and sim.stats.jobs_created == 6


@pytest.mark.anyio
async def test_a_post_on_its_way_when_the_batch_is_left_is_journalled_as_submitted(
    tmp_path: Path, flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """The batch closes its journal only after the POSTs already sent have told it their jobid."""
    sim = flowmusic_make_sim(2)
    path = tmp_path / "songs.db"
    async with flowmusic_make_client(sim) as fm:
        with anyio.CancelScope() as leave:

            def on_event(event: Event) -> None:
                if event.kind == "submitting":
                    sim.faults.latency_s = 0.3  # this POST's answer will take a while
                    leave.cancel()  # Ctrl-C while it is on its way

            fm.add_event_hook(on_event)
            await collect(fm, ["on its way"], journal=path)
    async with await Journal.open(path) as journal:
        [entry] = await journal.entries()
    assert sim.stats.jobs_created == 1
    assert entry.state == "submitted" and entry.jobid in sim.stats.jobs


@pytest.mark.anyio
async def test_a_refused_attempt_then_leaving_the_batch_leaves_no_submitting_record(
    tmp_path: Path, flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """A 429 created nothing; if the batch is left before the next POST, the journal says so."""
    sim = flowmusic_make_sim(1)
    sim.faults.burst_429 = 1
    path = tmp_path / "songs.db"
    async with flowmusic_make_client(sim) as fm:
        with anyio.CancelScope() as leave:

            def on_event(event: Event) -> None:
                if event.kind == "retrying":
                    leave.cancel()  # Ctrl-C while the job waits to be placed again

            fm.add_event_hook(on_event)
            await collect(fm, ["refused once"], journal=path)
    async with await Journal.open(path) as journal:
        [entry] = await journal.entries()
    assert sim.stats.jobs_created == 0 and sim.stats.responses_429 == 1
    assert entry.state == "pending"  # a rerun sends it, with nothing to reconcile


# ----- requests waiting for their jobs --------------------------------------------------------


def live_coroutines(name: str) -> int:
    """How many coroutine objects of the function `name` are alive (suspended) now."""
    import gc

    return sum(
        1
        for obj in gc.get_objects()
        if type(obj).__name__ == "coroutine" and obj.__qualname__.endswith(name)
    )


@pytest.mark.anyio
async def test_requests_waiting_for_their_jobs_hold_no_task_each(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """A waiting request is a record its job calls back, not a suspended task: 24 songs in
    progress leave no per-request coroutine alive (a task each made 800 of them the bulk of
    what the garbage collector walks, and its full passes stalled the loop)."""
    sim = flowmusic_make_sim(24, time_scale=0.05)  # songs run 2-7.5 s
    async with flowmusic_make_client(sim) as fm:
        submitted = 0

        def on_event(event: Event) -> None:
            nonlocal submitted
            submitted += event.kind == "submitted"

        fm.add_event_hook(on_event)
        async with fm.generate_many([f"waiting {i}" for i in range(24)]) as outcomes:
            while submitted < 24:
                await anyio.sleep(0.01)
            await anyio.sleep(0.05)  # the submitting tasks finish their last step
            assert live_coroutines("_Batch.run_one") == 0
            assert live_coroutines("_Batch.run_request") == 0
            results = [outcome async for outcome in outcomes]
    assert len(results) == 24 and all(o.ok for o in results)
    assert sim.stats.jobs_created == 24 and sim.stats.responses_429 == 0


@pytest.mark.serial
@pytest.mark.anyio
async def test_a_batch_deadline_ends_each_late_song_on_time_and_leaves_its_job_running(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Without a task per request, one timer keeps every deadline: songs that outlive theirs
    end with JobTimeout (jobid and account named) as the deadline passes, not at the next
    sweep or when the job ends, and their jobs are neither cancelled nor resent."""
    sim = flowmusic_make_sim(6, time_scale=0.05)  # songs run 2-7.5 s, far past the deadline
    rec: list[Event] = []
    async with flowmusic_make_client(sim) as fm:
        fm.add_event_hook(rec.append)
        started = time.monotonic()
        arrived: list[float] = []
        async with fm.generate_many([f"late {i}" for i in range(6)], deadline=0.4) as outcomes:
            results = []
            async for outcome in outcomes:
                arrived.append(time.monotonic() - started)
                results.append(outcome)
        jobs = {o.error.jobid: o.error.email for o in results if isinstance(o, Failed)}
        states = await server_states(sim)
    assert [type(o.error).__name__ for o in results] == ["JobTimeout"] * 6
    assert all(email and email.startswith("batch0@") for email in jobs.values())
    assert set(states.values()) == {"running"} and sim.stats.jobs_created == 6
    assert max(arrived) < 1.5, arrived  # the deadline (0.4 s after acceptance), not the songs
    assert sum(e.kind == "timeout" for e in rec) == 6


@pytest.mark.anyio_backends("trio")
@pytest.mark.anyio
async def test_under_trio_a_batch_completes_and_leaving_it_cancels_the_waiting_jobs(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """The waiting room uses only anyio: under trio a batch completes, and leaving one early
    cancels the jobs its requests wait for, server-side."""
    sim = flowmusic_make_sim(4, 4)
    async with flowmusic_make_client(sim) as fm:
        done = await collect(fm, [f"trio batch {i}" for i in range(10)])
        assert sorted(o.index for o in done) == list(range(10)) and all(o.ok for o in done)
        before = sim.stats.jobs_created
        async with fm.generate_many([f"trio left {i}" for i in range(8)]) as outcomes:
            while sim.stats.jobs_created < before + 8:
                await anyio.sleep(0.005)
            async for _first in outcomes:
                break
        states = await server_states(sim)
    left = list(states.values())[10:]  # the second batch's jobs, in creation order
    assert len(left) == 8 and sim.stats.responses_429 == 0
    assert "running" not in left and "user_cancelled" in left


class _SlowRecordsAfterDeletes(httpx.AsyncBaseTransport):
    """The simulator's transport, with each job record read after a DELETE taking 1 s."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.deleted: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        jobid = path.rsplit("/jobs/", 1)[-1] if "/jobs/" in path else None
        if request.method == "DELETE" and jobid is not None:
            self.deleted.add(jobid)
        elif request.method == "GET" and jobid in self.deleted:
            await anyio.sleep(1.0)
        return await self.inner.handle_async_request(request)


@pytest.mark.serial
@pytest.mark.anyio
async def test_leaving_a_batch_waits_for_the_deletes_not_for_the_records_read_after_them(
    flowmusic_make_sim: MakeSim,
) -> None:
    """The jobs of a batch left early are cancelled before leaving returns; their final
    records (read after each DELETE, to settle the jobs) are not waited for: the caller has
    left, and those reads crowd the loop."""
    # songs of 0.4-1.5 s: none ends before it is cancelled
    sim = flowmusic_make_sim(8, time_scale=0.01)
    transport = _SlowRecordsAfterDeletes(sim.transport())
    seen: list[Event] = []
    fm = FlowMusic(
        token=sim.token,
        base_url=sim.base_url,
        transport=transport,
        timing=Timing.scaled(0.01),
        event_hooks=[seen.append],
    )
    async with fm:
        async with fm.generate_many([f"left early {i}" for i in range(8)]):
            while sim.stats.jobs_created < 8:
                await anyio.sleep(0.01)
            # Leaving before any song can end (40 s x 0.01 = 0.4 s): 8 jobs in progress.
            left_at = time.perf_counter()
        leaving_took = time.perf_counter() - left_at
        states = await server_states(sim)
        assert (
            list(states.values()).count("user_cancelled") == 8
        )  # cancelled before leaving returned
        assert leaving_took < 0.5
        assert [e.kind for e in seen].count("cancelled") == 0  # the records are still being read
    # Closing the client waits for the reads: every job settled as cancelled.
    assert [e.kind for e in seen].count("cancelled") == 8


class _CountsTurnsAtDeletes(httpx.AsyncBaseTransport):
    """The simulator's transport, noting how many turns of the loop `turns` had counted when
    the last DELETE was answered."""

    def __init__(self, inner: httpx.AsyncBaseTransport, turns: list[int]) -> None:
        self.inner = inner
        self.turns = turns
        self.at_last_delete = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "DELETE":
            self.at_last_delete = self.turns[0]
        return response


@pytest.mark.anyio
async def test_leaving_a_batch_takes_a_few_turns_of_the_loop_once_its_deletes_answer(
    flowmusic_make_sim: MakeSim,
) -> None:
    """Once the last DELETE of a batch left early is answered, leaving returns within a few
    turns of the event loop. Waiting on each job's event in turn cost a turn per job even
    when it was already set: 400 jobs, 1 s on a busy loop (benchmarks/bench_scale.py --only
    leave, "then returned s")."""
    jobs = 160
    # songs of 2-7.5 s: all still running
    sim = flowmusic_make_sim(*[16] * (jobs // 16), time_scale=0.05)
    turns = [0]
    transport = _CountsTurnsAtDeletes(sim.transport(), turns)
    fm = FlowMusic(
        token=sim.token, base_url=sim.base_url, transport=transport, timing=Timing.scaled(0.05)
    )

    async def count_turns() -> None:
        while True:
            await anyio.lowlevel.checkpoint()
            turns[0] += 1

    async with fm, anyio.create_task_group() as tg:
        tg.start_soon(count_turns)
        async with fm.generate_many([f"left early {i}" for i in range(jobs)]):
            while sim.stats.jobs_created < jobs:
                await anyio.sleep(0.01)
        turns_after_last_delete = turns[0] - transport.at_last_delete
        tg.cancel_scope.cancel()
    states = await server_states(sim)
    assert list(states.values()).count("user_cancelled") == jobs
    assert turns_after_last_delete < jobs // 4, turns_after_last_delete
