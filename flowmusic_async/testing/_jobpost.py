"""What every job-creating POST shares: the 429 burst gate and the sync/async answer."""

from __future__ import annotations

from ._context import Ctx
from ._records import job_record
from ._state import MODERATION_CODE, Job
from ._wire import ApiError, ConnectionDropped, Response


def burst_gate(ctx: Ctx) -> None:
    """Fault `burst_429`: the next N job POSTs are refused whatever the capacity."""
    faults = ctx.world.faults
    if faults.burst_429 > 0:
        faults.burst_429 -= 1
        raise ctx.world.busy("All accounts are busy (simulated burst)")


def moderated(ctx: Ctx, *texts: object) -> None:
    for text in texts:
        if isinstance(text, str) and ctx.world.moderate(text):
            # Open question 1/2: moderation refuses with 422 {error, code}; nothing is charged.
            raise ApiError(422, "Prompt was rejected by content moderation")


async def answer(ctx: Ctx, job: Job, mode: str) -> Response:
    """201 + pending record (async), or hold until the job ends and answer 200 (sync)."""
    world = ctx.world
    if ctx.dice.chance(world.faults.lost_response_rate):
        world.stats.lost_responses += 1
        raise ConnectionDropped
    if mode == "async":
        return Response.json(201, job_record(job, world.clock.now(), ctx.media, ctx.req.origin))
    await world.wait_for_end(job)
    record = job_record(job, world.clock.now(), ctx.media, ctx.req.origin)
    error = job.error()
    if error is not None and error[0] == MODERATION_CODE:
        # Open question 2: a sync job that fails by moderation answers 422 {error, code};
        # the jobid is added so the record can still be fetched. Other failures (a cancel)
        # answer 200 with the failed record.
        body = {"error": error[1], "code": 422, "jobid": job.jobid}
        raise ApiError(422, error[1], body=body)
    return Response.json(200, record)
