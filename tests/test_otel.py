"""OpenTelemetry (the `otel` extra): one trace per submission and the metrics, read through the
SDK's in-memory exporter and reader, on the simulator; nothing imported without it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from flowmusic_async import ConfigurationError, Event, FlowMusic, JobFailed, Telemetry
from flowmusic_async.testing import Faults, SimAccount, Simulator

pytest.importorskip("opentelemetry.sdk", reason="the otel tests read spans through the SDK")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

from flowmusic_async._otel import SongTelemetry
from flowmusic_async._scheduler import CapacityView

pytestmark = pytest.mark.anyio

TIME_SCALE = 0.001


class Readout:
    """A tracer and a meter provider of their own, and what they recorded."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    @property
    def telemetry(self) -> Telemetry:
        return Telemetry(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def roots(self) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.parent is None]

    def children(self, root: ReadableSpan) -> list[ReadableSpan]:
        trace_id = root.context.trace_id
        return [
            span
            for span in self.finished()
            if span.parent is not None and span.context.trace_id == trace_id
        ]

    def points(self) -> dict[str, list[Any]]:
        """Each metric's data points, by name (collected now)."""
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = list(metric.data.data_points)
        return found

    def everything_as_text(self) -> str:
        data = self.reader.get_metrics_data()
        spans = "\n".join(span.to_json() for span in self.finished())
        return spans + "\n" + (data.to_json() if data else "")


@pytest.fixture
def readout() -> Iterator[Readout]:
    readout = Readout()
    yield readout
    readout.tracer_provider.shutdown()
    readout.meter_provider.shutdown()


async def test_each_song_is_one_trace_with_its_steps_and_attributes(readout: Readout) -> None:
    """N songs give N traces, each with the slot wait, the paid POSTs and the render, carrying
    the job, the account, the attempts and the 429s met; the metrics match the simulator."""
    songs = 6
    sim = Simulator(
        accounts=[SimAccount(email="a@example.com", max_jobs=2)],
        time_scale=TIME_SCALE,
        seed=3,
        faults=Faults(burst_429=3),
    )
    outcomes = []
    async with sim, sim.client(telemetry=readout.telemetry) as fm:
        async with fm.generate_many(f"song {i}" for i in range(songs)) as batch:
            outcomes = [outcome async for outcome in batch]
        assert all(outcome.job is not None for outcome in outcomes)
        jobids = {outcome.job.jobid for outcome in outcomes if outcome.job is not None}
        points = readout.points()

    roots = readout.roots()
    assert len(roots) == songs
    assert {(root.attributes or {}).get("flowmusic.jobid") for root in roots} == jobids
    met_429 = 0
    for root in roots:
        attributes = root.attributes or {}
        assert root.name == "flowmusic.song"
        assert attributes["flowmusic.outcome"] == "completed"
        assert attributes["flowmusic.account"] == "a@example.com"
        assert str(attributes["flowmusic.client_ref"]).startswith("fma:")
        children = readout.children(root)
        names = Counter(span.name for span in children)
        attempts = int(attributes["flowmusic.attempts"])  # type: ignore[arg-type]
        assert names == {"flowmusic.slot_wait": attempts, "flowmusic.post": attempts,
                         "flowmusic.render": 1}  # fmt: skip
        met_429 += int(attributes["flowmusic.rate_limited"])  # type: ignore[arg-type]
        assert attributes["flowmusic.rate_limited"] == attempts - 1  # each retry here was a 429
        # Spans carry the events' own times: children within the root, in order.
        assert root.start_time is not None and root.end_time is not None
        for child in children:
            assert child.start_time is not None and child.end_time is not None
            assert root.start_time <= child.start_time <= child.end_time <= root.end_time
        (render,) = [span for span in children if span.name == "flowmusic.render"]
        posts = sorted(
            (span for span in children if span.name == "flowmusic.post"),
            key=lambda span: span.start_time or 0,
        )
        assert posts[-1].end_time == render.start_time  # "submitted" ends one, starts the other
        assert [p.status.status_code for p in posts[:-1]] == [StatusCode.ERROR] * (attempts - 1)
        assert render.attributes == {
            "flowmusic.jobid": attributes["flowmusic.jobid"],
            "flowmusic.account": "a@example.com",
        }

    assert met_429 == sim.stats.responses_429 == 3
    assert sum(p.value for p in points["flowmusic.rate_limited"]) == 3
    assert sum(p.value for p in points["flowmusic.songs.completed"]) == songs
    assert sim.stats.jobs_created == songs
    assert sum(p.count for p in points["flowmusic.render.duration"]) == songs
    assert sum(p.count for p in points["flowmusic.slot_wait.duration"]) == songs + 3
    assert "flowmusic.songs.failed" not in points


async def test_a_moderated_song_ends_in_error_with_the_records_code(readout: Readout) -> None:
    """A refused prompt renders, then fails: its trace ends in ERROR naming the record's code."""
    sim = Simulator(time_scale=TIME_SCALE, seed=1)
    async with sim, sim.client(telemetry=readout.telemetry) as fm:
        with pytest.raises(JobFailed) as failed:
            await fm.generate("a song [moderate]")
        points = readout.points()

    (root,) = readout.roots()
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes is not None
    assert root.attributes["flowmusic.outcome"] == "failed"
    assert root.attributes["flowmusic.failure_code"] == failed.value.code == "moderation_reject"
    assert root.attributes["flowmusic.jobid"] == failed.value.jobid
    (render,) = [span for span in readout.children(root) if span.name == "flowmusic.render"]
    assert render.status.status_code is StatusCode.ERROR
    assert "moderation_reject" in (render.status.description or "")
    (exception,) = [event for event in root.events if event.name == "exception"]
    assert exception.attributes is not None
    assert exception.attributes["exception.type"] == "flowmusic_async.JobFailed"
    (point,) = points["flowmusic.songs.failed"]
    assert point.value == 1 and point.attributes["error.type"] == "moderation_reject"


async def test_a_lost_post_answer_shows_its_reconciliation(readout: Readout) -> None:
    """The POST's answer is lost but its job exists: the POST span says it was reconciled
    (adopted, not resent), and the song goes on to its end in the same trace."""
    sim = Simulator(time_scale=TIME_SCALE, seed=2, faults=Faults(lost_response_rate=1.0))
    async with sim, sim.client(telemetry=readout.telemetry) as fm:
        job = await fm.generate("lost and found")
    assert sim.stats.lost_responses == 1 and sim.stats.duplicate_submissions == 0

    (root,) = readout.roots()
    assert root.attributes is not None
    assert root.attributes["flowmusic.outcome"] == "completed"
    (post,) = [span for span in readout.children(root) if span.name == "flowmusic.post"]
    (reconciled,) = [event for event in post.events if event.name == "flowmusic.reconciled"]
    assert reconciled.attributes is not None
    assert reconciled.attributes["flowmusic.jobid"] == job.jobid
    assert "adopted" in str(reconciled.attributes["flowmusic.detail"])
    assert post.start_time is not None and post.end_time is not None
    assert post.start_time <= reconciled.timestamp <= post.end_time


async def test_the_token_appears_in_no_span_event_or_metric(readout: Readout) -> None:
    """An account error whose message quotes the token is recorded redacted, like every
    message of the library: nothing exported ever holds the token."""
    token = "user:1001-tokenthatmustnotleak"
    sim = Simulator(
        accounts=[SimAccount(email="a@example.com"), SimAccount(email="c@example.com")],
        tokens=(token,),
        time_scale=TIME_SCALE,
        seed=4,
        faults=Faults(burst_429=1),
    )
    sim.set_account_error("a@example.com", f"session expired for Bearer {token}")
    async with sim, sim.client(telemetry=readout.telemetry) as fm:
        with pytest.raises(Exception) as raised:
            await fm.generate("no account can take this", email="a@example.com")
        assert token not in str(raised.value)
        with pytest.raises(JobFailed):  # after a 429 (burst_429), recorded with its message
            await fm.generate("refused [moderate]", email="c@example.com")
        readout.points()

    roots = readout.roots()
    assert [root.status.status_code for root in roots] == [StatusCode.ERROR] * 2
    recorded = [event for span in readout.finished() for event in span.events]
    assert any("session expired for" in str(e.attributes) for e in recorded)  # it was recorded
    text = readout.everything_as_text()
    assert token not in text
    assert "tokenthatmustnotleak" not in text


async def test_gauges_read_slots_and_queue_of_the_open_client(readout: Readout) -> None:
    """Slots in use and free per account and the queue for a slot, as the scheduler sees them
    when the reader collects; nothing once the client has closed."""
    sim = Simulator(accounts=[SimAccount(email="a@example.com", max_jobs=2)], time_scale=0.01)
    submitted: list[str] = []
    two_running = anyio.Event()

    def note(event: Event) -> None:
        if event.kind == "submitted" and event.jobid is not None:
            submitted.append(event.jobid)
            if len(submitted) == 2:
                two_running.set()

    fm = sim.client(telemetry=readout.telemetry, event_hooks=[note])
    async with sim, fm, anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(fm.generate, f"song {i}")
        with anyio.fail_after(10):
            await two_running.wait()
        await anyio.wait_all_tasks_blocked()  # the third song has reached the slot queue
        points = readout.points()
        tg.cancel_scope.cancel()
    after = readout.points()

    assert [(p.attributes, p.value) for p in points["flowmusic.slots.in_use"]] == [
        ({"flowmusic.account": "a@example.com"}, 2)
    ]
    assert [p.value for p in points["flowmusic.slots.free"]] == [0]
    assert [p.value for p in points["flowmusic.queue.length"]] == [1]
    assert "flowmusic.slots.in_use" not in after or not after["flowmusic.slots.in_use"]


async def test_a_submissions_state_is_dropped_at_its_end(readout: Readout) -> None:
    """The hook holds a submission only until its terminal event, so a batch of any size
    leaves nothing behind (a 20,000-song run must not grow)."""
    hook = SongTelemetry(
        tracer_provider=readout.tracer_provider,
        meter_provider=readout.meter_provider,
        capacity=lambda: CapacityView(slots={}, queued=0),
    )
    seen = []
    sim = Simulator(accounts=[SimAccount(email="a@example.com", max_jobs=4)], time_scale=TIME_SCALE)

    def during(event: Event) -> None:
        seen.append(hook.open_submissions)

    fm = sim.client(event_hooks=[hook, during], telemetry=False)
    async with sim, fm, fm.generate_many(f"song {i}" for i in range(12)) as batch:
        assert len([outcome async for outcome in batch]) == 12
    assert max(seen) >= 2  # it did hold songs in flight
    assert hook.open_submissions == 0
    assert len(readout.roots()) == 12


def test_telemetry_takes_none_a_bool_or_a_telemetry() -> None:
    """A wrong value is refused when the client is made, naming what is accepted."""
    with pytest.raises(ConfigurationError, match="telemetry must be"):
        FlowMusic(token="t", telemetry="on")  # type: ignore[arg-type]


def _run(*parts: str) -> dict[str, Any]:
    """Run the code `parts` in a fresh interpreter (the global providers are set once per
    process) and read the JSON it prints last."""
    code = "\n".join(textwrap.dedent(part) for part in parts)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


SONG_ON_THE_SIMULATOR = """
    import anyio
    from flowmusic_async.testing import Simulator

    async def song(**options):
        sim = Simulator(time_scale=0.001)
        async with sim.client(**options) as fm:
            return (await fm.generate("a song")).is_completed
"""


def test_without_the_extra_nothing_is_imported_and_songs_run() -> None:
    """Without opentelemetry installed the client works, imports none of it, and refuses
    `telemetry=True` with a message that names the extra."""
    result = _run(
        """
        import json, sys
        sys.modules["opentelemetry"] = None  # as if not installed: importing it raises
        from flowmusic_async import ConfigurationError, FlowMusic
        """,
        SONG_ON_THE_SIMULATOR,
        """
        completed = anyio.run(song)
        try:
            FlowMusic(token="t", telemetry=True)
            refused = ""
        except ConfigurationError as error:
            refused = str(error)
        loaded = [m for m in sys.modules if m.startswith("opentelemetry") and sys.modules[m]]
        print(json.dumps({"completed": completed, "loaded": loaded, "refused": refused}))
        """,
    )
    assert result == {"completed": True, "loaded": [], "refused": result["refused"]}
    assert "flowmusic-async[otel]" in result["refused"]


def test_installed_but_not_configured_imports_nothing() -> None:
    """With the extra installed but no tracer provider set by the application, the default
    costs nothing: OpenTelemetry is not even imported."""
    result = _run(
        """
        import json, sys
        """,
        SONG_ON_THE_SIMULATOR,
        """
        completed = anyio.run(song)
        print(json.dumps({"completed": completed, "otel": "opentelemetry" in sys.modules}))
        """,
    )
    assert result == {"completed": True, "otel": False}


def test_the_default_follows_the_applications_tracer_provider() -> None:
    """By default a client reports when the application has set a global tracer provider;
    `telemetry=False` keeps it silent all the same."""
    result = _run(
        """
        import json
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        """,
        SONG_ON_THE_SIMULATOR,
        """
        spans = InMemorySpanExporter()
        before = anyio.run(song)  # the API's default proxy provider: off
        count_before = len(spans.get_finished_spans())
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(provider)
        anyio.run(song)
        on = len(spans.get_finished_spans())
        anyio.run(lambda: song(telemetry=False))
        off = len(spans.get_finished_spans()) - on
        print(json.dumps({"before": count_before, "on": on, "off": off}))
        """,
    )
    assert result == {"before": 0, "on": 4, "off": 0}  # song, slot wait, POST, render


def test_the_overhead_benchmark_runs_each_variant_in_its_own_process() -> None:
    """benchmarks/bench_otel.py: the configured client exports every span, the other one
    never imports OpenTelemetry."""
    from benchmarks import bench_otel

    on = bench_otel.run_once("otel", 12, time_scale=0.002)
    off = bench_otel.run_once("off", 12, time_scale=0.002)
    assert on["completed"] == off["completed"] == 12
    assert on["spans"] >= 4 * 12 and on["otel_imported"]
    assert off["spans"] == 0 and not off["otel_imported"]
    assert "x off" in bench_otel.table({12: {"off": [off], "otel": [on]}})[0]


class _EventWithTenant(Event, frozen=True, kw_only=True):
    """What `Event` is expected to gain (issue 26): the tenant and the credits of a song."""

    tenant: str | None = None
    credits: float | None = None


def test_tenant_and_credits_are_reported_once_events_carry_them(
    readout: Readout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hooks for the fields the engine adds later: a tenant on the song, credits reserved
    on the POST and settled on the song, and settled credits counted as spent."""
    from flowmusic_async import _otel

    monkeypatch.setattr(_otel, "_EVENTS_HAVE_EXTRAS", True)
    hook = SongTelemetry(
        tracer_provider=readout.tracer_provider,
        meter_provider=readout.meter_provider,
        capacity=lambda: None,
    )
    ref, jobid, email = "fma:1", "job:1", "a@example.com"
    steps: list[tuple[Any, dict[str, Any]]] = [
        ("queued", {"tenant": "guild-7"}),
        ("placed", {"email": email, "attempt": 1}),
        ("submitting", {"email": email, "attempt": 1, "credits": 10.0}),
        ("submitted", {"email": email, "jobid": jobid}),
        ("completed", {"email": email, "jobid": jobid, "tenant": "guild-7", "credits": 8.0}),
    ]
    for at, (kind, fields) in enumerate(steps):
        hook(_EventWithTenant(kind=kind, at=1000.0 + at, client_ref=ref, **fields))

    (root,) = readout.roots()
    assert root.attributes is not None
    assert root.attributes["flowmusic.tenant"] == "guild-7"
    assert root.attributes["flowmusic.credits.settled"] == 8.0
    (post,) = [span for span in readout.children(root) if span.name == "flowmusic.post"]
    assert post.attributes is not None
    assert post.attributes["flowmusic.credits.reserved"] == 10.0
    assert root.start_time == 1000 * 10**9 and root.end_time == 1004 * 10**9
    assert [p.value for p in readout.points()["flowmusic.credits.spent"]] == [8.0]
