"""Smoke checks for benchmarks/: the code paths run, not how fast they are (not timed tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from benchmarks import bench_decode
from benchmarks._metrics import fifo_makespan, percentile
from benchmarks._workloads import Workload, plan
from benchmarks.variants._common import parse_args


@pytest.mark.parametrize("impl", bench_decode.IMPLEMENTATIONS)
def test_decode_benchmark_runs_each_implementation_once(impl: str) -> None:
    """Every decoder accepts both payloads, so the timed run cannot fail on a shape mismatch."""
    if impl == "pydantic":
        pytest.importorskip("pydantic")
    result = bench_decode.measure(impl, number=1, repeat=1)
    assert set(result) == {"completed", "pending"}
    assert all(us > 0 for us in result.values())


def test_msgspec_decode_yields_the_library_job_with_both_clips() -> None:
    """The payload is a real completed record: the library decodes two clips from it."""
    from flowmusic_async._models import JOB_DECODER

    job = JOB_DECODER.decode(bench_decode.PAYLOADS["completed"])
    assert job.status == "completed"
    assert len(job.clips) == 2


def test_variant_arguments_round_trip_the_workload() -> None:
    """A variant process rebuilds exactly the workload the parent sent it."""
    workload = plan(quick=True)[1]
    argv = ["--base-url", "http://127.0.0.1:1/v1/flowmusic/", "--token", "user:1-x",
            "--time-scale", "0.01", "--workload", workload.to_json(),
            "--option", "submit=generate", "--no-download"]  # fmt: skip
    args = parse_args(argv)
    assert args.workload == workload
    assert args.base_url == "http://127.0.0.1:1/v1/flowmusic"
    assert args.options == {"submit": "generate"}
    assert args.download is False
    assert args.scaled(10.0) == pytest.approx(0.1)


def test_variant_arguments_refuse_a_bad_option() -> None:
    """A malformed --option stops the variant before it sends anything."""
    workload = Workload(name="single", songs=1, accounts=(("a@example.com", 1),))
    argv = ["--base-url", "http://x", "--token", "t", "--time-scale", "0.01",
            "--workload", workload.to_json(), "--option", "no-equals-sign"]  # fmt: skip
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_stream_arrivals_follow_the_rate_in_real_seconds() -> None:
    """At 0.7 of 100 slots and 95 s songs, arrivals are 95/70 simulated seconds apart."""
    stream = plan(quick=True)[1]
    offsets = stream.arrival_offsets(0.01)
    assert offsets[1] - offsets[0] == pytest.approx(0.01 * 95 / 70)


def test_fifo_makespan_and_percentile_on_known_numbers() -> None:
    """Two slots, jobs 3, 2, 2: the third starts at 2 and ends at 4."""
    assert fifo_makespan([0, 0, 0], [3, 2, 2], 2) == 4
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([], 95) is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    "case", ["healthy", "out-402", "out-596", "blocked-pinned", "half-cancelled"]
)
async def test_scheduler_benchmark_turns_slots_over_in_every_case(case: str) -> None:
    """Each case reaches its queue size and hands out every slot it frees (no waiter is lost)."""
    from benchmarks import bench_scheduler

    result = await bench_scheduler.measure(case, queued=40, turnovers=30)
    assert result["scheduler_us"] > 0
    assert result["wall_us"] >= result["scheduler_us"]


@pytest.mark.anyio
@pytest.mark.parametrize("variant", ["none", "fair", "capped"])
async def test_fairness_benchmark_measures_a_makespan_and_where_b_started(variant: str) -> None:
    """Each variant runs every song and reports B's two jobs among the simulator's."""
    from benchmarks import bench_fairness

    result = await bench_fairness.measure(variant, songs=20, scale=0.002)
    assert result["makespan_s"] > 0 and len(result["b_start_ranks"]) == 2
    assert result["responses_429"] == 0


@pytest.mark.anyio
async def test_fairness_benchmark_capacity_check_finds_no_disagreement() -> None:
    """The --capacity-check mode sees sweeps and reports none of its checks failing."""
    from benchmarks import bench_fairness

    result = await bench_fairness.capacity_check(40, 0.002)
    assert result["sweeps_checked"] > 0 and result["disagreements"] == []
    assert result["idle_at_end"]


@pytest.mark.anyio
@pytest.mark.parametrize("variant", ["plain", "limited", "floor"])
async def test_spend_benchmark_pays_every_song_and_reads_balances_per_account(
    variant: str,
) -> None:
    """Each variant pays for every song; the floor reads balances per account, not per song,
    and only a limit or a floor reads the usage report (once per account)."""
    from benchmarks import bench_spend

    result = await bench_spend.measure(variant, songs=60, scale=0.002)
    assert result["songs_ok"] == 60 and result["responses_429"] == 0
    assert result["credits_spent"] == 60 * bench_spend.SONG
    assert result["balance_reads"] <= (bench_spend.ACCOUNTS if variant == "floor" else 0)
    assert result["usage_reads"] <= (0 if variant == "plain" else bench_spend.ACCOUNTS)


def test_scale_benchmark_runs_a_batch_and_leaves_one_early(tmp_path: Path) -> None:
    """The scale benchmark's client and parent agree: every song accounted for, both modes."""
    from benchmarks import bench_scale

    full = bench_scale.run_once(12, time_scale=0.002, rtt_s=0.5)
    assert full["completed"] + full["failed"] == 12
    assert full["duplicates"] == 0
    assert full["notice_p50_s"] is not None
    assert full["makespan_over_fifo"] is not None
    assert full["httpx"]["sends"] >= 24  # a POST and a final GET per song at least
    left = bench_scale.run_once(200, time_scale=0.002, leave_after=3)
    assert left["leave_s"] is not None
    assert left["completed"] + left["failed"] == 3
    repo = str(Path(bench_scale.__file__).resolve().parents[1])
    other = bench_scale.run_once(12, time_scale=0.002, gc_mode="freeze", checkout=repo)
    assert other["completed"] == 12 and other["gc_mode"] == "freeze"
    result = {
        "scale": [bench_scale.median_row([full, full])],
        "leave": [left],
        "leave_after": 3,
        "gc": [other],
        "compare": [full, other | {"checkout": repo}, left],
    }
    text = bench_scale.tables(result)
    titles = ("scale:", "leave early:", "garbage collector:", "compare:", "compare, left early")
    for title in titles:
        assert any(line.startswith(title) for line in text), title
    if importlib.util.find_spec("matplotlib") is not None:
        assert "chart:" in bench_scale.chart(tmp_path / "c.png", result)
        assert (tmp_path / "c.png").stat().st_size > 0


def test_scale_compare_side_by_side_runs_both_clients_at_once() -> None:
    """`--at-once`: both sides' clients run together, each on its own simulator, every song
    of each accounted for, with one CPU ratio per run in the tables."""
    from benchmarks import bench_scale

    repo = str(Path(bench_scale.__file__).resolve().parents[1])
    this = {"songs": 12, "time_scale": 0.002}
    rows, ratios = bench_scale.side_by_side([(this, this | {"checkout": repo})], 2)
    assert [row["checkout"] for row in rows] == ["this", repo]
    assert all(row["completed"] == 12 and row["duplicates"] == 0 for row in rows)
    assert len(ratios) == 1 and len(ratios[0]) == 2 and all(r > 0 for r in ratios[0])
    text = bench_scale.tables({"compare": rows, "compare_ratios": ratios})
    assert any(line.startswith("side by side (batch): ") for line in text)


def test_bounded_naive_variant_completes_a_song() -> None:
    """The fair baseline (semaphore + httpx Limits) runs end to end against the simulator."""
    from benchmarks._harness import run_variant, simulator
    from benchmarks.variants import VARIANTS

    workload = Workload(name="single", songs=2, accounts=(("a@example.com", 1),))
    with simulator(workload, time_scale=0.002, seed=1) as sim:
        result = run_variant(VARIANTS["naive_bounded"], sim, workload, time_scale=0.002,
                             download=False, timeout_s=60)  # fmt: skip
    assert result.error is None
    assert result.report is not None
    assert [s["status"] for s in result.report["songs"]] == ["completed", "completed"]


def test_a_variant_runs_from_another_checkout(tmp_path: Path) -> None:
    """--compare-with runs the library variant of another checkout: its own package, imported
    from its own directory (a copy of this one here; broken on purpose, it must fail)."""
    import shutil

    from benchmarks._harness import VariantResult, run_variant, simulator
    from benchmarks.variants import VARIANTS

    repo = Path(__file__).resolve().parents[1]
    other = tmp_path / "other"
    for part in ("benchmarks", "flowmusic_async"):
        shutil.copytree(repo / part, other / part, ignore=shutil.ignore_patterns("__pycache__"))
    workload = Workload(name="single", songs=1, accounts=(("a@example.com", 1),))

    def run() -> VariantResult:
        with simulator(workload, time_scale=0.002, seed=1) as sim:
            return run_variant(VARIANTS["library"], sim, workload, time_scale=0.002,
                               download=False, timeout_s=60, checkout=str(other))  # fmt: skip

    result = run()
    assert result.error is None, result.error
    assert result.report is not None
    assert [s["status"] for s in result.report["songs"]] == ["completed"]
    with (other / "flowmusic_async" / "__init__.py").open("a", encoding="utf-8") as init:
        init.write("\nraise RuntimeError('the other checkout was imported')\n")
    assert "the other checkout was imported" in (run().error or "")


def test_bench_objects_counts_the_objects_of_requests_in_progress() -> None:
    """A small batch (32 slots): the client process reports objects per request in progress
    and a full collection's time. (At this size the connections and lanes, built once, still
    weigh on the figure: about 57 per request here, 11 on 800 slots.)"""
    from benchmarks import bench_objects

    row = bench_objects.run_once(bench_objects.REPO, accounts_n=2, songs=40)
    assert row["objects_during"] > row["objects_before"] > 0
    assert 1 <= row["objects_per_request"] < 200
    assert row["full_collection_ms"] > 0


def test_the_environment_names_the_http_stack_sniffio_cores_and_load() -> None:
    """A CPU figure moves with httpcore, sniffio and the load: every output must say which."""
    from benchmarks import _report

    info = _report.machine()
    assert {"httpx", "httpcore", "anyio", "msgspec", "sniffio"} <= set(info["versions"])
    assert info["sniffio_importable"] is (importlib.util.find_spec("sniffio") is not None)
    assert len(info["load_average"]) in (0, 3)
    line = _report.environment_line(info)
    for word in (info["python"], "httpcore", "sniffio", "cores"):
        assert word in line
    assert line.startswith("env: ") and "load " in line
    assert _report.machine_lines(info)[0] == line


def test_every_benchmark_script_prints_and_saves_the_machine() -> None:
    """One place (`_report.print_machine`) for the environment, used by every script."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    scripts = [folder / "__main__.py", *sorted(folder.glob("bench_*.py"))]
    assert len(scripts) >= 7
    for script in scripts:
        assert "_report.print_machine()" in script.read_text(encoding="utf-8"), script.name


def test_decode_benchmark_json_records_the_machine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The standalone decode benchmark's JSON and table carry the environment line."""
    import json

    out = tmp_path / "decode.json"
    bench_decode.main(["--number", "1", "--repeat", "1", "--json", str(out)])
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert "httpcore" in saved["machine"]["versions"]
    assert "msgspec" in saved["decode"]
    assert capsys.readouterr().out.startswith("env: ")


def test_the_suite_ends_with_a_summary_that_tracks_the_lone_song(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m benchmarks --quick` ends on one screen: the environment line, every variant's
    key figures, and the lone song's CPU and requests, run three times even in a quick run."""
    import json

    from benchmarks.__main__ import main

    argv = ["--quick", "--workloads", "single", "--variants", "library,official_script",
            "--no-decode", "--no-download", "--time-scale", "0.002",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    summary = out[out.index("= summary =") :].splitlines()
    assert len(summary) <= 24
    assert summary[1].startswith("env: ") and "sniffio" in summary[1]
    assert any(line.startswith("lone song (tracked): library ") for line in summary)
    assert summary[-1].startswith("results: ")
    saved = json.loads(next(tmp_path.glob("*-quick.json")).read_text(encoding="utf-8"))
    lone = saved["tracked"]["lone_song"]
    assert set(lone) == {"library", "official_script"}
    assert lone["library"]["runs"] == 3
    assert lone["library"]["requests"] >= 3  # a POST, a sweep at least, the final record
    assert lone["library"]["cpu_ms"] > 0
    assert saved["machine"]["sniffio_importable"] in (True, False)


def test_pool_benchmark_runs_each_configuration_by_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_pool --repeats: one row per configuration, the median of its runs with the range."""
    from benchmarks import bench_pool

    monkeypatch.setattr(bench_pool, "CONFIGS", bench_pool.CONFIGS[:2])
    rows = bench_pool.run_all(burst=4, rounds=1, repeats=2)
    assert [row["config"] for row in rows] == [label for label, *_ in bench_pool.CONFIGS]
    for row in rows:
        assert len(row["runs"]) == 2
        low, high = row["range"]["burst_cpu_ms"]
        assert low <= row["burst_cpu_ms"] <= high
    assert len(bench_pool.table(rows)) == 3


def test_scale_benchmark_runs_the_client_under_another_interpreter() -> None:
    """--compare-python: the same client under another venv's python (with or without sniffio),
    labelled by that interpreter, the client saying whether it could import sniffio."""
    import sys

    from benchmarks import bench_scale

    row = bench_scale.run_once(12, time_scale=0.002, python=sys.executable)
    assert row["completed"] + row["failed"] == 12
    assert row["checkout"] == f"python {sys.executable}"
    assert row["sniffio"] is (importlib.util.find_spec("sniffio") is not None)
    assert bench_scale._checkout(row | {"sniffio": False}).endswith(" (no sniffio)")


def test_pool_benchmark_runs_each_configuration_under_another_interpreter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--compare-python: the same configuration in the same turn under a second interpreter,
    in its own row, whose client says whether it could import sniffio."""
    import sys

    from benchmarks import bench_pool

    monkeypatch.setattr(bench_pool, "CONFIGS", bench_pool.CONFIGS[:1])
    rows = bench_pool.run_all(burst=2, rounds=1, repeats=1, compare_python=sys.executable)
    label = bench_pool.CONFIGS[0][0]
    assert [row["config"].split(" (no sniffio)")[0] for row in rows] == [
        label,
        f"{label}, {sys.executable}",
    ]
    assert all(isinstance(row["runs"][0]["sniffio"], bool) for row in rows)


def test_instruction_counts_are_read_from_callgrind_and_startup_cancels_out() -> None:
    """bench_instructions: the count is callgrind's own summary line, and a side's figure
    per song is what the large run cost beyond the small one (start-up subtracted)."""
    from benchmarks import bench_instructions
    from benchmarks._harness import BenchError
    from benchmarks.bench_scale import callgrind_instructions

    stderr = "==41== Callgrind, a call-graph profiler\n==41== I   refs:      11,823,926,636\n"
    assert callgrind_instructions(stderr) == 11_823_926_636
    with pytest.raises(BenchError, match="I refs"):
        callgrind_instructions("Traceback (most recent call last): ...")
    small = {"completed": 20, "failed": 0, "instructions": 2_000_000_000, "requests": 60}
    large = {"completed": 990, "failed": 10, "instructions": 11_800_000_000, "requests": 2_020}
    row = bench_instructions.per_song(small, large)
    assert row["instructions_per_song"] == pytest.approx(9_800_000_000 / 980)
    assert row["requests_per_song"] == pytest.approx(1_960 / 980)
    assert row["startup_instructions"] == 2_000_000_000
    with pytest.raises(ValueError, match="the large run ended 20 songs"):
        bench_instructions.per_song(small, small)
