# pyright: strict
"""Mistakes a user makes: every line marked `# wrong` must be reported by mypy AND pyright.

`tests/typing/check.py` runs both checkers and fails if a marked line goes unreported (or an
unmarked line is reported), so the public types cannot silently loosen.
"""

from __future__ import annotations

from flowmusic_async import Event, FlowMusic, JobStatus, Outcome, WebhookResult


async def mistakes(fm: FlowMusic, outcome: Outcome, event: Event, hook: WebhookResult) -> None:
    await fm.generate("x", instrumentl=True)  # wrong
    await fm.generate("x", model="lyria-4")  # wrong
    await fm.generate("x", ghostwriter="deluxe")  # wrong
    await fm.submit("x", lyrics=3)  # wrong
    await fm.edit("explode", "clip:1")  # wrong
    await fm.effect("clip:1", "Echo")  # wrong
    await fm.extend("clip:1", "longer", strength=0.5)  # wrong
    await fm.music.create("x", mode="later")  # wrong
    job = await fm.generate("x")
    await fm.download(job, "songs", formats=("flac",))  # wrong
    print(outcome.job.jobid)  # wrong
    status: JobStatus = "running"  # wrong
    print(status, hook.job.clips)  # wrong
    FlowMusic(http_timeout="30")  # wrong
    print(event.error.jobid)  # wrong
