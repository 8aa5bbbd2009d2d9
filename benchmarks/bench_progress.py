"""CPU cost of the CLI's rich progress display per song, redraw-per-outcome vs timer-only.

`RichProgress` draws on a timer (every `REFRESH_S`). Drawing once more on every outcome as
well made a 2,000-song batch spend 18 ms of CPU per song in the display alone. Each variant
runs in its own process (`python -m benchmarks.bench_progress --variant NAME --songs N`):

- timer: the shipped `RichProgress`; outcomes are queued and printed with the next redraw.
- redraw: the earlier behaviour, a subclass that prints each outcome line and redraws at once.

The workload is what the display sees in a real batch: for every song the engine's events
(queued, placed, submitting, submitted, completed) and one outcome, with `--in-flight` songs
running at once on `--accounts` accounts of 16 slots, spread evenly over `--seconds` of wall
time so that the timer fires as it would. Output goes to /dev/null through a terminal-forced
console. The number reported is process CPU time per song (the whole run divided by the
songs), with the pure-workload cost (no display) measured the same way and subtracted.

    python -m benchmarks.bench_progress                  # every variant, default sizes
    python -m benchmarks.bench_progress --songs 20000 --variants timer
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

import anyio

VARIANTS = ("none", "timer", "redraw")


def _capacity(accounts: int, in_flight: int) -> Any:
    from flowmusic_async import SlotUsage

    per = max(1, in_flight // max(accounts, 1))
    usage = {
        f"user{i:03d}@example.com": SlotUsage(max_jobs=16, in_flight=min(per, 16), healthy=True)
        for i in range(accounts)
    }
    return lambda: usage


def _display(variant: str, songs: int, accounts: int, in_flight: int, devnull: Any) -> Any:
    from flowmusic_async._cli._output import Output
    from flowmusic_async._cli._progress import BatchProgress, RichProgress

    out = Output(stderr=devnull)
    capacity = _capacity(accounts, in_flight)
    if variant == "none":
        return BatchProgress(songs, 95.0, capacity)
    if variant == "timer":
        return RichProgress(songs, 95.0, capacity, out)

    class RedrawEveryOutcome(RichProgress):
        def finished(self, text: str) -> None:
            self.console.print(self.out.scrub(text), markup=False, highlight=False)
            self.live.update(self.render(), refresh=True)

    return RedrawEveryOutcome(songs, 95.0, capacity, out)


async def _drive(variant: str, songs: int, accounts: int, in_flight: int, seconds: float) -> float:
    from flowmusic_async._events import Event

    with open(os.devnull, "w") as devnull:
        progress = _display(variant, songs, accounts, in_flight, devnull)
        started_cpu = time.process_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(progress.run)
            step = 0.01
            per_step = max(1, round(songs * step / seconds))
            now = time.time()

            def event(kind: Any, n: int, **fields: Any) -> None:
                email = f"user{n % accounts:03d}@example.com"
                progress.on_event(
                    Event(kind=kind, at=now, client_ref=f"ref-{n}", email=email, **fields)
                )

            # Songs enter `in_flight` ahead of their end, as a full batch keeps every slot busy.
            def start(n: int) -> None:
                jobid = f"job:{n:08d}-0000-user:1-user{n % accounts:03d}@example.com-bot:flowmusic"
                for kind in ("queued", "placed", "submitting"):
                    event(kind, n)
                event("submitted", n, jobid=jobid)

            for n in range(min(in_flight, songs)):
                start(n)
            for n in range(songs):
                jobid = f"job:{n:08d}-0000-user:1-user{n % accounts:03d}@example.com-bot:flowmusic"
                event("completed", n, jobid=jobid)
                progress.on_outcome(
                    True,
                    resumed=False,
                    text=f"ok      line {n + 1}: song {n} in 95.0s",
                    jobid=jobid,
                )
                if n + in_flight < songs:
                    start(n + in_flight)
                if (n + 1) % per_step == 0:
                    await anyio.sleep(step)
            tg.cancel_scope.cancel()
        progress.close()
        return time.process_time() - started_cpu


def measure(
    variant: str, *, songs: int, accounts: int, in_flight: int, seconds: float
) -> dict[str, Any]:
    """Run one variant in this process; CPU seconds for the whole run."""
    cpu = anyio.run(_drive, variant, songs, accounts, in_flight, seconds)
    return {"variant": variant, "songs": songs, "cpu_s": cpu}


def run_all(
    variants: tuple[str, ...], *, songs: int, accounts: int, in_flight: int, seconds: float
) -> list[dict[str, Any]]:
    """Each variant (and the no-display baseline) in its own process."""
    results = []
    for variant in ("none", *[v for v in variants if v != "none"]):
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.bench_progress",
            "--variant",
            variant,
            "--songs",
            str(songs),
            "--accounts",
            str(accounts),
            "--in-flight",
            str(in_flight),
            "--seconds",
            str(seconds),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_progress")
    parser.add_argument("--variant", choices=VARIANTS, help="run one variant in this process")
    parser.add_argument("--variants", default="timer,redraw")
    parser.add_argument("--songs", type=int, default=2000)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--in-flight", type=int, default=800)
    parser.add_argument("--seconds", type=float, default=5.0, help="wall time the songs span")
    args = parser.parse_args(argv)
    sizes = {
        "songs": args.songs,
        "accounts": args.accounts,
        "in_flight": args.in_flight,
        "seconds": args.seconds,
    }
    if args.variant:
        print(json.dumps(measure(args.variant, **sizes)))
        return 0
    from benchmarks import _report

    _report.print_machine()
    results = run_all(tuple(args.variants.split(",")), **sizes)
    import rich

    baseline = results[0]["cpu_s"]
    print(
        f"{args.songs} songs, {args.in_flight} in flight on {args.accounts} accounts, "
        f"over {args.seconds:g} s; Python {platform.python_version()}, "
        f"rich {getattr(rich, '__version__', None) or _version('rich')}, {platform.machine()}"
    )
    print(f"{'variant':<8} {'cpu s':>8} {'display ms/song':>16}")
    for result in results:
        per_song = (result["cpu_s"] - baseline) / args.songs * 1000
        print(f"{result['variant']:<8} {result['cpu_s']:>8.2f} {per_song:>16.3f}")
    return 0


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    sys.exit(main())
