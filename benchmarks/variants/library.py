"""flowmusic-async itself, used the way its docs tell users to.

Batch: `fm.generate_many(prompts)` and consume the outcomes as they arrive. Stream and single
song: one `fm.generate(prompt)` per song in an anyio task group, each started when its song
arrives. `--option submit=generate` uses the task-group form for the batch as well. Downloads
(the same m4a files the baselines fetch) run in the task group, so they never hold up results.
The timing is `Timing.scaled(time_scale)`: the library's real-time defaults, sped up in step
with the simulator, exactly as the baselines' 10 s / 15 s / 1 s constants are.
"""

from __future__ import annotations

from typing import Any

import anyio

from benchmarks.variants._common import Run, Song, main, seconds_until


async def run_async(state: Run) -> None:
    from flowmusic_async import FlowMusic, Timing

    args = state.args
    timing = Timing.scaled(args.time_scale)
    batch = args.workload.rate_per_s is None and args.workload.songs > 1
    use_many = batch and args.options.get("submit", "many") == "many"
    state.notes.append("generate_many" if use_many else "fm.generate in a task group")
    async with (
        FlowMusic(token=args.token, base_url=args.base_url, timing=timing) as fm,
        anyio.create_task_group() as tg,
    ):
        # Entering builds the httpx client and starts the idle poller, no request yet: the
        # same point at which the baselines start their clocks (client built, nothing sent).
        state.start()
        if use_many:
            prompts = [song.prompt for song in state.songs]
            async with fm.generate_many(prompts) as outcomes:
                async for outcome in outcomes:
                    song = state.songs[outcome.index]
                    if outcome.job is not None:
                        record(state, song, outcome.job)
                        tg.start_soon(download, state, fm, song, outcome.job)
                    else:
                        state.lost(song, repr(outcome.error))
        else:
            for song in state.songs:
                await anyio.sleep(seconds_until(song.requested_at))
                tg.start_soon(one_song, state, fm, song)


async def one_song(state: Run, fm: Any, song: Song) -> None:
    from flowmusic_async import FlowMusicError, JobFailed

    try:
        job = await fm.generate(song.prompt)
    except JobFailed as exc:
        record(state, song, exc.job)
        return
    except FlowMusicError as exc:
        state.lost(song, repr(exc))
        return
    record(state, song, job)
    await download(state, fm, song, job)


def record(state: Run, song: Song, job: Any) -> None:
    error = None if job.error is None else f"{job.error.code}: {job.error.message}"
    state.finished(song, jobid=job.jobid, status=job.status, clips=len(job.clips), error=error)


async def download(state: Run, fm: Any, song: Song, job: Any) -> None:
    if state.args.download and job.is_completed:
        await fm.download(job, state.download_dir, formats=("m4a",), sidecar=False)
    state.downloaded(song)


def run(state: Run) -> None:
    anyio.run(run_async, state)


if __name__ == "__main__":
    main(run)
