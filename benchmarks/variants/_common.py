"""What every variant process shares: its arguments, the per-song log, and the JSON report.

A variant measures only itself: CPU time (time.process_time, all threads) and peak RSS
(getrusage(RUSAGE_SELF)) of its own process, from just before the first request to just after
the last result, and prints one JSON object on stdout for the parent to read.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._workloads import Workload

# Timings of the first-party script and the naive client, in simulated seconds.
SLEEP_429_S = 10.0
OFFICIAL_POLL_S = 15.0
OFFICIAL_MAX_429_RETRIES = 6
NAIVE_POLL_S = 1.0
# A sync request must stay open for the whole song; the spec asks for >= 300 s.
SYNC_READ_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class VariantArgs:
    base_url: str
    token: str
    time_scale: float
    workload: Workload
    download: bool
    options: dict[str, str] = field(default_factory=dict)

    def scaled(self, simulated_seconds: float) -> float:
        """Real seconds for a duration given in simulated (API) seconds."""
        return simulated_seconds * self.time_scale

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def parse_args(argv: Sequence[str] | None = None) -> VariantArgs:
    parser = argparse.ArgumentParser(description="Run one benchmark variant against a simulator.")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--time-scale", type=float, required=True)
    parser.add_argument("--workload", required=True, help="JSON of benchmarks._workloads.Workload")
    parser.add_argument("--no-download", action="store_true", help="skip fetching the m4a files")
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="variant-specific"
    )
    ns = parser.parse_args(argv)
    if ns.time_scale <= 0:
        parser.error("--time-scale must be positive")
    options = {}
    for item in ns.option:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--option wants KEY=VALUE, got {item!r}")
        options[key] = value
    return VariantArgs(
        base_url=ns.base_url.rstrip("/"),
        token=ns.token,
        time_scale=ns.time_scale,
        workload=Workload.from_json(ns.workload),
        download=not ns.no_download,
        options=options,
    )


@dataclass
class Song:
    """What the caller saw for one requested song (wall-clock times from time.time())."""

    index: int
    prompt: str
    requested_at: float
    jobid: str | None = None
    result_at: float | None = None  # the caller holds the terminal job record
    done_at: float | None = None  # ... and its files, when downloading
    status: str = "lost"  # "completed" | "failed" | "lost"
    error: str | None = None
    clips: int = 0


@dataclass
class Run:
    """The per-song log of one variant run, plus anything the variant wants to say."""

    args: VariantArgs
    songs: list[Song] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    t0: float = 0.0
    download_dir: Path = Path(".")
    download_count: int = 0

    cpu0: float | None = None

    def start(self) -> None:
        """The workload starts now: call it once the client object exists, before its first
        request. Client construction (an SSL context, a thread pool) is excluded on purpose:
        at a time scale of 0.01 its ~0.1 s would weigh like 10 s of API time."""
        self.cpu0 = time.process_time()
        self.t0 = time.time()
        offsets = self.args.workload.arrival_offsets(self.args.time_scale)
        self.songs = [
            Song(index=i, prompt=self.args.workload.prompt(i), requested_at=self.t0 + offset)
            for i, offset in enumerate(offsets)
        ]

    def finished(
        self, song: Song, *, jobid: str, status: str, clips: int = 0, error: str | None = None
    ) -> None:
        """Note the moment the caller holds the terminal record of `song`."""
        song.result_at = time.time()
        song.jobid = jobid
        song.status = status
        song.clips = clips
        song.error = error

    def finished_record(self, song: Song, record: dict[str, Any]) -> None:
        """`finished` from a raw job record (the baselines speak plain JSON)."""
        error = record.get("error")
        self.finished(
            song,
            jobid=record["jobid"],
            status=record["status"],
            clips=len(record.get("clips") or ()),
            error=json.dumps(error) if error is not None else None,
        )

    def downloaded(self, song: Song) -> None:
        song.done_at = time.time()

    def file_path(self, url: str) -> Path:
        """Where a baseline writes a downloaded clip (the official script names it by clip)."""
        name = url.rsplit("/", 1)[-1].split("?", 1)[0] or "clip"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        self.download_count += 1
        return self.download_dir / f"{self.download_count:06d}-{safe[:80]}.m4a"

    def lost(self, song: Song, reason: str) -> None:
        """The caller gave up on `song` (or never got its record)."""
        song.status = "lost"
        song.error = reason


def audio_urls(record: dict[str, Any]) -> list[str]:
    """The m4a URLs of a completed record (what the official script downloads)."""
    return [c["audio_url"] for c in record.get("clips") or () if c.get("audio_url")]


def main(run: Callable[[Run], None], argv: Sequence[str] | None = None) -> None:
    """Parse arguments, run the variant under measurement, print the JSON report."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="flowmusic-bench-") as tmp:
        state = Run(args, download_dir=Path(tmp))
        run(state)
        if state.cpu0 is None:
            raise RuntimeError("the variant never called Run.start()")
        wall = time.time() - state.t0
        cpu = time.process_time() - state.cpu0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # ru_maxrss is KiB on Linux and bytes on macOS.
    rss_mb = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    report = {
        "t0": state.t0,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_total_s": time.process_time(),
        "peak_rss_mb": rss_mb,
        "notes": state.notes,
        "songs": [asdict(s) for s in state.songs],
    }
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()


def seconds_until(moment: float) -> float:
    """How long to sleep until wall-clock `moment` (0 if it has passed)."""
    return max(0.0, moment - time.time())
