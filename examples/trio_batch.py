"""The CSV batch of batch_to_disk.py, under trio: a nursery downloads while songs render.

Needs: trio (the `examples` extra: `python3 -m pip install -e ".[examples]"` from a checkout),
and USEAPI_TOKEN unless `--simulate`. A sample prompts file ships: examples/prompts.txt.

    python examples/trio_batch.py examples/prompts.txt --simulate    # no token: a simulator
    python examples/trio_batch.py examples/prompts.txt --out songs --journal songs.db

flowmusic-async is written against anyio, so it runs unchanged under trio: the client's
background task group becomes a trio nursery, cancelling is trio's own cancel scopes, and a
`trio.move_on_after` around a batch stops it cleanly (with a journal, the jobs still running
are left for the next run). The prompts file holds one prompt per line.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import trio

from flowmusic_async import FlowMusic, Outcome, Timing
from flowmusic_async.testing import SimAccount, Simulator


async def run_batch(
    fm: FlowMusic,
    prompts: list[str],
    *,
    out: Path,
    journal: Path,
    deadline: float = float("inf"),
) -> list[Outcome]:
    """Generate every prompt, downloading each song while the others render.

    Args:
        deadline: seconds after which the batch stops (the rest resumes on the next run).
    """
    outcomes: list[Outcome] = []
    downloads = trio.CapacityLimiter(8)

    async def save(outcome: Outcome) -> None:
        assert outcome.job is not None
        async with downloads:
            await fm.download(
                outcome.job, out / f"{outcome.index:04d}", prompt=prompts[outcome.index]
            )

    with trio.move_on_after(deadline):
        async with (
            trio.open_nursery() as nursery,
            fm.generate_many(prompts, journal=journal) as results,
        ):
            async for outcome in results:
                outcomes.append(outcome)
                if outcome.ok:
                    nursery.start_soon(save, outcome)
                else:
                    print(f"#{outcome.index}: {outcome.error}")
    return outcomes


def simulated_client() -> FlowMusic:
    """A client on a fresh in-memory simulator where a song takes 0.1-0.45 s."""
    scale = 0.003
    sim = Simulator(accounts=[SimAccount(email="solo@example.com", max_jobs=8)], time_scale=scale)
    return FlowMusic(
        token=sim.token,
        base_url=sim.base_url,
        transport=sim.transport(),
        timing=Timing.scaled(scale),
    )


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompts", type=Path)
    parser.add_argument("--out", type=Path, default=Path("songs"))
    parser.add_argument("--journal", type=Path, default=Path("songs.db"))
    parser.add_argument("--simulate", action="store_true", help="use the embedded simulator")
    args = parser.parse_args(argv)
    if not args.prompts.is_file():
        parser.error(f"{args.prompts}: no such file (examples/prompts.txt is a sample)")
    if not args.simulate and not os.environ.get("USEAPI_TOKEN"):
        parser.error("set USEAPI_TOKEN, or pass --simulate to use the embedded simulator")

    prompts = [line.strip() for line in args.prompts.read_text().splitlines() if line.strip()]
    async with simulated_client() if args.simulate else FlowMusic() as fm:
        outcomes = await run_batch(fm, prompts, out=args.out, journal=args.journal)
    failed = sum(not outcome.ok for outcome in outcomes)
    print(f"{len(outcomes) - failed} songs in {args.out}, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(trio.run(main))
