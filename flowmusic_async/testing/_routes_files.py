"""POST /files (raw upload) and POST /files/generate ."""

from __future__ import annotations

import random

import anyio

from ._context import Ctx
from ._params import BOOL, STR, Field, body_fields, query_fields, validate
from ._wire import ApiError, Response, bad_request

_MB = 1024 * 1024
# content type -> (kind, extension, size cap)
UPLOAD_TYPES = {
    "image/jpeg": ("image", "jpg", 20 * _MB),
    "image/png": ("image", "png", 20 * _MB),
    "image/webp": ("image", "webp", 20 * _MB),
    "audio/mpeg": ("audio", "mp3", 40 * _MB),
    "audio/wav": ("audio", "wav", 40 * _MB),
    "audio/mp4": ("audio", "m4a", 40 * _MB),
    "audio/x-m4a": ("audio", "m4a", 40 * _MB),
    "audio/aac": ("audio", "m4a", 40 * _MB),
}
MAX_UPLOAD = 40 * _MB
IMAGE_SECONDS = (10.0, 20.0)
_AI_PROVENANCE = (b"c2pa", b"trainedAlgorithmicMedia")


async def post_files(ctx: Ctx) -> Response:
    query = validate(query_fields(ctx.req), {"email": Field(STR), "stripMetadata": Field(BOOL)})
    ctype = ctx.req.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype not in UPLOAD_TYPES:
        valid = ", ".join(UPLOAD_TYPES)
        raise bad_request(f"Content-Type ({ctype or 'none'}) not supported. Valid values: {valid}")
    kind, ext, cap = UPLOAD_TYPES[ctype]
    data = ctx.req.body
    if not data:
        raise bad_request("File body is empty")
    if len(data) > cap:
        raise ApiError(413, f"File too large: {len(data)} bytes, at most {cap} for {ctype}")
    if not _magic_matches(ext, data):
        raise bad_request(f"File bytes do not match Content-Type {ctype}")
    strip = query.get("stripMetadata", True)
    if kind == "image" and not strip and any(mark in data for mark in _AI_PROVENANCE):
        raise ApiError(422, "Image declares AI provenance; upload with stripMetadata=true")
    world = ctx.world
    acct = world.any_account(query.get("email"))
    asset = world.add_asset(email=acct.email, uid=ctx.uid, kind=kind, ext=ext)
    record = {
        "id": asset.asset_id,
        "url": ctx.media.url(ctx.req.origin, asset.name, "png" if kind == "image" else "m4a"),
        # docs/api-notes.md#q21-asset-ids: audio uploads report kind/assetType "audio".
        "kind": kind,
        "assetType": kind,
        "email": acct.email,
        "metadata_stripped": bool(strip and kind == "image"),
    }
    if kind == "audio":
        record["duration_s"] = 30.0
        record["is_flagged"] = False
    return Response.json(200, record)


def _magic_matches(ext: str, data: bytes) -> bool:
    if ext == "jpg":
        return data.startswith(b"\xff\xd8\xff")
    if ext == "png":
        return data.startswith(b"\x89PNG\r\n\x1a\n")
    if ext == "webp":
        return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    if ext == "wav":
        return data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    if ext == "mp3":
        return data.startswith(b"ID3") or (len(data) > 1 and data[0] == 0xFF and data[1] >= 0xE0)
    # m4a/aac: an MPEG-4 container or raw ADTS frames
    return data[4:8] == b"ftyp" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xF6 == 0xF0)


async def post_generate(ctx: Ctx) -> Response:
    body = validate(
        body_fields(ctx.req),
        {
            "prompt": Field(STR, required=True, lo=1, hi=2000),
            "email": Field(STR),
        },
    )
    world = ctx.world
    acct = world.any_account(body.get("email"))
    rng = random.Random(f"{world.seed}:image:{body['prompt']}")
    await anyio.sleep(world.clock.real(rng.uniform(*IMAGE_SECONDS)))
    if world.moderate(body["prompt"]):
        # A moderated image prompt surfaces as a generic upstream 500 .
        raise ApiError(500, 'FlowMusic image generation failed (500): "Internal Server Error"')
    asset = world.add_asset(email=acct.email, uid=ctx.uid, kind="image", ext="png")
    return Response.json(
        200,
        {
            "id": asset.asset_id,
            "url": ctx.media.url(ctx.req.origin, asset.name, "png"),
            "kind": "image",
            "assetType": "image",
            "email": acct.email,
            "width": 1024,
            "height": 1024,
            "model": "google-generative-ai",
        },
    )
