"""Several worker processes sharing one token's accounts, each with its own client.

Needs: nothing beyond the library; USEAPI_TOKEN unless `--simulate`. A sample prompts file
ships: examples/prompts.txt.

    python examples/shared_accounts.py examples/prompts.txt --workers 4 --simulate
    USEAPI_TOKEN=... python examples/shared_accounts.py examples/prompts.txt --workers 4

Each process runs its own `FlowMusic`, with its own scheduler. They still share the accounts'
`maxJobs` slots politely: before its first placement a client counts the jobs other processes
already run (GET /jobs), every poller sweep refreshes that count, and the rare 429 that a race
between two processes causes is absorbed with Retry-After and jittered backoff. No POST is
ever sent twice for one song. `--simulate` starts the simulator over loopback HTTP in this
process and points the workers at it, exactly as they would point at the real API.

Each worker prints one JSON line per song; this script collects them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio

from flowmusic_async import DEFAULT_BASE_URL, FlowMusic, Timing
from flowmusic_async.testing import SimAccount, Simulator


async def worker(prompts: list[str], *, base_url: str, time_scale: float) -> None:
    """One process's share of the work; the token comes from USEAPI_TOKEN."""
    timing = Timing.scaled(time_scale) if time_scale != 1.0 else None
    async with (
        FlowMusic(base_url=base_url, timing=timing) as fm,
        fm.generate_many(prompts) as outcomes,
    ):
        async for outcome in outcomes:
            line: dict[str, Any] = {"prompt": outcome.request["prompt"], "pid": os.getpid()}
            if outcome.ok:
                assert outcome.job is not None
                line.update(jobid=outcome.job.jobid, email=outcome.job.email)
            else:
                line.update(error=str(outcome.error))
            print(json.dumps(line), flush=True)


async def run_workers(
    prompts: list[str], *, workers: int, base_url: str, token: str, time_scale: float = 1.0
) -> list[dict[str, Any]]:
    """Start `workers` processes, each with every workers-th prompt; collect their lines."""
    results: list[dict[str, Any]] = []
    # The token travels in the environment, never on a command line other users can read.
    env = {**os.environ, "USEAPI_TOKEN": token}

    async def one(index: int) -> None:
        share = prompts[index::workers]
        command = [sys.executable, __file__, "--worker", "--base-url", base_url]
        command += ["--time-scale", str(time_scale)]
        done = await anyio.run_process(command, input="\n".join(share).encode(), env=env)
        results.extend(json.loads(line) for line in done.stdout.decode().splitlines())

    async with anyio.create_task_group() as tg:
        for index in range(workers):
            tg.start_soon(one, index)
    return results


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompts", type=Path, nargs="?", help="one prompt per line")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--simulate", action="store_true", help="serve a simulator, use it")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # a child: prompts on stdin
        prompts = [line for line in sys.stdin.read().splitlines() if line.strip()]
        await worker(prompts, base_url=args.base_url, time_scale=args.time_scale)
        return 0

    if args.prompts is None:
        parser.error("name a prompts file, one prompt per line (examples/prompts.txt is a sample)")
    if not args.prompts.is_file():
        parser.error(f"{args.prompts}: no such file (examples/prompts.txt is a sample)")
    if not args.simulate and not os.environ.get("USEAPI_TOKEN"):
        parser.error("set USEAPI_TOKEN, or pass --simulate to serve a simulator")

    prompts = [line.strip() for line in args.prompts.read_text().splitlines() if line.strip()]
    if args.simulate:
        scale = 0.005
        accounts = [SimAccount(email=f"account{i}@example.com", max_jobs=3) for i in range(2)]
        sim = Simulator(accounts=accounts, time_scale=scale)
        async with sim.serve() as base_url:
            results = await run_workers(
                prompts, workers=args.workers, base_url=base_url, token=sim.token, time_scale=scale
            )
        print(
            f"{sim.stats.jobs_created} jobs for {len(prompts)} prompts, "
            f"{sim.stats.responses_429} answers 429, peak running {dict(sim.stats.peak_running)}"
        )
    else:
        results = await run_workers(
            prompts,
            workers=args.workers,
            base_url=args.base_url,
            token=os.environ["USEAPI_TOKEN"],
            time_scale=args.time_scale,
        )
    failed = [r for r in results if "error" in r]
    print(f"{len(results) - len(failed)} songs from {args.workers} processes, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(anyio.run(main))
