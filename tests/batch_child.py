"""A batch run in its own process, for the crash test: prints one JSON line per outcome.

Usage: python batch_child.py BASE_URL TOKEN JOURNAL SCALE PROMPT...
"""

from __future__ import annotations

import sys

import anyio
import msgspec

from flowmusic_async import FlowMusic, Timing


async def main(base_url: str, token: str, journal: str, scale: float, prompts: list[str]) -> None:
    fm = FlowMusic(token=token, base_url=base_url, timing=Timing.scaled(scale))
    async with fm, fm.generate_many(prompts, journal=journal) as outcomes:
        async for outcome in outcomes:
            line = {
                "key": outcome.key,
                "index": outcome.index,
                "jobid": outcome.job.jobid if outcome.job else None,
                "error": repr(outcome.error) if outcome.error else None,
                "resumed": outcome.resumed,
            }
            sys.stdout.write(msgspec.json.encode(line).decode() + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    base, tok, path, scale_text, *rest = sys.argv[1:]
    anyio.run(main, base, tok, path, float(scale_text), rest)
