"""GET /jobs, GET /jobs/{jobid}, DELETE /jobs/{jobid} ."""

from __future__ import annotations

from typing import Any

from ._context import Ctx
from ._params import query_fields, validate
from ._records import job_record, running_job
from ._wire import Response


async def get_jobs(ctx: Ctx) -> Response:
    """Running jobs per account (sync and async jobs both hold a slot).

    See docs/api-notes.md#q6-sync-jobs-hold-a-slot.
    """
    validate(query_fields(ctx.req), {})
    world = ctx.world
    out: dict[str, Any] = {}
    for email, acct in world.accounts.items():
        running = world.running(acct)
        if running:
            mine = [running_job(j) for j in acct.active.values() if j.uid == ctx.uid]
            out[email] = {"running": running, "maxJobs": acct.max_jobs, "jobs": mine}
    return Response.json(200, out)


async def get_job(ctx: Ctx) -> Response:
    validate(query_fields(ctx.req), {})
    world = ctx.world
    job = world.job(ctx.params["jobid"], ctx.uid)
    return Response.json(200, job_record(job, world.clock.now(), ctx.media, ctx.req.origin))


async def delete_job(ctx: Ctx) -> Response:
    """Cancel: failed/user_cancelled, slot freed, credits stay spent; idempotent 204."""
    validate(query_fields(ctx.req), {})
    world = ctx.world
    world.cancel(world.job(ctx.params["jobid"], ctx.uid))
    return Response(204)
