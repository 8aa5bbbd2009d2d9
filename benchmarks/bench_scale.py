"""Scale and network benchmark of `fm.generate_many` on 50 accounts x 16 slots (800 slots).

Each run starts a fresh simulator process and one client process; the client measures only
itself (CPU with time.process_time, RSS with psutil) and prints one JSON line; the parent adds
the simulator's own counters (requests, 429s, duplicates, when each job finished).

Three series:

- scale: N songs (1k, 5k, 20k; 100k with --sizes) read lazily from a generator. Client CPU
  per song, requests per song, 429s, RSS growth per song (RSS at the end minus RSS before the
  batch, less what the caller itself kept: one jobid and one float per song), start-up stall
  (the largest lateness of a ticker task that sleeps 5 ms, during the first 2 s of the batch)
  and the largest lateness over the whole run.
- leave: the same batch, left after `--leave-after` outcomes (a `break`): the time until
  `async with fm.generate_many(...)` exits, which includes cancelling the running jobs
  server-side (bounded by `Timing.cleanup_timeout`). Cheap even at 100k: no song needs to end
  but the first few.
- latency: 2,000 songs with every request delayed by an RTT of 0, 0.3, 1 or 2 API seconds
  (POST /_sim/faults {"latency_s": rtt * time_scale}), at a time scale of 0.1 so that a
  millisecond of client delay reads as 10 ms of API time, not as a second. Notice p50 (the
  caller holds the record minus the job ended in the simulator) and the makespan over that of
  a zero-latency FIFO client with the same durations.

`python -m benchmarks.bench_scale` runs all three; see --help for the knobs. Each figure is the
median of --repeats runs, with its range.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import itertools
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from benchmarks import _report
from benchmarks._harness import TOKEN, BenchError, simulator
from benchmarks._metrics import fifo_makespan, percentile
from benchmarks._stats import parse_stats
from benchmarks._workloads import Workload, accounts

ACCOUNTS = accounts(50, (16,))
TICK_S = 0.005
STARTUP_WINDOW_S = 2.0
RESULTS = Path(__file__).parent / "results"


# ----- the client process ----------------------------------------------------------------------


def prompts(n: int) -> Iterator[str]:
    """The requests, generated one by one as the batch reads them (nothing held up front)."""
    for i in range(n):
        yield f"bench scale song {i:06d}: warm lo-fi beat, vinyl crackle, 84 bpm"


def instrument_httpx(limits: str | None, deletes: list[float] | None = None) -> dict[str, int]:
    """Count what the client asks httpx to send (attempts and their errors, by type), note in
    `deletes` when each DELETE's answer arrived (perf_counter), and with
    `limits` ("MAX,KEEPALIVE[,CAP]") give every httpx.AsyncClient those connection limits and,
    with CAP, let at most CAP sends into httpx at once (the rest wait in an anyio
    CapacityLimiter instead of httpcore's pool queue): the experiment behind the Limits and
    the in-flight cap the library should set."""
    import anyio
    import httpx

    counts: dict[str, int] = {"sends": 0}
    send = httpx.AsyncClient.send
    parts = [int(x) for x in limits.split(",")] if limits else []
    cap = anyio.CapacityLimiter(parts[2]) if len(parts) > 2 else None

    async def counted(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> httpx.Response:
        counts["sends"] += 1
        try:
            if cap is None:
                return await send(self, *args, **kwargs)
            async with cap:
                return await send(self, *args, **kwargs)
        except Exception as exc:
            name = f"send {type(exc).__name__}"
            counts[name] = counts.get(name, 0) + 1
            raise
        finally:
            request = args[0] if args else kwargs.get("request")
            if deletes is not None and getattr(request, "method", None) == "DELETE":
                deletes.append(time.perf_counter())

    httpx.AsyncClient.send = counted  # type: ignore[method-assign]
    if parts:
        most, keepalive = parts[:2]
        init = httpx.AsyncClient.__init__

        def limited(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault(
                "limits", httpx.Limits(max_connections=most, max_keepalive_connections=keepalive)
            )
            init(self, *args, **kwargs)

        httpx.AsyncClient.__init__ = limited  # type: ignore[method-assign]
    return counts


async def client(
    base_url: str,
    songs: int,
    time_scale: float,
    leave_after: int,
    limits: str | None = None,
    gc_mode: str = "default",
    http_backend: str | None = None,
) -> dict[str, Any]:
    import anyio
    import psutil

    deletes: list[float] = []  # when each DELETE's answer arrived
    counts = instrument_httpx(limits, deletes)
    from flowmusic_async import FlowMusic, Timing

    # How much of the loop's stalls is CPython's cyclic garbage collector: "freeze" moves
    # everything imported so far out of its reach (what an application may do after start-up),
    # "off" disables it (the floor; memory then grows with every reference cycle).
    if gc_mode == "freeze":
        gc.collect()
        gc.freeze()
    elif gc_mode == "off":
        gc.disable()

    proc = psutil.Process()
    gaps: list[tuple[float, float]] = []  # (seconds since the batch started, lateness)
    results: dict[str, float] = {}  # what the caller keeps: jobid -> when it got the record
    failed = 0
    errors: dict[str, int] = {}  # error type -> count, for the failed outcomes
    out: dict[str, Any] = {}
    # Only when asked: a checkout from before `http_backend` existed still runs.
    backend: dict[str, Any] = {"http_backend": http_backend} if http_backend else {}
    fm = FlowMusic(token=TOKEN, base_url=base_url, timing=Timing.scaled(time_scale), **backend)
    async with fm:
        gc.collect()
        gc_before = gc.get_stats()
        gc_time = _GcClock()
        gc.callbacks.append(gc_time)
        rss0 = proc.memory_info().rss
        rss_peak = rss0
        cpu0 = time.process_time()
        t0 = time.time()
        start = time.perf_counter()

        async def ticker() -> None:
            nonlocal rss_peak
            ticks = 0
            while True:
                before = time.perf_counter()
                await anyio.sleep(TICK_S)
                now = time.perf_counter()
                gaps.append((before - start, now - before - TICK_S))
                ticks += 1
                if ticks % 50 == 0:
                    rss_peak = max(rss_peak, proc.memory_info().rss)

        left_at = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            async with fm.generate_many(prompts(songs)) as outcomes:
                async for outcome in outcomes:
                    if outcome.job is not None:
                        results[outcome.job.jobid] = time.time()
                    else:
                        failed += 1
                        name = type(outcome.error).__name__
                        errors[name] = errors.get(name, 0) + 1
                    if leave_after and len(results) + failed >= leave_after:
                        left_at = time.perf_counter()
                        break
            exited_at = time.perf_counter()
            tg.cancel_scope.cancel()
        cpu = time.process_time() - cpu0
        # What the cyclic garbage collector found and freed during the batch: objects caught
        # in reference cycles, which reference counting alone would have freed at once.
        gc_after = gc.get_stats()
        gc.callbacks.remove(gc_time)
        rss_end = proc.memory_info().rss
        rss_peak = max(rss_peak, rss_end)
    kept = sys.getsizeof(results) + sum(sys.getsizeof(k) + 24 for k in results)
    startup = [lateness for at, lateness in gaps if at < STARTUP_WINDOW_S]
    out.update(
        t0=t0,
        songs=songs,
        completed=len(results),
        failed=failed,
        errors=errors,
        httpx=counts,
        cpu_s=cpu,
        wall_s=exited_at - start,
        rss0_mb=rss0 / 2**20,
        rss_end_mb=rss_end / 2**20,
        rss_peak_mb=rss_peak / 2**20,
        kept_mb=kept / 2**20,
        gc_collected=_gc_delta(gc_before, gc_after, "collected"),
        gc_collections=_gc_delta(gc_before, gc_after, "collections"),
        gc_s=gc_time.seconds,
        stall_startup_ms=max(startup, default=0.0) * 1000,
        stall_max_ms=max((g for _, g in gaps), default=0.0) * 1000,
        leave_s=(exited_at - left_at) if left_at is not None else None,
        # httpcore retries `import sniffio` on every request without it (issue 27).
        sniffio=importlib.util.find_spec("sniffio") is not None,
        # Leaving, split: from the break to the last DELETE's answer (the cleanup), and from
        # there to the exit (what leaving costs beyond the cleanup).
        **(_leave_split(left_at, exited_at, deletes) if left_at is not None else {}),
        results=results,
    )
    return out


class _GcClock:
    """A `gc.callbacks` entry that adds up the time the cyclic collector ran."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


def _gc_delta(before: list[dict[str, int]], after: list[dict[str, int]], key: str) -> int:
    """`key` of `gc.get_stats()` summed over the generations, `after` minus `before`."""
    return sum(a[key] - b[key] for a, b in zip(after, before, strict=True))


def _leave_split(left_at: float, exited_at: float, deletes: list[float]) -> dict[str, float]:
    answered = [at for at in deletes if at >= left_at]
    last = max(answered, default=left_at)
    return {"deletes_done_s": last - left_at, "after_deletes_s": max(0.0, exited_at - last)}


# ----- the parent ------------------------------------------------------------------------------


def run_once(songs: int, **options: Any) -> dict[str, Any]:
    """One client run against a fresh simulator: the client's report plus the server's view.

    Options (see `run_together`): time_scale, rtt_s, leave_after, seed, limits, gc_mode,
    checkout, python, http_backend, under_callgrind.
    """
    return run_together([{"songs": songs, **options}])[0]


def run_together(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the client of each point at the same time, each against a fresh simulator of its
    own, and return their rows in order.

    Side by side, the clients share one moment of the machine (its load, its clock speed, the
    other tenants of its host), so the ratio of their figures varies far less than that of
    runs taken by turns (docs/benchmarks.md). Each point: `songs`, `time_scale`, and
    optionally `rtt_s`, `leave_after`, `seed`, `limits`, `gc_mode`, `http_backend`,
    `under_callgrind` (count the client's instructions: `bench_instructions`),
    `checkout` (run the client of another checkout of this repository: its own benchmarks
    and flowmusic_async, imported from its directory) and `python` (this checkout's client
    under another interpreter, another virtual environment).
    """
    with ExitStack() as stack:
        runs = [_ClientRun(stack, **point) for point in points]
        return [run.finish() for run in runs]


class _ClientRun:
    """One client process and its simulator, started at once; `finish` waits for the client."""

    def __init__(
        self,
        stack: ExitStack,
        *,
        songs: int,
        time_scale: float,
        rtt_s: float = 0.0,
        leave_after: int = 0,
        seed: int = 7,
        limits: str | None = None,
        gc_mode: str = "default",
        checkout: str | None = None,
        python: str | None = None,
        http_backend: str | None = None,
        under_callgrind: bool = False,
    ) -> None:
        self.songs, self.time_scale, self.rtt_s = songs, time_scale, rtt_s
        self.under_callgrind = under_callgrind
        self.leave_after, self.gc_mode = leave_after, gc_mode
        self.labels = {
            "checkout": (f"python {python}" if python else checkout) or "this",
            "http_backend": http_backend or "default",
        }
        self.workload = Workload(name="scale", songs=songs, accounts=ACCOUNTS)
        loads = _report.load_average()  # a shared machine: what ran before
        self.load_before = loads[0] if loads else None
        sim = self.sim = stack.enter_context(
            simulator(self.workload, time_scale=time_scale, seed=seed)
        )
        if rtt_s:
            answer = httpx.post(
                f"{sim.origin}/_sim/faults", json={"latency_s": rtt_s * time_scale}, timeout=30
            )
            answer.raise_for_status()
        cmd = [python or sys.executable, "-m", "benchmarks.bench_scale", "--client", sim.base_url,
               "--songs", str(songs), "--time-scale", repr(time_scale),
               "--leave-after", str(leave_after)]  # fmt: skip
        if limits:
            cmd += ["--httpx-limits", limits]
        if gc_mode != "default":
            cmd += ["--gc", gc_mode]
        if http_backend:
            cmd += ["--http-backend", http_backend]
        if under_callgrind:  # bench_instructions: count the client's instructions
            cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd]
        # Files, not pipes: a client whose report fills a pipe nobody reads yet would stall.
        self.out = stack.enter_context(tempfile.TemporaryFile("w+"))  # noqa: SIM115
        self.err = stack.enter_context(tempfile.TemporaryFile("w+"))  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=self.err, text=True, cwd=checkout)
        stack.callback(self.proc.kill)  # a no-op once it has exited

    def finish(self) -> dict[str, Any]:
        """Wait for the client; its report plus the simulator's view, as one row."""
        code = self.proc.wait(timeout=1800)
        self.out.seek(0)
        self.err.seek(0)
        if code != 0:
            tail = "\n".join(self.err.read().strip().splitlines()[-8:])
            raise BenchError(f"client exited {code}: {tail}")
        report = json.loads(self.out.read().strip().splitlines()[-1])
        if self.under_callgrind:
            report["instructions"] = callgrind_instructions(self.err.read())
        if self.rtt_s:  # the stats request itself should not wait
            httpx.post(f"{self.sim.origin}/_sim/faults", json={"latency_s": 0.0}, timeout=30)
        stats = parse_stats(self.sim.stats(), time_scale=self.time_scale)
        return self._row(report, stats)

    def _row(self, report: dict[str, Any], stats: Any) -> dict[str, Any]:
        time_scale = self.time_scale
        results: dict[str, float] = report.pop("results")
        jobs = stats.jobs
        notice = [
            (results[j] - jobs[j].finished_at) / time_scale
            for j in results
            if j in jobs and jobs[j].finished_at
        ]
        durations = [job.duration_s * time_scale for job in jobs.values()]
        row: dict[str, Any] = (
            report
            | self.labels
            | {
                "load_before": self.load_before,
                "gc_mode": self.gc_mode,
                "rtt_s": self.rtt_s,
                "time_scale": time_scale,
                "requests": sum(stats.api_requests.values()),
                "requests_by_endpoint": stats.api_requests,
                "responses_429": stats.responses_429,
                "deletes": _deletes(stats.api_requests),
                "duplicates": stats.duplicate_submissions,
                "notice_p50_s": percentile(notice, 50),
                "notice_p95_s": percentile(notice, 95),
            }
        )
        done = report["completed"] + report["failed"]
        if done:
            row["cpu_ms_per_song"] = report["cpu_s"] * 1000 / done
            row["requests_per_song"] = row["requests"] / done
            growth = report["rss_end_mb"] - report["rss0_mb"] - report["kept_mb"]
            row["rss_growth_kb_per_song"] = growth * 1024 / self.songs
            if "gc_collected" in report:  # a checkout from before it was measured has none
                row["cyclic_garbage_per_song"] = report["gc_collected"] / done
                row["gc_ms_per_song"] = report["gc_s"] * 1000 / done
            # Near 1, the client's loop was saturated: the run measured an overloaded client.
            row["client_busy"] = report["cpu_s"] / report["wall_s"] if report["wall_s"] else None
        if not self.leave_after and results:
            last = max(results.values()) - report["t0"]
            fifo = fifo_makespan([0.0] * len(durations), durations, self.workload.slots)
            row["makespan_s"] = last / time_scale
            row["makespan_over_fifo"] = last / fifo if fifo else None
        return row


# callgrind's summary line on stderr: "==1234== I   refs:      11,823,926,636"
_I_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def callgrind_instructions(stderr: str) -> int:
    """The instructions callgrind counted, from the summary it prints when the client exits."""
    found = _I_REFS.findall(stderr)
    if not found:
        raise BenchError("no 'I refs' line in the client's stderr: did it run under callgrind?")
    return int(found[-1].replace(",", ""))


def _deletes(requests: dict[str, int]) -> int:
    """DELETE requests: the server-side cancellations of a batch left early."""
    return sum(n for key, n in requests.items() if key.startswith("DELETE "))


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric figure as its median over the runs, with [min, max] under `range`."""
    out: dict[str, Any] = {"runs": len(rows), "range": {}}
    for key, value in rows[0].items():
        values = [r.get(key) for r in rows]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            nums = [float(v) for v in values if v is not None]
            out[key] = statistics.median(nums)
            out["range"][key] = [min(nums), max(nums)]
        else:
            out[key] = value
    return out


def series(
    label: str, points: list[dict[str, Any]], repeats: int, *, verbose: bool = True
) -> list[dict[str, Any]]:
    """Run each point `repeats` times, by turns (so slow moments spread over the points),
    in reverse order every other turn (so no point always runs first: ABBA)."""
    runs: list[list[dict[str, Any]]] = [[] for _ in points]
    for r in range(repeats):
        turn = list(enumerate(points))
        for i, point in turn if r % 2 == 0 else reversed(turn):
            started = time.perf_counter()
            try:
                row = run_once(**point)
            except BenchError as exc:
                print(f"  {label} {point}: {exc}", file=sys.stderr, flush=True)
                continue
            runs[i].append(row)
            if verbose:
                print(f"  {label} run {r + 1}/{repeats} {_brief(row)} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    return [median_row(rs) for rs in runs if rs]


def side_by_side(
    pairs: list[tuple[dict[str, Any], dict[str, Any]]], repeats: int
) -> tuple[list[dict[str, Any]], list[list[float]]]:
    """Run each pair (this, other) `repeats` times at the same time (`run_together`),
    started in alternating order; the median rows, and per pair the ratios of the other's CPU
    per song over this one's, one per run."""
    runs: list[list[dict[str, Any]]] = [[] for _ in range(2 * len(pairs))]
    ratios: list[list[float]] = [[] for _ in pairs]
    for r in range(repeats):
        for i, (this, other) in enumerate(pairs):
            started = time.perf_counter()
            flip = r % 2 == 1
            try:
                rows = run_together([other, this] if flip else [this, other])
            except BenchError as exc:
                print(f"  compare {this} / {other}: {exc}", file=sys.stderr, flush=True)
                continue
            mine, theirs = rows[::-1] if flip else rows
            runs[2 * i].append(mine)
            runs[2 * i + 1].append(theirs)
            ratios[i].append(theirs["cpu_ms_per_song"] / mine["cpu_ms_per_song"])
            print(f"  compare at once {r + 1}/{repeats} this: {_brief(mine)}", flush=True)
            print(f"  {'':>22}other: {_brief(theirs)} -> other/this {ratios[i][-1]:.3f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    return [median_row(rs) for rs in runs if rs], ratios


def _brief(row: dict[str, Any]) -> str:
    keys = ("songs", "rtt_s", "cpu_ms_per_song", "requests_per_song", "rss_growth_kb_per_song",
            "cyclic_garbage_per_song", "stall_startup_ms", "leave_s", "notice_p50_s",
            "makespan_over_fifo", "client_busy", "load_before")  # fmt: skip
    return " ".join(f"{k}={_fmt(row.get(k))}" for k in keys if row.get(k) is not None)


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _cell(row: dict[str, Any], key: str, spec: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    lo, hi = row.get("range", {}).get(key, [value, value])
    if row.get("runs", 1) > 1 and hi != lo:
        return f"{value:{spec}} [{lo:{spec}}-{hi:{spec}}]"
    return f"{value:{spec}}"


def marginal_rss(rows: list[dict[str, Any]]) -> list[tuple[int, int, float]]:
    """KB of client RSS per extra song between consecutive sizes (what the caller keeps aside):
    the fixed costs (imports, a slot's worth of tasks, the pool) cancel out."""
    grown = sorted(
        (int(r["songs"]), r["rss_end_mb"] - r["rss0_mb"] - r["kept_mb"])
        for r in rows
        if r.get("rss_end_mb") is not None
    )
    return [
        (a, b, (gb - ga) * 1024 / (b - a))
        for (a, ga), (b, gb) in itertools.pairwise(grown)
        if b > a
    ]


Row = dict[str, Any]
# A table column: its title, its width, and how one row's cell reads.
Column = tuple[str, int, Callable[[Row], str]]


def _table(columns: list[Column], rows: list[Row]) -> list[str]:
    """A header line and one line per row, every cell right-aligned to its column's width."""
    lines = [" | ".join(f"{title:>{width}}" for title, width, _ in columns)]
    for row in rows:
        lines.append(" | ".join(f"{cell(row):>{width}}" for _, width, cell in columns))
    return lines


def _ranged(key: str, spec: str) -> Callable[[Row], str]:
    """A cell showing the median of `key` and its [min-max] over the runs (see `_cell`)."""
    return lambda row: _cell(row, key, spec)


def _plain(key: str, spec: str) -> Callable[[Row], str]:
    return lambda row: format(row.get(key, 0), spec)


def _songs(row: Row) -> str:
    return f"{int(row['songs']):,}"


def _checkout(row: Row) -> str:
    sniffio = "" if row.get("sniffio", True) else " (no sniffio)"
    backend = row.get("http_backend", "default")
    suffix = sniffio + ("" if backend == "default" else f" ({backend})")
    return str(row["checkout"])[-(24 - len(suffix)) :] + suffix


def tables(result: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if result.get("scale"):
        lines += ["", "scale: generate_many on 50 x 16 slots, time scale "
                  f"{result['scale'][0]['time_scale']} (median [range] of "
                  f"{result['scale'][0]['runs']} runs)"]  # fmt: skip
        lines += _table(
            [
                ("songs", 7, _songs),
                ("CPU ms/song", 20, _ranged("cpu_ms_per_song", ".2f")),
                ("req/song", 10, _ranged("requests_per_song", ".3f")),
                ("429", 4, _plain("responses_429", ".0f")),
                ("dup", 3, _plain("duplicates", ".0f")),
                ("RSS KB/song", 18, _ranged("rss_growth_kb_per_song", ".2f")),
                ("peak RSS MB", 12, _plain("rss_peak_mb", ".0f")),
                ("start stall ms", 18, _ranged("stall_startup_ms", ".1f")),
                ("max stall ms", 18, _ranged("stall_max_ms", ".1f")),
            ],
            result["scale"],
        )
        slopes = marginal_rss(result["scale"])
        if slopes:
            lines.append(
                "RSS growth per extra song (the slope between sizes; the target is < 1 KB): "
                + ", ".join(f"{a:,}->{b:,}: {kb:.2f} KB" for a, b, kb in slopes)
            )
    if result.get("compare"):
        rows = [r for r in result["compare"] if r.get("leave_s") is None]
        mine = next(
            r
            for r in rows
            if r["checkout"] == "this" and r.get("http_backend") in (None, "default")
        )
        lines += ["", f"compare: {int(mine['songs']):,} songs, this checkout and another "
                  "(or this one under another python), interleaved (median [range])"]  # fmt: skip
        lines += _table(
            [
                ("checkout", 24, _checkout),
                ("CPU ms/song", 20, _ranged("cpu_ms_per_song", ".2f")),
                ("vs this", 7,
                 lambda r: f"{r['cpu_ms_per_song'] / mine['cpu_ms_per_song']:.2f}x"),
                ("req/song", 8, _plain("requests_per_song", ".3f")),
                ("cycles/song", 11,  # objects the cyclic GC freed; "-": not measured there
                 lambda r: format(r["cyclic_garbage_per_song"], ".2f")
                 if "cyclic_garbage_per_song" in r else "-"),
                ("start stall ms", 18, _ranged("stall_startup_ms", ".1f")),
                ("max stall ms", 18, _ranged("stall_max_ms", ".1f")),
            ],
            rows,
        )  # fmt: skip
        kinds = ("batch", "left early")
        for ratios, what in zip(result.get("compare_ratios", []), kinds, strict=False):
            if ratios:
                lines.append(
                    f"side by side ({what}): the other's CPU per song over this one's, "
                    f"median {statistics.median(ratios):.3f} [{min(ratios):.3f}-"
                    f"{max(ratios):.3f}] over {len(ratios)} runs"
                )
        left = [r for r in result["compare"] if r.get("leave_s") is not None]
        if left:
            lines += ["", f"compare, left early after {result['leave_after']} outcomes"]
            lines += _table(
                [
                    ("checkout", 24, _checkout),
                    ("leave s", 18, _ranged("leave_s", ".3f")),
                    ("DELETEs", 7, _plain("deletes", ".0f")),
                    ("last DELETE answered s", 22, _ranged("deletes_done_s", ".3f")),
                    ("then returned s", 18, _ranged("after_deletes_s", ".3f")),
                    ("stall of leaving ms", 20, _ranged("stall_startup_ms", ".1f")),
                ],
                left,
            )
    if result.get("gc"):
        songs = int(result["gc"][0]["songs"])
        lines += ["", f"garbage collector: {songs:,} songs, CPython's cyclic GC as is, "
                  "frozen after imports, off"]  # fmt: skip
        lines += _table(
            [
                ("gc", 8, lambda r: str(r["gc_mode"])),
                ("start stall ms", 18, _ranged("stall_startup_ms", ".1f")),
                ("max stall ms", 18, _ranged("stall_max_ms", ".1f")),
                ("CPU ms/song", 18, _ranged("cpu_ms_per_song", ".2f")),
                ("peak RSS MB", 12, _plain("rss_peak_mb", ".0f")),
            ],
            result["gc"],
        )
    if result.get("leave"):
        lines += ["", f"leave early: break after {result['leave_after']} outcomes"]
        lines += _table(
            [
                ("songs", 7, _songs),
                ("leave s", 18, _ranged("leave_s", ".3f")),
                ("DELETEs", 7,
                 lambda r: f"{r.get('deletes', _deletes(r['requests_by_endpoint'])):.0f}"),
                ("last DELETE answered s", 22, _ranged("deletes_done_s", ".3f")),
                ("then returned s", 18, _ranged("after_deletes_s", ".3f")),
                ("start stall ms", 18, _ranged("stall_startup_ms", ".1f")),
                ("RSS at exit MB", 14, _plain("rss_end_mb", ".0f")),
            ],
            result["leave"],
        )  # fmt: skip
    if result.get("latency"):
        row0 = result["latency"][0]
        lines += [
            "",
            f"latency: {int(row0['songs']):,} songs, time scale {row0['time_scale']}, durations in "
            "API seconds; target notice p50 <= 2 x RTT + poll_interval (3 s)",
        ]
        lines += _table(
            [
                ("RTT s", 6, _plain("rtt_s", ".1f")),
                ("notice p50 s", 18, _ranged("notice_p50_s", ".2f")),
                ("notice p95 s", 18, _ranged("notice_p95_s", ".2f")),
                ("makespan/FIFO", 20, _ranged("makespan_over_fifo", ".3f")),
                ("req/song", 9, _plain("requests_per_song", ".3f")),
                ("CPU ms/song", 12, _plain("cpu_ms_per_song", ".2f")),
            ],
            result["latency"],
        )
    return lines


def chart(path: Path, result: dict[str, Any]) -> str:
    """CPU/song, RSS, loop stall and notice p50 against N, and notice p50 against RTT."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install -e '.[bench]')"
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    scale = result.get("scale", [])
    leave = result.get("leave", [])
    lat = result.get("latency", [])

    def plot(ax: Any, rows: list[dict[str, Any]], x: str, y: str, title: str, **kw: Any) -> None:
        rows = [r for r in rows if r.get(y) is not None]
        if not rows:
            if not ax.has_data():  # a second series on the same axes may be the empty one
                ax.set_visible(False)
            return
        xs = [r[x] for r in rows]
        ys = [r[y] for r in rows]
        err = [
            [v - r.get("range", {}).get(y, [v, v])[0] for v, r in zip(ys, rows, strict=True)],
            [r.get("range", {}).get(y, [v, v])[1] - v for v, r in zip(ys, rows, strict=True)],
        ]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, **kw)
        ax.set_title(title)
        ax.set_xlabel(x.replace("_", " "))
        ax.grid(True, alpha=0.3)

    plot(axes[0][0], scale, "songs", "cpu_ms_per_song", "client CPU ms per song")
    plot(axes[0][1], scale, "songs", "rss_growth_kb_per_song", "RSS growth KB per song",
         label="average over the batch")  # fmt: skip
    slopes = marginal_rss(scale)
    if slopes:
        axes[0][1].plot([b for _, b, _ in slopes], [kb for _, _, kb in slopes], "s-",
                        label="per extra song (slope from the size before)")  # fmt: skip
    axes[0][1].axhline(1.0, color="red", ls="--", lw=1, label="target 1 KB")
    plot(axes[0][2], scale, "songs", "stall_startup_ms", "start-up loop stall ms",
         label="full batches")  # fmt: skip
    plot(axes[0][2], leave, "songs", "stall_startup_ms", "start-up loop stall ms",
         label="batches left early")  # fmt: skip
    axes[0][2].axhline(50, color="red", ls="--", lw=1, label="target 50 ms")
    plot(
        axes[1][0],
        scale,
        "songs",
        "notice_p50_s",
        "notice p50 (API s) vs N, RTT 0 (client CPU-bound)",
    )
    plot(axes[1][1], lat, "rtt_s", "notice_p50_s", "notice p50 (API s) vs RTT")
    if lat:
        rtts = [r["rtt_s"] for r in lat]
        axes[1][1].plot(rtts, [2 * r + 3.0 for r in rtts], "r--", lw=1, label="2 x RTT + 3 s")
    plot(axes[1][2], lat, "rtt_s", "makespan_over_fifo", "makespan / zero-latency FIFO vs RTT")
    if lat:
        axes[1][2].axhline(1.1, color="red", ls="--", lw=1, label="target 1.1x")
    for ax in axes.flat:
        if ax.get_visible():
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
            if ax.get_xlabel() == "songs":
                ax.set_xscale("log")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return f"chart: {path}"


def calibrate() -> float:
    """Client CPU ms of one sequential httpx GET on this machine: the unit to read CPU/song in
    (a shared VM's syscalls can cost several times a quiet laptop's)."""
    workload = Workload(name="calibrate", songs=1, accounts=ACCOUNTS)
    with simulator(workload, time_scale=0.01, seed=7) as sim:
        cmd = [sys.executable, "-m", "benchmarks.bench_pool", "--client", sim.base_url,
               "--burst", "1", "--rounds", "1", "--config", "[null, null, null]"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    return float(json.loads(proc.stdout)["sequential_cpu_ms"])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_scale", description=__doc__)
    p.add_argument("--client", metavar="BASE_URL", help=argparse.SUPPRESS)
    p.add_argument("--songs", type=int, default=100, help=argparse.SUPPRESS)
    p.add_argument("--sizes", default="1000,5000,20000", help="scale series, songs per run")
    p.add_argument("--leave-sizes", default="1000,5000,20000,100000", help="leave-early series")
    p.add_argument("--leave-after", type=int, default=100)
    p.add_argument("--rtts", default="0,0.3,1,2", help="latency series, RTT in API seconds")
    p.add_argument("--latency-songs", type=int, default=2000)
    p.add_argument("--time-scale", type=float, default=0.01, help="scale and leave series")
    p.add_argument("--latency-time-scale", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--latency-repeats", type=int, default=3)
    p.add_argument(
        "--only", default="scale,leave,latency", help="comma list of series (also: gc, compare)"
    )
    p.add_argument("--gc-songs", type=int, default=5000, help="gc series: songs per run")
    p.add_argument(
        "--compare-with",
        metavar="DIR",
        help="compare series: another checkout (e.g. a git worktree of an older commit)",
    )
    p.add_argument(
        "--compare-python",
        metavar="PYTHON",
        help="compare series: this checkout's client under another interpreter, e.g. a venv "
        "without sniffio (`python -m venv V && V/bin/pip install -e . psutil && "
        "V/bin/pip uninstall -y sniffio`)",
    )
    p.add_argument(
        "--at-once",
        action="store_true",
        help="compare series: run both sides at the same time, each on its own simulator, "
        "instead of by turns (their CPU ratio then varies far less from run to run)",
    )
    p.add_argument(
        "--gc",
        choices=("default", "freeze", "off"),
        default="default",
        help="client: CPython's garbage collector as is, frozen after imports, or off",
    )
    p.add_argument(
        "--httpx-limits",
        metavar="MAX,KEEPALIVE",
        help="run the client with these httpx connection limits (default: the library's own)",
    )
    p.add_argument(
        "--http-backend",
        choices=("auto", "httpx", "aiohttp"),
        help="client: FlowMusic(http_backend=...); compare series: the other side's (this "
        "checkout, by turns with its default)",
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument(
        "--render",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="no run: print the tables and draw the chart of saved results (series merged)",
    )
    return p.parse_args(argv)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    ns = parse_args(argv)
    if ns.client:
        import anyio

        report = anyio.run(
            client,
            ns.client,
            ns.songs,
            ns.time_scale,
            ns.leave_after,
            ns.httpx_limits,
            ns.gc,
            ns.http_backend,
        )
        print(json.dumps(report))
        return 0
    if ns.render:
        merged: dict[str, Any] = {}
        for path in ns.render:
            saved = json.loads(path.read_text(encoding="utf-8"))
            for key, value in saved.items():
                if isinstance(value, list) and key in merged:
                    merged[key] = sorted(merged[key] + value, key=lambda r: r["songs"])
                else:
                    merged.setdefault(key, value)
        print("\n".join(tables(merged)))
        print(chart(ns.render[0].with_suffix(".png"), merged))
        return 0
    info = _report.print_machine()
    result_unit = calibrate()
    print(
        f"unit: one sequential httpx GET costs {result_unit:.2f} ms of client CPU here", flush=True
    )
    only = set(ns.only.split(","))
    result: dict[str, Any] = {
        "machine": info,
        "leave_after": ns.leave_after,
        "httpx_limits": ns.httpx_limits or "library default",
        "sequential_get_cpu_ms": result_unit,
    }
    if "scale" in only:
        points = [
            {"songs": n, "time_scale": ns.time_scale, "limits": ns.httpx_limits}
            for n in _ints(ns.sizes)
        ]
        result["scale"] = series("scale", points, ns.repeats)
    if "leave" in only:
        points = [
            {"songs": n, "time_scale": ns.time_scale, "leave_after": ns.leave_after}
            for n in _ints(ns.leave_sizes)
        ]
        result["leave"] = series("leave", points, ns.repeats)
    if "compare" in only:
        sides = [bool(ns.compare_with), bool(ns.compare_python), bool(ns.http_backend)]
        if sum(sides) != 1:
            raise SystemExit(
                "--only compare needs one of --compare-with DIR, --compare-python PYTHON "
                "or --http-backend NAME"
            )
        other: dict[str, str] = (
            {"checkout": str(Path(ns.compare_with).resolve())}
            if ns.compare_with
            else {"python": ns.compare_python}
            if ns.compare_python
            else {"http_backend": ns.http_backend}
        )
        # Each checkout runs the whole batch, and the same batch left early.
        points = [
            {"songs": n, "time_scale": ns.time_scale, "leave_after": leave} | side
            for n in _ints(ns.sizes)[:1]
            for leave in (0, ns.leave_after)
            for side in ({}, other)
        ]
        if ns.at_once:
            pairs = [(points[i], points[i + 1]) for i in range(0, len(points), 2)]
            result["compare"], result["compare_ratios"] = side_by_side(pairs, ns.repeats)
        else:
            result["compare"] = series("compare", points, ns.repeats)
    if "gc" in only:
        points = [
            {"songs": ns.gc_songs, "time_scale": ns.time_scale, "gc_mode": mode}
            for mode in ("default", "freeze", "off")
        ]
        result["gc"] = series("gc", points, ns.repeats)
    if "latency" in only:
        points = [
            {"songs": ns.latency_songs, "time_scale": ns.latency_time_scale, "rtt_s": float(r)}
            for r in ns.rtts.split(",")
        ]
        result["latency"] = series("latency", points, ns.latency_repeats)
    print("\n".join(tables(result)))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = ns.out / f"{stamp}-scale.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"\nresults: {path}")
    print(chart(ns.out / f"{stamp}-scale.png", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
