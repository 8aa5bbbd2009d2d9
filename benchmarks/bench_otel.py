"""Client CPU per song with OpenTelemetry configured, against the same client without it.

`fm.generate_many` on 50 accounts x 16 slots (800 slots), each run against a fresh simulator
process, the client in a process of its own. Three variants, run in turns within one
invocation:

- off: OpenTelemetry is never imported (what a client without the ``otel`` extra runs).
- unset: the OpenTelemetry API is imported but the application set no provider, so the
  client's default (`telemetry=None`) stays off: this should cost nothing.
- otel: the SDK's TracerProvider with a BatchSpanProcessor and a MeterProvider with a
  PeriodicExportingMetricReader (every 1 s), set as the global providers, both exporting to
  exporters that drop what they are given: every span and point is built, batched and handed
  over, and only the I/O of a real exporter is left out.

The figure is the client process's CPU (`time.process_time()`, every thread: the span
processor's and the metric reader's included, and the final flush of both) from the batch's
start to its end, divided by the songs.

    python -m benchmarks.bench_otel                         # 5,000 and 20,000 songs, 3 turns
    python -m benchmarks.bench_otel --sizes 2000 --repeats 1
    python -m benchmarks.bench_otel --hook-only             # the hook alone, no client

`--hook-only` feeds the telemetry hook the five events of each of 20,000 songs, in this
process, and prints its CPU per song with the SDK (a BatchSpanProcessor dropping spans, an
in-memory metric reader), with a no-op tracer (the hook and the metrics, no spans), and with
the SDK sampling one trace in ten.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from benchmarks import _report
from benchmarks._harness import TOKEN, BenchError, simulator
from benchmarks._workloads import Workload, accounts

ACCOUNTS = accounts(50, (16,))
VARIANTS = ("off", "unset", "otel")


# ----- the client process ----------------------------------------------------------------------


def prompts(n: int) -> Iterator[str]:
    for i in range(n):
        yield f"bench otel song {i:06d}: warm lo-fi beat, vinyl crackle, 84 bpm"


def _configure(variant: str) -> Any:
    """Set up OpenTelemetry as the variant says; returns what must be flushed at the end."""
    if variant == "off":
        return None
    from opentelemetry import metrics, trace

    if variant == "unset":
        return None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class DropSpans(SpanExporter):
        exported = 0

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            DropSpans.exported += len(spans)
            return SpanExportResult.SUCCESS

    class DropMetrics(MetricExporter):
        def export(self, metrics_data: Any, timeout_millis: float = 0, **kwargs: Any) -> Any:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 0) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 0, **kwargs: Any) -> None:
            pass

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DropSpans()))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(DropMetrics(), export_interval_millis=1000)
    meter_provider = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(meter_provider)
    return tracer_provider, meter_provider, DropSpans


async def client(base_url: str, songs: int, time_scale: float, variant: str) -> dict[str, Any]:
    from flowmusic_async import FlowMusic, Timing

    providers = _configure(variant)
    completed = failed = 0
    fm = FlowMusic(token=TOKEN, base_url=base_url, timing=Timing.scaled(time_scale))
    async with fm:
        cpu0 = time.process_time()
        start = time.perf_counter()
        async with fm.generate_many(prompts(songs)) as outcomes:
            async for outcome in outcomes:
                if outcome.job is not None:
                    completed += 1
                else:
                    failed += 1
        spans = 0
        if providers is not None:
            tracer_provider, meter_provider, exporter = providers
            tracer_provider.force_flush()
            meter_provider.force_flush()
            spans = exporter.exported
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - start
    return {
        "variant": variant,
        "songs": songs,
        "completed": completed,
        "failed": failed,
        "cpu_s": cpu,
        "wall_s": wall,
        "spans": spans,
        "otel_imported": "opentelemetry" in sys.modules,
    }


def hook_only(songs: int) -> dict[str, float]:
    """Microseconds of CPU per song for the telemetry hook alone, fed each song's events."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    from opentelemetry.trace import NoOpTracerProvider

    from flowmusic_async._events import Event
    from flowmusic_async._otel import SongTelemetry

    class DropSpans(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    def sdk(sampler: Any = None) -> Any:
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(BatchSpanProcessor(DropSpans()))
        return provider

    results: dict[str, float] = {}
    cases: dict[str, Callable[[], Any]] = {
        "sdk": sdk,
        "noop": NoOpTracerProvider,
        "sdk, 1 in 10 sampled": lambda: sdk(ParentBased(TraceIdRatioBased(0.1))),
    }
    for name, make in cases.items():
        tracer_provider = make()
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        hook = SongTelemetry(
            tracer_provider=tracer_provider, meter_provider=meter_provider, capacity=lambda: None
        )
        now = time.time()
        cpu0 = time.process_time()
        for n in range(songs):
            ref, email = f"fma:{n:032x}", f"bench{n % 50:02d}@example.com"
            jobid = f"job:{n:08d}-{email}"
            hook(Event(kind="queued", at=now, client_ref=ref))
            hook(Event(kind="placed", at=now, client_ref=ref, email=email, attempt=1))
            hook(Event(kind="submitting", at=now, client_ref=ref, email=email, attempt=1))
            hook(Event(kind="submitted", at=now, client_ref=ref, email=email, jobid=jobid))
            hook(Event(kind="completed", at=now, client_ref=ref, email=email, jobid=jobid))
        getattr(tracer_provider, "force_flush", lambda: None)()
        results[name] = (time.process_time() - cpu0) / songs * 1e6
        getattr(tracer_provider, "shutdown", lambda: None)()
        meter_provider.shutdown()
    return results


# ----- the parent ------------------------------------------------------------------------------


def run_once(variant: str, songs: int, *, time_scale: float, seed: int = 7) -> dict[str, Any]:
    """One client run of `variant` against a fresh simulator."""
    workload = Workload(name="otel", songs=songs, accounts=ACCOUNTS)
    load = _report.load_average()[:1]
    with simulator(workload, time_scale=time_scale, seed=seed) as sim:
        cmd = [sys.executable, "-m", "benchmarks.bench_otel", "--client", sim.base_url,
               "--variant", variant, "--songs", str(songs),
               "--time-scale", repr(time_scale)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
            raise BenchError(f"client exited {proc.returncode}: {tail}")
    row: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    done = row["completed"] + row["failed"]
    row["cpu_ms_per_song"] = row["cpu_s"] * 1000 / max(done, 1)
    row["load_before"] = load[0] if load else None
    return row


def run_all(
    sizes: Sequence[int], variants: Sequence[str], *, repeats: int, time_scale: float
) -> dict[int, dict[str, list[dict[str, Any]]]]:
    """Every size, each variant in turn, `repeats` turns (slow moments spread over all)."""
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {n: {v: [] for v in variants} for n in sizes}
    for songs in sizes:
        for turn in range(repeats):
            for variant in variants:
                started = time.perf_counter()
                try:
                    row = run_once(variant, songs, time_scale=time_scale)
                except BenchError as exc:
                    print(f"  {variant} {songs}: {exc}", file=sys.stderr, flush=True)
                    continue
                runs[songs][variant].append(row)
                print(f"  {songs} songs, turn {turn + 1}/{repeats}, {variant}: "
                      f"{row['cpu_ms_per_song']:.3f} ms/song, {row['spans']} spans, load "
                      f"{row['load_before']} ({time.perf_counter() - started:.0f} s)",
                      flush=True)  # fmt: skip
    return runs


def table(runs: dict[int, dict[str, list[dict[str, Any]]]]) -> list[str]:
    """Median CPU per song [range] by size and variant, and each variant over "off"."""
    lines = [f"{'songs':>7} | {'variant':>7} | {'cpu ms/song [range]':>24} | {'x off':>6} | spans"]
    for songs, by_variant in runs.items():
        base = _median(by_variant.get("off", []))
        for variant, rows in by_variant.items():
            if not rows:
                continue
            values = [r["cpu_ms_per_song"] for r in rows]
            median = statistics.median(values)
            ranged = f"{median:.3f} [{min(values):.3f}-{max(values):.3f}]"
            ratio = f"{median / base:.3f}" if base else "-"
            spans = rows[0]["spans"]
            lines.append(f"{songs:>7,} | {variant:>7} | {ranged:>24} | {ratio:>6} | {spans}")
    return lines


def _median(rows: list[dict[str, Any]]) -> float | None:
    return statistics.median(r["cpu_ms_per_song"] for r in rows) if rows else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_otel")
    parser.add_argument("--client", metavar="BASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=VARIANTS, default="off", help=argparse.SUPPRESS)
    parser.add_argument("--songs", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="5000,20000", help="songs per run, comma-separated")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--time-scale", type=float, default=0.01)
    parser.add_argument("--hook-only", action="store_true", help="the hook alone, no client")
    args = parser.parse_args(argv)
    if args.hook_only:
        _report.print_machine()
        for name, micros in hook_only(20_000).items():
            print(f"hook alone, 20,000 songs, {name}: {micros:.1f} us of CPU per song")
        return 0
    if args.client:
        import anyio

        report = anyio.run(client, args.client, args.songs, args.time_scale, args.variant)
        print(json.dumps(report))
        return 0
    _report.print_machine()
    sizes = [int(size) for size in args.sizes.split(",")]
    variants = [variant for variant in args.variants.split(",") if variant]
    runs = run_all(sizes, variants, repeats=args.repeats, time_scale=args.time_scale)
    print(f"\ngenerate_many on 50 x 16 slots, time scale {args.time_scale}; median of "
          f"{args.repeats} turns")  # fmt: skip
    for line in table(runs):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
