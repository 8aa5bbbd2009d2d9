"""Sync mode in a thread pool: one blocking request per song, held open until the song is done.

POST /music without `mode` (the API default, sync) keeps the connection open for the whole song
and answers with the completed record. A ThreadPoolExecutor with one thread per slot (the sum of
maxJobs) runs the songs over one shared httpx.Client with that many connections. On 429 a thread
sleeps a fixed 10 s and posts again. If a sync answer ever comes back still pending (the contract
allows a server-side cut-off), the thread falls back to polling GET /jobs/{jobid} every 1 s.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import httpx

from benchmarks.variants._common import (
    NAIVE_POLL_S,
    SLEEP_429_S,
    SYNC_READ_TIMEOUT_S,
    Run,
    Song,
    audio_urls,
    main,
    seconds_until,
)


def one_song(state: Run, client: httpx.Client, song: Song) -> None:
    args = state.args
    while True:
        try:
            response = client.post("/music", json={"prompt": song.prompt}, headers=args.headers)
        except httpx.TransportError as exc:
            state.lost(song, f"POST failed: {exc!r}")
            return
        if response.status_code == 429:
            time.sleep(args.scaled(SLEEP_429_S))
            continue
        if response.status_code not in (200, 201):
            state.lost(song, f"HTTP {response.status_code}")
            return
        break
    record = response.json()
    while record["status"] == "pending":
        time.sleep(args.scaled(NAIVE_POLL_S))
        poll = client.get(f"/jobs/{quote(record['jobid'], safe='')}", headers=args.headers)
        if poll.status_code == 200:
            record = poll.json()
    state.finished_record(song, record)
    if args.download and record["status"] == "completed":
        for url in audio_urls(record):
            media = client.get(url)
            if media.status_code == 200:
                state.file_path(url).write_bytes(media.content)
    state.downloaded(song)


def guarded(state: Run, client: httpx.Client, song: Song) -> None:
    """One song; an error in a pool thread would otherwise vanish into its Future."""
    try:
        one_song(state, client, song)
    except Exception as exc:
        state.lost(song, f"crashed: {exc!r}")


def run(state: Run) -> None:
    args = state.args
    slots = args.workload.slots
    # Never below 30 s real, so a loaded machine does not turn slow answers into lost songs.
    read = max(args.scaled(SYNC_READ_TIMEOUT_S), 30.0)
    timeout = httpx.Timeout(60.0, read=read)
    limits = httpx.Limits(max_connections=slots, max_keepalive_connections=slots)
    with (
        httpx.Client(base_url=args.base_url, timeout=timeout, limits=limits) as client,
        ThreadPoolExecutor(max_workers=slots) as pool,
    ):
        state.start()
        for song in state.songs:
            time.sleep(seconds_until(song.requested_at))
            pool.submit(guarded, state, client, song)


if __name__ == "__main__":
    main(run)
