"""The naive asyncio client as a careful user writes it: bounded by a semaphore and httpx limits.

The same per-song coroutine as `naive` (POST; fixed 10 s on 429; poll every 1 s; download),
but at most total-slots songs are in progress at once (an `asyncio.Semaphore`, taken when
the song arrives, before its POST, and given back once its files are downloaded) and the
httpx client has explicit `Limits`: as many connections as slots, so the pool never queues a
request behind others.
This is the fair baseline; `naive` (unbounded gather, httpx defaults) stays as the line that
shows httpcore's pool collapsing under thousands of waiting requests.
"""

from __future__ import annotations

import asyncio

import httpx

from benchmarks.variants._common import Run, Song, main, seconds_until
from benchmarks.variants.naive import one_song


async def bounded(
    state: Run, client: httpx.AsyncClient, song: Song, gate: asyncio.Semaphore
) -> None:
    await asyncio.sleep(
        seconds_until(song.requested_at)
    )  # a song waiting to arrive holds no permit
    async with gate:
        try:
            await one_song(state, client, song)
        except Exception as exc:
            state.lost(song, f"crashed: {exc!r}")


async def run_async(state: Run) -> None:
    slots = state.args.workload.slots
    limits = httpx.Limits(max_connections=slots, max_keepalive_connections=slots)
    async with httpx.AsyncClient(
        base_url=state.args.base_url, timeout=60.0, limits=limits
    ) as client:
        gate = asyncio.Semaphore(slots)
        state.start()
        await asyncio.gather(*(bounded(state, client, song, gate) for song in state.songs))


def run(state: Run) -> None:
    asyncio.run(run_async(state))


if __name__ == "__main__":
    main(run)
