"""POST /music/edit: effect, extend, replace, cover, remix (jobs) and stems (synchronous) ."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import anyio

from . import _content
from ._context import Ctx
from ._jobpost import answer, burst_gate, moderated
from ._params import ANY, FLOAT, INT, STR, Field, body_fields, coerce, validate
from ._records import job_record
from ._routes_music import INSTRUMENTAL, MODELS, MODES, SONG_SECONDS
from ._state import ClipDraft, ClipRec, Job, Stems
from ._wire import Response, bad_request

EFFECT_SECONDS = (5.0, 30.0)
STEMS_SECONDS = (15.0, 60.0)
STEM_PARTS = ("drums", "bass", "vocals", "other")
EFFECTS = ("Trim", "Fade", "Gain", "Reverb", "Pan", "Equalizer")

_COMMON = {
    "operation": Field(
        STR, required=True, choices=("effect", "extend", "replace", "cover", "remix", "stems")
    ),
    "clip": Field(STR, required=True),
    "seed": Field(INT, lo=0),
    "title": Field(STR),
    "mode": Field(STR, choices=MODES),
    "replyUrl": Field(STR, hi=1024),
    "replyRef": Field(STR),
}
_MODEL = {"model": Field(STR, choices=MODELS)}
# Each effect reads only its own parameters; the others are accepted and ignored .
_EFFECT = {
    "effect": Field(STR, required=True, choices=EFFECTS),
    "start_s": Field(FLOAT, lo=0),
    "end_s": Field(FLOAT, lo=0),
    "fade_in_s": Field(FLOAT, lo=0),
    "fade_out_s": Field(FLOAT, lo=0),
    "gain_db": Field(FLOAT, lo=-30, hi=30),
    "mix": Field(FLOAT, lo=0, hi=1),
    "room_size": Field(FLOAT, lo=0, hi=1),
    "pan": Field(FLOAT, lo=-1, hi=1),
    "bass_db": Field(FLOAT, lo=-12, hi=12),
    "mid_db": Field(FLOAT, lo=-12, hi=12),
    "treble_db": Field(FLOAT, lo=-12, hi=12),
}
_OPERATIONS: dict[str, dict[str, Field]] = {
    "effect": _EFFECT,
    "extend": {
        **_MODEL,
        "instruction": Field(STR, required=True),
        "extend_s": Field(FLOAT, lo=1, hi=300),
        "extend_from_s": Field(FLOAT, lo=0),
    },
    "replace": {
        **_MODEL,
        "instruction": Field(STR, required=True),
        "mask_start_s": Field(FLOAT, required=True, lo=0),
        "mask_end_s": Field(FLOAT, required=True, lo=0),
    },
    "cover": {**_MODEL, "instruction": Field(STR), "strength": Field(FLOAT, lo=0, hi=1)},
    "remix": {**_MODEL, "lyrics": Field(STR, required=True, hi=10_000), "prompt": Field(STR)},
    # Only `clip` is read; mode/replyUrl/model are accepted and ignored
    # (docs/api-notes.md#q27-model-on-edits).
    "stems": _MODEL,
}
_EFFECT_OWN = {
    "Trim": ("start_s", "end_s"),
    "Fade": ("fade_in_s", "fade_out_s"),
    "Gain": ("gain_db",),
    "Reverb": ("mix", "room_size"),
    "Pan": ("pan",),
    "Equalizer": ("bass_db", "mid_db", "treble_db"),
}


def _effect_spec(effect: str) -> dict[str, Field]:
    """Only the chosen effect's parameters are checked; the other effects' pass unchecked."""
    own = ("effect", *_EFFECT_OWN[effect])
    return {**_COMMON, **{k: (v if k in own else Field(ANY)) for k, v in _EFFECT.items()}}


async def post_edit(ctx: Ctx) -> Response:
    raw = body_fields(ctx.req)
    if "operation" not in raw:
        raise bad_request("Parameter operation is required")
    op = coerce("operation", raw["operation"], _COMMON["operation"])
    spec = {**_COMMON, **_OPERATIONS[op]}
    if op == "effect":
        spec = _effect_spec(coerce("effect", raw.get("effect"), _EFFECT["effect"]))
    body = validate(raw, spec)
    clip_id: str = body["clip"]
    if not (clip_id.startswith("user:") and "-clip:" in clip_id):
        raise bad_request("Parameter clip not a valid clip ID")
    world = ctx.world
    source = world.clip(clip_id, ctx.uid)
    acct = world.healthy(world.account(source.email))
    if op == "stems":
        return await _stems(ctx, source, body)
    drafts = _check_and_draft(op, source, body)
    burst_gate(ctx, named=True)  # an edit runs on its clip's account
    cost = world.cost(op)  # docs/api-notes.md#q31-edit-costs
    acct = world.job_account(acct.email, cost)
    refused = moderated(ctx, body.get("instruction"), body.get("lyrics"), body.get("prompt"))
    job = world.submit(
        acct=acct,
        uid=ctx.uid,
        operation=op,
        request=body,
        cost=cost,
        duration=EFFECT_SECONDS if op == "effect" else SONG_SECONDS,
        draft=drafts,
        origin=ctx.req.origin,
        canonical=world.canonical("/music/edit", body),
        refused=refused,
    )
    return await answer(ctx, job, body.get("mode", "sync"))


def _check_and_draft(op: str, src: ClipRec, body: dict[str, Any]) -> Any:
    """Operation-specific rules, then a function drafting the new clips.

    See docs/api-notes.md#q19-effect-parameters and #q14-clips-per-edit.
    """
    length = src.duration_s
    if op == "effect":
        length = _check_effect(src, body)
    elif op == "extend":
        start = body.get("extend_from_s", src.duration_s)
        if start > src.duration_s:
            raise bad_request("Parameter extend_from_s must not exceed the clip duration")
        length = start + body.get("extend_s", 150.0)
    elif op == "replace" and not (body["mask_start_s"] < body["mask_end_s"] <= src.duration_s):
        raise bad_request("Parameter mask_end_s must be after mask_start_s and within the clip")

    def draft(rng: random.Random) -> list[ClipDraft]:
        count = 1 if op == "effect" or rng.random() < 0.3 else 2  # 1 or 2: see the docstring
        lyrics = body.get("lyrics", src.lyrics)
        suffix = f" ({body['effect']})" if op == "effect" else f" ({op})"
        return [
            ClipDraft(
                title=body.get("title") or f"{src.title or _content.title(rng)}{suffix}",
                duration_s=length,
                lyrics=lyrics,
                lyrics_timing=(
                    _content.lyrics_timing(lyrics, length)
                    if lyrics and lyrics != INSTRUMENTAL
                    else None
                ),
                seed=body.get("seed", rng.randrange(2**31)),
                prompt=body.get("prompt", src.prompt),
            )
            for _ in range(count)
        ]

    return draft


def _check_effect(src: ClipRec, body: dict[str, Any]) -> float:
    effect = body["effect"]
    required = {"Gain": ("gain_db",), "Pan": ("pan",), "Trim": ("start_s", "end_s")}
    for name in required.get(effect, ()):
        if name not in body:
            raise bad_request(f"Parameter {name} is required for effect {effect}")
    if effect == "Trim":
        if not body["start_s"] < body["end_s"] <= src.duration_s:
            raise bad_request("Parameter end_s must be after start_s and within the clip")
        return float(body["end_s"] - body["start_s"])
    if effect == "Fade" and not (body.get("fade_in_s", 0) > 0 or body.get("fade_out_s", 0) > 0):
        raise bad_request("Parameter fade_in_s or fade_out_s must be greater than 0")
    return src.duration_s


async def _stems(ctx: Ctx, src: ClipRec, body: dict[str, Any]) -> Response:
    """Always synchronous; a clip that was already split returns the same four stems."""
    world = ctx.world
    stems = world.stems.get(src.clip_id)
    if stems is None:
        request = {"operation": "stems", "clip": src.clip_id}

        def draft(rng: random.Random) -> list[ClipDraft]:
            base = ClipDraft(
                title=src.title,
                duration_s=src.duration_s,
                lyrics=None,
                lyrics_timing=None,
                seed=src.seed,
                prompt=src.prompt,
            )
            return [
                replace(
                    base,
                    title=f"{src.title} - {part}",
                    lyrics=src.lyrics if part == "vocals" else None,
                    lyrics_timing=src.lyrics_timing if part == "vocals" else None,
                )
                for part in STEM_PARTS
            ]

        # A split is paid once, if stems are given a cost: asking again returns the same stems.
        acct = world.funded(world.account(src.email), world.cost("stems"))
        job: Job = world.submit(
            acct=acct,
            uid=ctx.uid,
            operation="stems",
            request=request,
            cost=0.0,
            duration=STEMS_SECONDS,
            draft=draft,
            origin=ctx.req.origin,
            canonical=world.canonical("/music/edit", request),
            in_slot=False,
        )
        world.charge(acct, world.cost("stems"), conversation=job.jobid, title=src.title or "")
        # docs/api-notes.md#q13-stems-shape: stems answer a job-record-like object with four clips.
        stems = world.stems[src.clip_id] = Stems(job=job, ready=job.ends)
    await anyio.sleep(world.clock.real(stems.ready - world.clock.now()))
    return Response.json(200, job_record(stems.job, world.clock.now(), ctx.media, ctx.req.origin))
