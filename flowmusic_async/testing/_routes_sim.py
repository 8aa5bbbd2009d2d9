"""Simulator-only routes: GET /_sim/stats, GET|POST /_sim/faults, GET /_sim/media/{file}."""

from __future__ import annotations

import msgspec

from ._context import Ctx
from ._media import CONTENT_TYPES, media_bytes
from ._params import query_fields
from ._wire import Response, bad_request, forbidden, not_found


async def get_stats(ctx: Ctx) -> Response:
    return Response.json(200, ctx.world.stats.snapshot())


async def get_faults(ctx: Ctx) -> Response:
    return Response.json(200, ctx.world.faults.to_dict())


async def post_faults(ctx: Ctx) -> Response:
    try:
        changes = msgspec.json.decode(ctx.req.body or b"{}")
    except msgspec.DecodeError:
        raise bad_request("Request body is not valid JSON") from None
    if not isinstance(changes, dict):
        raise bad_request("Request body must be a JSON object")
    try:
        ctx.world.faults.update(changes)
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    return Response.json(200, ctx.world.faults.to_dict())


async def get_media(ctx: Ctx) -> Response:
    """Public media bytes (no auth); 403 once a signed URL has expired."""
    name, _, ext = ctx.params["file"].rpartition(".")
    owner = ctx.world.media.get(name)
    if owner is None or ext not in CONTENT_TYPES:
        raise not_found("No such media file")
    query = query_fields(ctx.req)
    if not ctx.media.valid(name, ext, query.get("exp"), query.get("sig")):
        raise forbidden("Media URL signature expired or invalid")
    seed = int(name.replace("-", "")[:6], 16)
    return Response(200, media_bytes(ext, seed), [("content-type", CONTENT_TYPES[ext])])
