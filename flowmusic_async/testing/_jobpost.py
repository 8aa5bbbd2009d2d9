"""What every job-creating POST shares: the 429 burst gate, moderation and the answer."""

from __future__ import annotations

from ._context import Ctx
from ._records import job_record
from ._state import MODERATION_CODE, Job
from ._wire import ApiError, ConnectionDropped, Response


def burst_gate(ctx: Ctx, *, named: bool) -> None:
    """Fault `burst_429`: the next N job POSTs are refused whatever the capacity.

    `named`: the request chose its account, which decides which of the two 429 bodies is sent.
    """
    faults = ctx.world.faults
    if faults.burst_429 > 0:
        faults.burst_429 -= 1
        raise ctx.world.busy(named=named)


def moderated(ctx: Ctx, *texts: object) -> bool:
    """True when moderation declines one of the texts (the job renders, then ends failed)."""
    return any(isinstance(text, str) and ctx.world.moderate(text) for text in texts)


async def answer(ctx: Ctx, job: Job, mode: str) -> Response:
    """201 + pending record (async), or hold until the job ends and answer 200 (sync).

    A moderated job is accepted like any other: async answers 201 and the job later ends
    `failed` with `moderation_reject`; sync answers, after the render time, 422 with the failed
    record as the body, as the POST /music page shows (its record has 28 s between
    `created_at` and `completed_at`: the model rendered, then produced no audio). Other
    failures of a sync job (a cancel) answer 200 with the failed record
    (docs/api-notes.md#q2-sync-job-failure).
    """
    world = ctx.world
    if ctx.dice.chance(world.faults.lost_response_rate):
        world.stats.lost_responses += 1
        raise ConnectionDropped
    if mode == "async":
        return Response.json(201, job_record(job, world.clock.now(), ctx.media, ctx.req.origin))
    await world.wait_for_end(job)
    error = job.error()
    if error is not None and error[0] == MODERATION_CODE:
        raise _moderation_answer(ctx, job)
    return Response.json(200, job_record(job, world.clock.now(), ctx.media, ctx.req.origin))


def _moderation_answer(ctx: Ctx, job: Job) -> ApiError:
    record = job_record(job, ctx.world.clock.now(), ctx.media, ctx.req.origin)
    return ApiError(422, record["error"]["message"], body=record)
