"""`python -m flowmusic_async.testing`: serve the simulator on a loopback socket.

Prints exactly one line, `READY <base_url>`, once listening, then serves until killed.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

import anyio

from ._simulator import DEFAULT_TOKEN, Simulator
from ._state import SimAccount


def _account(spec: str) -> tuple[str, int]:
    email, _, max_jobs = spec.rpartition(":")
    if not email or "@" not in email or not max_jobs.isdigit():
        raise argparse.ArgumentTypeError(f"expected EMAIL:MAXJOBS, got {spec!r}")
    return email, int(max_jobs)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m flowmusic_async.testing",
        description="Serve the Flow Music API simulator over HTTP/1.1.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="real seconds per simulated second (0.01: songs take 0.4-1.5 s)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--account",
        action="append",
        type=_account,
        metavar="EMAIL:MAXJOBS",
        help="repeatable; default alpha@example.com:4",
    )
    p.add_argument(
        "--token",
        action="append",
        metavar="TOKEN",
        help=f"accepted API token, repeatable; default {DEFAULT_TOKEN}",
    )
    p.add_argument("--credits", type=float, default=1000.0, help="credits of every account")
    p.add_argument("--song-credits", type=float, default=10.0)
    p.add_argument("--job-failure-rate", type=float, default=0.0)
    p.add_argument("--retention-s", type=float, default=7 * 86400.0)
    return p.parse_args(argv)


def build(args: argparse.Namespace) -> Simulator:
    specs = args.account or [("alpha@example.com", 4)]
    return Simulator(
        accounts=[SimAccount(email=e, max_jobs=n, credits=args.credits) for e, n in specs],
        tokens=args.token or [DEFAULT_TOKEN],
        time_scale=args.time_scale,
        seed=args.seed,
        song_credits=args.song_credits,
        job_failure_rate=args.job_failure_rate,
        retention_s=args.retention_s,
    )


async def _serve(sim: Simulator, host: str, port: int) -> None:
    async with sim.serve(host, port) as base_url:
        print(f"READY {base_url}", flush=True)
        await anyio.sleep_forever()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop it
        anyio.run(_serve, build(args), args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
