"""POST /music, GET /music, POST /music/lyrics, GET /music/download ."""

from __future__ import annotations

import random
from typing import Any

import anyio

from . import _content
from ._context import Ctx
from ._jobpost import answer, burst_gate, moderated
from ._media import mp3
from ._params import BOOL, INT, STR, Field, body_fields, query_fields, validate
from ._records import library_record
from ._state import ClipDraft, ClipRec
from ._wire import ApiError, Response, bad_request

SONG_SECONDS = (40.0, 150.0)
LYRICS_SECONDS = (10.0, 30.0)
MODELS = ("lyria-3.5", "lyria-3-pro")
MODES = ("sync", "async")
INSTRUMENTAL = "[Instrumental]"  # an instrumental clip's lyrics
REF_IMAGES = tuple(f"refImage{i}" for i in range(1, 11))
REF_AUDIOS = tuple(f"refAudio{i}" for i in range(1, 11))

MUSIC_FIELDS: dict[str, Field] = {
    "prompt": Field(STR, required=True, lo=1, hi=10_000),
    "email": Field(STR),
    "instrumental": Field(BOOL),
    "lyrics": Field(STR, hi=10_000),
    "ghostwriter": Field(STR, choices=("standard", "pro")),
    "model": Field(STR, choices=MODELS),
    "mode": Field(STR, choices=MODES),
    "replyUrl": Field(STR, hi=1024),
    "replyRef": Field(STR),
    **{name: Field(STR) for name in REF_IMAGES + REF_AUDIOS},
}


async def post_music(ctx: Ctx) -> Response:
    raw = body_fields(ctx.req)
    if len(str(raw.get("replyUrl", ""))) > 1024:
        raise bad_request("replyUrl is too long")
    body = validate(raw, MUSIC_FIELDS)
    email = _ref_account(ctx, body)
    burst_gate(ctx, named=email is not None)
    world = ctx.world
    acct = world.job_account(email, world.cost("song"))
    refused = moderated(ctx, body["prompt"], body.get("lyrics"))
    job = world.submit(
        acct=acct,
        uid=ctx.uid,
        operation=None,
        request=body,
        cost=world.cost("song"),
        duration=SONG_SECONDS,
        draft=lambda rng: song_clips(rng, body),
        origin=ctx.req.origin,
        canonical=world.canonical("/music", body),
        refused=refused,
    )
    if not refused:
        world.stats.accepted_prompts[body["prompt"]] += 1
    return await answer(ctx, job, body.get("mode", "sync"))


def _ref_account(ctx: Ctx, body: dict[str, Any]) -> str | None:
    """Check ref assets; they decide the account when `email` is omitted.

    See docs/api-notes.md#q22-account-from-assets.

    An empty `email` counts as omitted, as on GET /music (the request echo keeps it verbatim).
    """
    email: str | None = body.get("email") or None
    owner: str | None = None
    for name in REF_IMAGES + REF_AUDIOS:
        if name not in body:
            continue
        asset = ctx.world.assets.get(body[name])
        kind = "image" if name.startswith("refImage") else "audio"
        if asset is None or asset.uid != ctx.uid or asset.kind != kind:
            raise bad_request(f"Parameter {name} not a valid {kind} asset id")
        if owner is not None and asset.email != owner:
            raise bad_request("All reference assets must belong to one account")
        owner = asset.email
    if owner is not None and email is not None and owner != email:
        raise bad_request(f"Reference assets belong to {owner}, not {email}")
    return email or owner


def song_clips(rng: random.Random, body: dict[str, Any]) -> list[ClipDraft]:
    """Up to two clips; vocal ones carry lyrics (given or model-written) and their timing.

    Instrumental clips carry `lyrics: "[Instrumental]"` and no timing, as the POST /music
    page's model says ("[Instrumental]" for instrumentals).
    """
    # docs/api-notes.md#q29-instrumental-with-lyrics: instrumental together with lyrics is accepted;
    # instrumental wins.
    vocal = not body.get("instrumental", False)
    count = 2 if rng.random() < 0.9 else 1
    drafts = []
    for _ in range(count):
        duration = rng.uniform(90.0, 200.0)
        words = (body.get("lyrics") or _content.lyrics(rng)) if vocal else INSTRUMENTAL
        timing = _content.lyrics_timing(words, duration) if vocal else None
        drafts.append(
            ClipDraft(
                title=_content.title(rng),
                duration_s=duration,
                lyrics=words,
                lyrics_timing=timing,
                seed=rng.randrange(2**31),
                prompt=body["prompt"],
            )
        )
    return drafts


async def get_music(ctx: Ctx) -> Response:
    query = validate(
        query_fields(ctx.req),
        {
            "email": Field(STR),
            "limit": Field(INT, lo=1, hi=100),
            "offset": Field(INT, lo=0),
        },
    )
    acct = ctx.world.any_account(query.get("email"))
    limit = query.get("limit", 20)  # default 20: docs/api-notes.md#q16-get-music-limit
    offset = query.get("offset", 0)
    clips = ctx.world.visible_clips(acct.email)
    page = clips[offset : offset + limit]
    return Response.json(
        200,
        {
            "email": acct.email,
            "clips": [library_record(c, ctx.req.origin, ctx.media) for c in page],
            "limit": limit,
            "offset": offset,
            "next": offset + limit if offset + limit < len(clips) else None,
        },
    )


async def post_lyrics(ctx: Ctx) -> Response:
    body = validate(
        body_fields(ctx.req),
        {
            "prompt": Field(STR, required=True, lo=1, hi=2000),
            "structure": Field(STR, hi=2000),
            "email": Field(STR),
        },
    )
    world = ctx.world
    cost = world.cost("lyrics")  # free unless given a cost: docs/api-notes.md#q24-lyrics-cost
    acct = world.funded(world.any_account(body.get("email")), cost)
    rng = random.Random(f"{world.seed}:lyrics:{body['prompt']}")
    await anyio.sleep(world.clock.real(rng.uniform(*LYRICS_SECONDS)))
    if world.moderate(body["prompt"]):
        raise ApiError(
            422,
            "no lyrics",
            body={
                "email": acct.email,
                "error": {"code": "no_lyrics", "message": "The song agent returned no lyrics"},
                "agent_text": "I can't write lyrics for that request.",
            },
        )
    title = _content.title(rng)
    if cost:  # a conversation id is drawn only then, so free lyrics keep every seeded draw
        world.charge(acct, cost, conversation=f"lyrics:{world.new_uuid()}", title=title)
    return Response.json(
        200,
        {
            "email": acct.email,
            "title": title,
            "lyrics": _content.lyrics(rng),
            "sound_prompt": _content.sound_prompt(rng, body["prompt"]),
            "source": "lyrics-create",
            "audio_create_song_fired": False,
            "credits_burned": cost or 0,
        },
    )


async def get_download(ctx: Ctx) -> Response:
    query = validate(
        query_fields(ctx.req),
        {
            "id": Field(STR, required=True),
            "format": Field(STR),
        },
    )
    if query.get("format", "mp3") != "mp3":
        raise bad_request("Parameter format not supported. Valid values: mp3")
    clip = _download_clip(ctx, query["id"])
    ctx.world.healthy(ctx.world.account(clip.email))
    headers = [
        ("content-type", "audio/mpeg"),
        ("content-disposition", f'attachment; filename="{clip.clip_id}.mp3"'),
    ]
    return Response(200, mp3(), headers)


def _download_clip(ctx: Ctx, some_id: str) -> ClipRec:
    world = ctx.world
    if some_id.startswith("job:"):
        job = world.job(some_id, ctx.uid)
        status = job.status(world.clock.now())
        if status != "completed":
            raise ApiError(409, f"Job {some_id} is not completed (status: {status})")
        return job.clips[0]
    if some_id.startswith("user:") and "-clip:" in some_id:
        return world.clip(some_id, ctx.uid)
    raise bad_request("Parameter id not a valid clip ID or jobid")
