"""Hundreds of prompts from a CSV to files on disk, with a progress bar, resumable after a crash.

Needs: rich (the `cli` or `examples` extra: `python3 -m pip install -e ".[examples]"` from a
checkout), and USEAPI_TOKEN unless `--simulate`. A sample CSV ships: examples/prompts.csv.

    python examples/batch_to_disk.py examples/prompts.csv --simulate    # no token: a simulator
    python examples/batch_to_disk.py examples/prompts.csv --out songs --journal songs.db

The CSV has a `prompt` column and, optionally, `instrumental` (true/false) and `lyrics`.
Every request's progress is written to the SQLite journal before each step, so if the run is
stopped (Ctrl-C, a crash, a reboot), running the same command again picks up where it
stopped: finished songs are not generated again, running ones are awaited by their jobid, and
a request interrupted mid-POST is looked up by its client reference before anything is paid
twice. Files already on disk are not downloaded again.
"""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, get_args

import anyio
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flowmusic_async import DownloadFormat, FlowMusic, Outcome, Timing
from flowmusic_async.testing import SimAccount, Simulator


def read_requests(path: Path) -> list[dict[str, Any]]:
    """One song request per CSV row (keywords of `fm.generate`)."""
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    requests: list[dict[str, Any]] = []
    for row in rows:
        request: dict[str, Any] = {"prompt": row["prompt"]}
        if row.get("instrumental", "").strip().lower() in ("true", "yes", "1"):
            request["instrumental"] = True
        if row.get("lyrics"):
            request["lyrics"] = row["lyrics"]
        requests.append(request)
    return requests


async def run_batch(
    fm: FlowMusic,
    requests: list[dict[str, Any]],
    *,
    out: Path,
    journal: Path,
    formats: tuple[DownloadFormat, ...] = ("m4a",),
    progress: Progress | None = None,
) -> list[Outcome]:
    """Generate every request and download each song as soon as it is done.

    Returns the outcomes in completion order. Downloads run alongside the generation (at most
    eight at a time), so the accounts' slots never wait for the disk.
    """
    progress = progress or Progress(
        TextColumn("[bold]songs"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[failed]} failed"),
    )
    outcomes: list[Outcome] = []
    downloads = anyio.CapacityLimiter(8)

    async def save(outcome: Outcome) -> None:
        assert outcome.job is not None
        async with downloads:
            folder = out / f"{outcome.index:04d}"
            await fm.download(
                outcome.job, folder, formats=formats, prompt=outcome.request["prompt"]
            )

    with progress:
        bar = progress.add_task("songs", total=len(requests), failed=0)
        failed = 0
        async with (
            anyio.create_task_group() as tg,
            fm.generate_many(requests, journal=journal) as results,
        ):
            async for outcome in results:
                outcomes.append(outcome)
                if outcome.ok:
                    tg.start_soon(save, outcome)
                else:
                    failed += 1
                    progress.console.print(f"[red]#{outcome.index}[/red] {outcome.error}")
                progress.update(bar, advance=1, failed=failed)
    return outcomes


@asynccontextmanager
async def open_client(simulate: bool) -> AsyncIterator[FlowMusic]:
    """The real API (token from USEAPI_TOKEN), or a simulator where a song takes 0.1-0.4 s."""
    if not simulate:
        async with FlowMusic() as fm:
            yield fm
        return
    scale = 0.003
    accounts = [SimAccount(email=f"account{i}@example.com", max_jobs=4) for i in range(3)]
    sim = Simulator(accounts=accounts, time_scale=scale)
    async with FlowMusic(
        token=sim.token,
        base_url=sim.base_url,
        transport=sim.transport(),
        timing=Timing.scaled(scale),
    ) as fm:
        yield fm


def parse_formats(text: str) -> tuple[DownloadFormat, ...]:
    """`--formats m4a,wav` as the library's format names; an unknown one is a usage error."""
    known: dict[str, DownloadFormat] = {name: name for name in get_args(DownloadFormat)}
    try:
        return tuple(known[name.strip()] for name in text.split(","))
    except KeyError as exc:
        choices = ", ".join(known)
        raise argparse.ArgumentTypeError(f"unknown format {exc}; choose from {choices}") from None


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--out", type=Path, default=Path("songs"))
    parser.add_argument("--journal", type=Path, default=Path("songs.db"))
    parser.add_argument(
        "--formats",
        type=parse_formats,
        default="m4a",
        help="comma-separated: m4a,wav,mp3,image",
    )
    parser.add_argument("--simulate", action="store_true", help="use the embedded simulator")
    args = parser.parse_args(argv)
    if not args.csv.is_file():
        parser.error(f"{args.csv}: no such file (examples/prompts.csv is a sample)")
    if not args.simulate and not os.environ.get("USEAPI_TOKEN"):
        parser.error("set USEAPI_TOKEN, or pass --simulate to use the embedded simulator")

    requests = read_requests(args.csv)
    async with open_client(args.simulate) as fm:
        outcomes = await run_batch(
            fm,
            requests,
            out=args.out,
            journal=args.journal,
            formats=args.formats,
        )
    failed = sum(not outcome.ok for outcome in outcomes)
    print(f"{len(outcomes) - failed} songs in {args.out}, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(anyio.run(main))
