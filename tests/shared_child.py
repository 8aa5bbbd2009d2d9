"""One worker process of the shared-accounts test: a batch on the shared token, then a summary.

Usage: python shared_child.py BASE_URL TOKEN SCALE NAME COUNT
Prints one JSON line: {"name", "ok", "errors"}.
"""

from __future__ import annotations

import sys

import anyio
import msgspec

from flowmusic_async import FlowMusic, Timing


async def main(base_url: str, token: str, scale: float, name: str, count: int) -> None:
    prompts = [f"{name} song {i}" for i in range(count)]
    ok, errors = 0, []
    fm = FlowMusic(token=token, base_url=base_url, timing=Timing.scaled(scale))
    async with fm, fm.generate_many(prompts) as outcomes:
        async for outcome in outcomes:
            if outcome.ok:
                ok += 1
            else:
                errors.append(repr(outcome.error))
    sys.stdout.write(msgspec.json.encode({"name": name, "ok": ok, "errors": errors}).decode())
    sys.stdout.write("\n")


if __name__ == "__main__":
    base, tok, scale_text, who, how_many = sys.argv[1:]
    anyio.run(main, base, tok, float(scale_text), who, int(how_many))
