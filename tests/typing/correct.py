# pyright: strict
"""Ordinary user code: must pass `mypy --strict` and `pyright --strict` with no error.

Checked by `nox -s typing` (tests/typing/check.py), never imported by pytest.
"""

from __future__ import annotations

import httpx

from flowmusic_async import (
    Completed,
    DownloadFormat,
    Event,
    EventKind,
    Failed,
    FlowMusic,
    Job,
    JobStatus,
    Outcome,
    SongRequest,
    WebhookResult,
)


def on_event(event: Event) -> None:
    kind: EventKind = event.kind
    if event.error is not None:
        print(kind, event.jobid, event.error.jobid)


async def song(fm: FlowMusic) -> Job:
    job = await fm.generate(
        "dreamy synthwave",
        instrumental=True,
        model="lyria-3-pro",
        ghostwriter="pro",
        deadline=600,
    )
    status: JobStatus = job.status
    print(status, [clip.audio_url for clip in job.clips], job.to_dict()["jobid"])
    formats: tuple[DownloadFormat, ...] = ("m4a", "wav")
    await fm.download(job, "songs", formats=formats)
    return job


async def edits(fm: FlowMusic, clip: str) -> None:
    await fm.extend(clip, "add a guitar solo", extend_s=30, model="lyria-3.5")
    await fm.cover(clip, instruction="bossa nova", strength=0.7)
    await fm.effect(clip, "Gain", gain_db=3)
    await fm.edit("replace", clip, instruction="quieter", mask_start_s=5, mask_end_s=10)
    await fm.music.remix(clip, "new words", mode="async")


async def batch(fm: FlowMusic) -> None:
    requests: list[str | SongRequest | dict[str, str]] = [
        "lo-fi",
        SongRequest(prompt="jazz", instrumental=True),
        {"prompt": "rock", "model": "lyria-3.5"},
    ]
    async with fm.generate_many(requests, deadline=900) as outcomes:
        async for outcome in outcomes:
            describe(outcome)


def describe(outcome: Outcome) -> str:
    if isinstance(outcome, Completed):
        return outcome.job.jobid
    failed: Failed = outcome
    return f"{failed.index}: {failed.error}"


def webhook(result: WebhookResult) -> str | None:
    return result.job.jobid if result.job is not None else None


def client() -> FlowMusic:
    return FlowMusic(
        token="t",
        http_timeout=httpx.Timeout(10.0, read=60.0),
        reply_url="https://example.com/hook",
        event_hooks=[on_event],
    )
