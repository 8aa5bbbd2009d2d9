"""The parameters of each paid request, defined once: a song (POST /music) and an edit.

`SongRequest` and `EditRequest` are the single source of each request's field names, types
and defaults. From them derive: the keyword parameters of every method that sends the request
(spelled out for type checkers and kept equal to the fields by
``tests/test_requests.py``), the validation in `_validation` (which reads a request, not a
loose bag of keywords), the batch input (a `SongRequest` or a mapping of its fields) and the
journal fingerprint (the request's canonical JSON). docs/architecture.md, "Request
parameters, defined once", says why a Struct rather than a ``TypedDict`` with ``Unpack``.

The closed sets of the contract are `Literal` types, so a type checker rejects
``model="lyria-4"`` before the local validation would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import msgspec

from ._errors import ValidationError

__all__ = [
    "EditOperation",
    "EditRequest",
    "EffectName",
    "Ghostwriter",
    "Mode",
    "Model",
    "SongRequest",
    "edit_request",
    "song_request",
]

Model = Literal["lyria-3.5", "lyria-3-pro"]
Ghostwriter = Literal["standard", "pro"]
Mode = Literal["sync", "async"]
EditOperation = Literal["effect", "extend", "replace", "cover", "remix", "stems"]
EffectName = Literal["Trim", "Fade", "Gain", "Reverb", "Pan", "Equalizer"]

MODELS: tuple[Model, ...] = get_args(Model)
GHOSTWRITERS: tuple[Ghostwriter, ...] = get_args(Ghostwriter)
MODES: tuple[Mode, ...] = get_args(Mode)
EDIT_OPERATIONS: tuple[EditOperation, ...] = get_args(EditOperation)
EFFECT_NAMES: tuple[EffectName, ...] = get_args(EffectName)


class SongRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One song to generate (POST /music), as `generate`, `submit` and batches take it.

    Build one to pass to `fm.generate_many`; every field but `prompt` is optional and None
    (or an empty sequence) means "not sent". `mode` is not here: the engine always submits in
    async mode and `fm.music.create` takes it on its own.
    """

    prompt: str
    instrumental: bool | None = None
    lyrics: str | None = None
    ghostwriter: Ghostwriter | None = None
    ref_images: Sequence[str] = ()
    ref_audios: Sequence[str] = ()
    model: Model | None = None
    email: str | None = None
    reply_url: str | None = None
    reply_ref: str | None = None

    def to_params(self) -> dict[str, Any]:
        """The set fields as JSON-ready keyword arguments (what a journal stores and hashes)."""
        params: dict[str, Any] = msgspec.to_builtins(self)
        return params


class EditRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One edit of a clip (POST /music/edit): every operation's parameters in one record.

    Which fields an operation reads is the contract's (section 8.8) and `_validation` refuses
    the others; the per-operation helpers (`fm.extend`, `fm.music.cover`, ...) take only their
    own. `mode` is not here, as for `SongRequest`.
    """

    operation: EditOperation
    clip: str
    # effect
    effect: EffectName | None = None
    start_s: float | None = None
    end_s: float | None = None
    fade_in_s: float | None = None
    fade_out_s: float | None = None
    gain_db: float | None = None
    mix: float | None = None
    room_size: float | None = None
    pan: float | None = None
    bass_db: float | None = None
    mid_db: float | None = None
    treble_db: float | None = None
    # extend, replace, cover
    instruction: str | None = None
    extend_s: float | None = None
    extend_from_s: float | None = None
    mask_start_s: float | None = None
    mask_end_s: float | None = None
    strength: float | None = None
    # remix
    lyrics: str | None = None
    prompt: str | None = None
    # every operation but stems
    seed: int | None = None
    title: str | None = None
    reply_url: str | None = None
    reply_ref: str | None = None
    model: Model | None = None

    def to_params(self) -> dict[str, Any]:
        """The set fields (operation-specific ones included) as JSON-ready keywords."""
        params: dict[str, Any] = msgspec.to_builtins(self)
        return params


SONG_FIELDS: tuple[str, ...] = SongRequest.__struct_fields__
# Fields that say where a result goes, not what it is: left out of a journal's fingerprint.
DELIVERY_FIELDS = frozenset({"reply_url"})
EDIT_FIELDS: tuple[str, ...] = EditRequest.__struct_fields__


def song_request(request: str | SongRequest | Mapping[str, Any]) -> SongRequest:
    """A batch item as a `SongRequest`: a bare string is a prompt, a mapping its fields.

    Types are not checked here (the Struct's constructor does not check them); `music_body`
    does that, naming the field the way the server would.

    Raises:
        ValidationError: a mapping with a name that is not a `SongRequest` field, or no prompt.
    """
    if isinstance(request, SongRequest):
        return request
    if isinstance(request, str):
        return SongRequest(prompt=request)
    fields = _known(request, SONG_FIELDS, "song request")
    if "prompt" not in fields:
        raise ValidationError("prompt", "required")
    return SongRequest(**fields)


def edit_request(operation: str, clip: str, params: Mapping[str, Any]) -> EditRequest:
    """An edit from loose keywords (`edit_body`'s keyword form); unknown names are refused."""
    fields = _known(params, EDIT_FIELDS[2:], "edit parameter")  # operation and clip are given
    return EditRequest(operation=operation, clip=clip, **fields)  # type: ignore[arg-type]


def _known(params: Mapping[str, Any], fields: tuple[str, ...], what: str) -> dict[str, Any]:
    for name in params:
        if name not in fields:
            allowed = ", ".join(sorted(fields))
            raise ValidationError(str(name), f"not a {what} field (allowed: {allowed})")
    return {name: value for name, value in params.items() if value is not None}
