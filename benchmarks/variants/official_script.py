"""useapi's own batch script (github.com/useapi/flowmusic-api, lyria-music/flowmusic.mjs v1.0),
re-implemented in Python as faithfully as we can, and as well as that strategy allows.

The strategy, step for step:
1. GET /accounts once (the script checks the account exists and is healthy).
2. Submit the prompts one at a time: POST /music with mode "async". On 429 sleep 10 s and try
   the same prompt again; after 6 consecutive 429s give that prompt up. 402 or 596 stop the run.
3. Only after every prompt is submitted, walk the jobids in order: GET /jobs/{jobid} every 15 s
   until that job is completed or failed, download its clips' m4a, then move to the next job.

The one liberty we take is in the strategy's favour: the script targets one `email`; we omit
`email` so useapi.net spreads the songs over every account (otherwise it would use 1 of 10).
Like the script (Node's fetch), one keep-alive connection is reused, and nothing runs in parallel.
In the stream workload each song is submitted when it arrives; polling still waits for the last.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx

from benchmarks.variants._common import (
    OFFICIAL_MAX_429_RETRIES,
    OFFICIAL_POLL_S,
    SLEEP_429_S,
    Run,
    Song,
    audio_urls,
    main,
    seconds_until,
)


def run(state: Run) -> None:
    args = state.args
    timeout = httpx.Timeout(60.0)
    with httpx.Client(base_url=args.base_url, timeout=timeout) as client:
        state.start()
        client.get("/accounts", headers=args.headers).raise_for_status()
        submitted = submit_all(state, client)
        for song in submitted:
            poll_then_download(state, client, song)


def submit_all(state: Run, client: httpx.Client) -> list[Song]:
    args = state.args
    submitted: list[Song] = []
    for position, song in enumerate(state.songs):
        time.sleep(seconds_until(song.requested_at))
        retries_429 = 0
        while True:
            response = client.post(
                "/music", json={"prompt": song.prompt, "mode": "async"}, headers=args.headers
            )
            status = response.status_code
            if status in (200, 201):
                song.jobid = response.json()["jobid"]
                submitted.append(song)
                break
            if status == 429:
                retries_429 += 1
                if retries_429 > OFFICIAL_MAX_429_RETRIES:
                    state.lost(song, f"gave up after {OFFICIAL_MAX_429_RETRIES} retries on 429")
                    break
                time.sleep(args.scaled(SLEEP_429_S))
                continue
            if status in (402, 596):  # the script exits the whole process here
                for rest in state.songs[position:]:
                    state.lost(rest, f"run stopped on HTTP {status}")
                return submitted
            state.lost(song, f"HTTP {status}")
            break
    return submitted


def poll_then_download(state: Run, client: httpx.Client, song: Song) -> None:
    args = state.args
    assert song.jobid is not None
    path = f"/jobs/{quote(song.jobid, safe='')}"
    while True:
        response = client.get(path, headers=args.headers)
        if response.status_code != 200:
            state.lost(song, f"poll answered HTTP {response.status_code}")
            return
        record = response.json()
        if record["status"] in ("completed", "failed"):
            state.finished_record(song, record)
            break
        time.sleep(args.scaled(OFFICIAL_POLL_S))
    if args.download and record["status"] == "completed":
        for url in audio_urls(record):
            media = client.get(url)  # public URL: no Authorization header
            if media.status_code == 200:
                state.file_path(url).write_bytes(media.content)
    state.downloaded(song)


if __name__ == "__main__":
    main(run)
