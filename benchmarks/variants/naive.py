"""The asyncio client people write first: gather every song at once, one poll loop per job.

Each song is a coroutine: POST /music (mode "async"); on 429 sleep a fixed 10 s and post again
(no limit, no jitter); then GET /jobs/{jobid} every 1 s until it is terminal; then download.
All songs are started together with asyncio.gather on one httpx.AsyncClient with its default
connection limits. A 5xx or a transport error on a poll is retried on the next tick (what a
careful naive client does); one on the POST gives the song up, since a POST is not safe to repeat.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import httpx

from benchmarks.variants._common import (
    NAIVE_POLL_S,
    SLEEP_429_S,
    Run,
    Song,
    audio_urls,
    main,
    seconds_until,
)


async def one_song(state: Run, client: httpx.AsyncClient, song: Song) -> None:
    args = state.args
    await asyncio.sleep(seconds_until(song.requested_at))
    while True:
        try:
            response = await client.post(
                "/music", json={"prompt": song.prompt, "mode": "async"}, headers=args.headers
            )
        except httpx.TransportError as exc:
            state.lost(song, f"POST failed: {exc!r}")
            return
        if response.status_code == 429:
            await asyncio.sleep(args.scaled(SLEEP_429_S))
            continue
        if response.status_code not in (200, 201):
            state.lost(song, f"HTTP {response.status_code}")
            return
        break
    jobid = response.json()["jobid"]
    song.jobid = jobid
    path = f"/jobs/{quote(jobid, safe='')}"
    while True:
        try:
            poll = await client.get(path, headers=args.headers)
        except httpx.TransportError:
            poll = None
        if poll is not None and poll.status_code == 200:
            record = poll.json()
            if record["status"] in ("completed", "failed"):
                state.finished_record(song, record)
                break
        await asyncio.sleep(args.scaled(NAIVE_POLL_S))
    if args.download and record["status"] == "completed":
        for url in audio_urls(record):
            media = await client.get(url)
            if media.status_code == 200:
                state.file_path(url).write_bytes(media.content)
    state.downloaded(song)


async def guarded(state: Run, client: httpx.AsyncClient, song: Song) -> None:
    """One song; an unexpected error loses that song instead of cancelling the whole gather."""
    try:
        await one_song(state, client, song)
    except Exception as exc:
        state.lost(song, f"crashed: {exc!r}")


async def run_async(state: Run) -> None:
    # A generous timeout: under load the default 5 s pool timeout would just lose songs.
    async with httpx.AsyncClient(base_url=state.args.base_url, timeout=60.0) as client:
        state.start()
        await asyncio.gather(*(guarded(state, client, song) for song in state.songs))


def run(state: Run) -> None:
    asyncio.run(run_async(state))


if __name__ == "__main__":
    main(run)
