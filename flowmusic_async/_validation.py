"""Request builders that validate every parameter before anything is sent.

A request the server would refuse must not spend a round trip (or, for a paid POST, a slot
and a retry budget), so each builder checks the documented limits of the contract and raises
`ValidationError` naming the offending parameter by its Python name. Builders return the JSON
body (or query parameters) with unset (None) fields left out, and map Python names to the
API's (``reply_url`` -> ``replyUrl``, ``ref_images`` -> ``refImage1..N``).

Where the contract is silent, the rules lean towards refusing what cannot be meant:
``instrumental=True`` with lyrics (docs/api-notes.md#q29-instrumental-with-lyrics),
parameters that the chosen edit
operation or effect would silently ignore, and blank prompts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

from ._errors import ValidationError
from ._requests import (
    EDIT_FIELDS,
    EDIT_OPERATIONS,
    GHOSTWRITERS,
    MODELS,
    MODES,
    EditRequest,
    Mode,
    SongRequest,
    edit_request,
    song_request,
)

__all__ = [
    "EDIT_OPERATIONS",
    "EFFECTS",
    "GHOSTWRITERS",
    "MAX_SECONDS",
    "MODELS",
    "MODES",
    "UPLOAD_LIMITS",
    "account_add_body",
    "account_limit_body",
    "check_email",
    "check_encodable",
    "check_id",
    "check_reply_url",
    "check_seconds",
    "download_params",
    "edit_body",
    "guess_content_type",
    "image_body",
    "list_params",
    "lyrics_body",
    "music_body",
    "upload_params",
]

MAX_REFERENCES = 10
MAX_REPLY_URL = 1024  # the account-wide replyUrl limit; the per-call one is not documented

_MIB = 1024 * 1024
# Upload caps per content type. "20 MB" is read as MiB so that nothing the server accepts is
# refused locally; at worst a file between 20e6 and 20 MiB costs one 413.
UPLOAD_LIMITS: Mapping[str, int] = {
    "image/jpeg": 20 * _MIB,
    "image/png": 20 * _MIB,
    "image/webp": 20 * _MIB,
    "audio/mpeg": 40 * _MIB,
    "audio/wav": 40 * _MIB,
    "audio/mp4": 40 * _MIB,
    "audio/x-m4a": 40 * _MIB,
    "audio/aac": 40 * _MIB,
}
_EXTENSION_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
}

# Each effect reads only its own flat parameters (contract 8.8).
# Keys are `EffectName`'s values, in its order (a test keeps them equal).
EFFECTS: Mapping[str, tuple[str, ...]] = {
    "Trim": ("start_s", "end_s"),
    "Fade": ("fade_in_s", "fade_out_s"),
    "Gain": ("gain_db",),
    "Reverb": ("mix", "room_size"),
    "Pan": ("pan",),
    "Equalizer": ("bass_db", "mid_db", "treble_db"),
}
_EFFECT_PARAMS = tuple(p for params in EFFECTS.values() for p in params)
_OPERATION_PARAMS: Mapping[str, tuple[str, ...]] = {
    "effect": ("effect", *_EFFECT_PARAMS),
    "extend": ("instruction", "extend_s", "extend_from_s"),
    "replace": ("instruction", "mask_start_s", "mask_end_s"),
    "cover": ("instruction", "strength"),
    "remix": ("lyrics", "prompt"),
    "stems": (),
}
_COMMON_EDIT_PARAMS = ("seed", "title", "mode", "reply_url", "reply_ref", "model")
# The model choice exists for generative edits only; effect and stems ignore it (question 27).
_MODEL_OPERATIONS = ("extend", "replace", "cover", "remix")
_WIRE_NAMES = {"reply_url": "replyUrl", "reply_ref": "replyRef"}


def music_body(
    request: SongRequest | str | None = None, /, *, mode: Mode | None = None, **fields: Any
) -> dict[str, Any]:
    """Validate a song request and return the JSON body of POST /music.

    Takes a `SongRequest`, or its fields as keywords (a positional string is the prompt).

    Raises:
        ValidationError: naming the first parameter the server would refuse.
    """
    if not isinstance(request, SongRequest):
        if request is not None:
            fields = {"prompt": request, **fields}
        request = song_request(fields)
    instrumental, lyrics = request.instrumental, request.lyrics
    body: dict[str, Any] = {"prompt": _text("prompt", request.prompt, max_len=10_000)}
    if instrumental is not None:
        _bool("instrumental", instrumental)
        body["instrumental"] = instrumental
    if lyrics is not None:
        body["lyrics"] = _text("lyrics", lyrics, max_len=10_000, min_len=0)
    if instrumental and lyrics:
        raise ValidationError(
            "lyrics", "instrumental=True forbids vocals, so lyrics cannot be sung; drop one"
        )
    if request.ghostwriter is not None:
        body["ghostwriter"] = _choice("ghostwriter", request.ghostwriter, GHOSTWRITERS)
    body.update(_references("ref_images", "refImage", request.ref_images))
    body.update(_references("ref_audios", "refAudio", request.ref_audios))
    if request.model is not None:
        body["model"] = _choice("model", request.model, MODELS)
    if request.email is not None:
        body["email"] = check_email("email", request.email)
    body.update(_delivery(mode=mode, reply_url=request.reply_url, reply_ref=request.reply_ref))
    return body


def edit_body(
    request: EditRequest | str,
    clip: str | None = None,
    /,
    *,
    mode: Mode | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Validate an edit request and return the JSON body of POST /music/edit.

    Takes an `EditRequest`, or an operation, a clip id and the request's other fields as
    keywords (None means unset). Parameters the operation (or the chosen effect) would ignore
    are refused, since passing them is almost surely a mistake.

    Raises:
        ValidationError: naming the first parameter the server would refuse.
    """
    if isinstance(request, EditRequest):
        operation: object = request.operation
        clip = request.clip
        given = {
            name: getattr(request, name)
            for name in EDIT_FIELDS[2:]
            if getattr(request, name) is not None
        }
    else:
        operation = request
        edit_request(request, clip or "", params)  # refuses names that are no edit field
        given = {name: value for name, value in params.items() if value is not None}
    operation = _choice("operation", operation, EDIT_OPERATIONS)
    if mode is not None:
        given["mode"] = mode
    allowed = _OPERATION_PARAMS[operation]
    if operation != "stems":  # stems reads only the clip
        allowed = allowed + _COMMON_EDIT_PARAMS
    for name in given:
        if name not in allowed:
            raise ValidationError(name, f"not a parameter of operation {operation!r}")
    if "model" in given and operation not in _MODEL_OPERATIONS:
        raise ValidationError("model", f"operation {operation!r} does not take a model")

    body: dict[str, Any] = {"operation": operation, "clip": check_id("clip", clip)}
    body.update(_OPERATION_CHECKS[operation](given))
    if "seed" in given:
        body["seed"] = _int("seed", given["seed"], low=0)
    if "title" in given:
        body["title"] = _text("title", given["title"], max_len=None)
    if "model" in given:
        body["model"] = _choice("model", given["model"], MODELS)
    body.update(
        _delivery(
            mode=given.get("mode"),
            reply_url=given.get("reply_url"),
            reply_ref=given.get("reply_ref"),
        )
    )
    return body


def _effect_fields(given: Mapping[str, Any]) -> dict[str, Any]:
    if "effect" not in given:
        raise ValidationError("effect", f"required; one of {', '.join(EFFECTS)}")
    # The API wants the capitalised name; accept any case and send the canonical one.
    by_lower = {name.lower(): name for name in EFFECTS}
    raw = given["effect"]
    effect = by_lower.get(raw.lower()) if isinstance(raw, str) else None
    if effect is None:
        raise ValidationError("effect", f"must be one of {', '.join(EFFECTS)}, not {raw!r}")
    own = EFFECTS[effect]
    for name in given:
        if name in _EFFECT_PARAMS and name not in own:
            raise ValidationError(name, f"does not apply to effect {effect!r} (it reads {own})")
    fields: dict[str, Any] = {"effect": effect}
    if effect == "Trim":
        start = _number("start_s", _required(given, "start_s"), low=0)
        end = _number("end_s", _required(given, "end_s"), low=0)
        if end <= start:
            raise ValidationError("end_s", f"must be greater than start_s ({start:g}), got {end:g}")
        fields.update(start_s=start, end_s=end)
    elif effect == "Fade":
        for name in own:
            if name in given:
                fields[name] = _number(name, given[name], low=0)
        if not any(fields.get(name, 0) > 0 for name in own):
            raise ValidationError("fade_in_s", "Fade needs fade_in_s or fade_out_s above 0")
    elif effect == "Gain":
        fields["gain_db"] = _number("gain_db", _required(given, "gain_db"), low=-30, high=30)
    elif effect == "Pan":
        fields["pan"] = _number("pan", _required(given, "pan"), low=-1, high=1)
    else:  # Reverb and Equalizer: any of their parameters, at least one
        low, high = (0, 1) if effect == "Reverb" else (-12, 12)
        for name in own:
            if name in given:
                fields[name] = _number(name, given[name], low=low, high=high)
        if len(fields) == 1:
            raise ValidationError(own[0], f"{effect} needs at least one of {', '.join(own)}")
    return fields


def _extend_fields(given: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"instruction": _instruction(given)}
    if "extend_s" in given:
        fields["extend_s"] = _number("extend_s", given["extend_s"], low=1, high=300)
    if "extend_from_s" in given:
        fields["extend_from_s"] = _number("extend_from_s", given["extend_from_s"], low=0)
    return fields


def _replace_fields(given: Mapping[str, Any]) -> dict[str, Any]:
    instruction = _instruction(given)
    start = _number("mask_start_s", _required(given, "mask_start_s"), low=0)
    end = _number("mask_end_s", _required(given, "mask_end_s"), low=0)
    if end <= start:
        raise ValidationError(
            "mask_end_s", f"must be greater than mask_start_s ({start:g}), got {end:g}"
        )
    return {"instruction": instruction, "mask_start_s": start, "mask_end_s": end}


def _cover_fields(given: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if "instruction" in given:
        fields["instruction"] = _text("instruction", given["instruction"], max_len=10_000)
    if "strength" in given:
        fields["strength"] = _number("strength", given["strength"], low=0, high=1)
    return fields


def _remix_fields(given: Mapping[str, Any]) -> dict[str, Any]:
    fields = {"lyrics": _text("lyrics", _required(given, "lyrics"), max_len=10_000)}
    if "prompt" in given:
        fields["prompt"] = _text("prompt", given["prompt"], max_len=10_000)
    return fields


def _stems_fields(given: Mapping[str, Any]) -> dict[str, Any]:
    return {}  # stems reads only the clip


_OPERATION_CHECKS: Mapping[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "effect": _effect_fields,
    "extend": _extend_fields,
    "replace": _replace_fields,
    "cover": _cover_fields,
    "remix": _remix_fields,
    "stems": _stems_fields,
}


def lyrics_body(
    prompt: str, *, structure: str | None = None, email: str | None = None
) -> dict[str, Any]:
    """Validate and build the body of POST /music/lyrics (prompt 1-2000, structure <= 2000)."""
    body: dict[str, Any] = {"prompt": _text("prompt", prompt, max_len=2000)}
    if structure is not None:
        body["structure"] = _text("structure", structure, max_len=2000, min_len=0)
    if email is not None:
        body["email"] = check_email("email", email)
    return body


def image_body(prompt: str, *, email: str | None = None) -> dict[str, Any]:
    """Validate and build the body of POST /files/generate (prompt 1-2000)."""
    body: dict[str, Any] = {"prompt": _text("prompt", prompt, max_len=2000)}
    if email is not None:
        body["email"] = check_email("email", email)
    return body


def account_add_body(refresh_token: str, *, max_jobs: int | None = None) -> dict[str, Any]:
    """Validate and build POST /accounts mode A (add or refresh by refresh token).

    The refresh token is a secret, so messages give its length, never its value.
    """
    if not isinstance(refresh_token, str):
        raise ValidationError("refresh_token", "must be a string")
    token = refresh_token.strip()
    if not token.isascii() or not token.isprintable():
        # Never quoted: it is a secret, and httpx would otherwise quote it in its own error.
        raise ValidationError("refresh_token", "must be printable ASCII")
    if len(token) < 10:
        raise ValidationError("refresh_token", f"must be at least 10 characters, got {len(token)}")
    body: dict[str, Any] = {"refresh_token": token}
    if max_jobs is not None:
        body["maxJobs"] = _int("max_jobs", max_jobs, low=1, high=16)
    return body


def account_limit_body(email: str, max_jobs: int) -> dict[str, Any]:
    """Validate and build POST /accounts mode B (change maxJobs only, no token refresh)."""
    return {
        "email": check_email("email", email),
        "maxJobs": _int("max_jobs", max_jobs, low=1, high=16),
    }


def list_params(
    *, email: str | None = None, limit: int | None = None, offset: int | None = None
) -> dict[str, Any]:
    """Validate and build the query of GET /music (limit 1-100, offset >= 0)."""
    params: dict[str, Any] = {}
    if email is not None:
        params["email"] = check_email("email", email)
    if limit is not None:
        params["limit"] = _int("limit", limit, low=1, high=100)
    if offset is not None:
        params["offset"] = _int("offset", offset, low=0)
    return params


def download_params(id: str, *, format: str = "mp3") -> dict[str, Any]:
    """Validate and build the query of GET /music/download (clip id or jobid; mp3 only)."""
    return {"id": check_id("id", id), "format": _choice("format", format, ("mp3",))}


def upload_params(
    content_type: str, size: int, *, email: str | None = None, strip_metadata: bool | None = None
) -> tuple[str, dict[str, Any]]:
    """Check an upload's type and size; return the normalised content type and the query.

    Raises:
        ValidationError: unsupported type (``content_type``), or empty/oversized (``data``).
    """
    if not isinstance(content_type, str):
        raise ValidationError("content_type", "must be a string such as 'image/png'")
    kind = content_type.split(";", 1)[0].strip().lower()
    limit = UPLOAD_LIMITS.get(kind)
    if limit is None:
        raise ValidationError(
            "content_type", f"{content_type!r} not supported; one of {', '.join(UPLOAD_LIMITS)}"
        )
    if size <= 0:
        raise ValidationError("data", "the file is empty")
    if size > limit:
        raise ValidationError(
            "data", f"{size} bytes is over the {limit // _MIB} MB limit for {kind}"
        )
    params: dict[str, Any] = {}
    if email is not None:
        params["email"] = check_email("email", email)
    if strip_metadata is not None:
        _bool("strip_metadata", strip_metadata)
        params["stripMetadata"] = "true" if strip_metadata else "false"
    return kind, params


def guess_content_type(path: str | os.PathLike[str]) -> str:
    """Guess an upload's content type from its file extension (jpg, png, webp, mp3, wav, m4a)."""
    extension = os.path.splitext(os.fspath(path))[1].lower()
    try:
        return _EXTENSION_TYPES[extension]
    except KeyError:
        raise ValidationError(
            "content_type",
            f"cannot tell the type of {os.path.basename(os.fspath(path))!r} from its extension; "
            f"pass content_type= (one of {', '.join(UPLOAD_LIMITS)})",
        ) from None


def check_email(field: str, value: object) -> str:
    """An account email: a non-empty string with an ``@``."""
    if not isinstance(value, str) or "@" not in value or value.strip() != value or not value:
        raise ValidationError(field, f"must be an account email address, got {_shown(value)}")
    return check_encodable(field, value)


def check_id(field: str, value: object) -> str:
    """An opaque id (jobid, clip id, asset id): a non-blank string."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, f"must be a non-empty id string, got {_shown(value)}")
    return check_encodable(field, value)


def check_encodable(field: str, value: str) -> str:
    """Refuse text that cannot be sent: a lone surrogate has no UTF-8 form.

    Such strings come from ``os.fsdecode`` of undecodable file names or from slicing a
    surrogate pair; left alone they fail much later with a `UnicodeEncodeError` while the
    request is encoded, or worse halfway through a batch.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValidationError(
            field, f"contains a lone surrogate ({value[error.start]!r} at index {error.start})"
        ) from None
    return value


def _shown(value: object) -> str:
    # A value quoted in a message: repr() is safe for any str (it escapes surrogates), but a
    # caller's huge object should not become a huge message.
    text = repr(value)
    return text if len(text) <= 200 else f"{text[:200]}..."


def _delivery(*, mode: object, reply_url: object, reply_ref: object) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if mode is not None:
        fields["mode"] = _choice("mode", mode, MODES)
    if reply_url is not None:
        fields[_WIRE_NAMES["reply_url"]] = check_reply_url("reply_url", reply_url)
        fields[_WIRE_NAMES["reply_url"]] = reply_url
    if reply_ref is not None:
        fields[_WIRE_NAMES["reply_ref"]] = _text("reply_ref", reply_ref, max_len=None)
    return fields


def check_reply_url(field: str, value: object) -> str:
    """A callback URL: http(s), with a host, at most 1024 characters, sendable as UTF-8."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be an http(s) URL string, got {type(value).__name__}")
    check_encodable(field, value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as error:  # "https://[::1" and friends
        raise ValidationError(field, f"is not a valid URL ({error}): {_shown(value)}") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError(field, f"must be an http(s) URL, got {_shown(value)}")
    if not parts.netloc or not parts.hostname:
        raise ValidationError(field, f"has no host: {_shown(value)}")
    if len(value) > MAX_REPLY_URL:
        raise ValidationError(field, f"is {len(value)} characters; at most {MAX_REPLY_URL}")
    return value


def _references(field: str, wire: str, ids: object) -> dict[str, str]:
    if ids is None:
        return {}  # None means "not sent", as for every optional field (see `SongRequest`)
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Collection):
        # A lone string is a Sequence too (iterating it would send characters); None or a
        # number is no collection at all. Either way a list of asset ids was meant.
        raise ValidationError(field, f"must be a list of asset ids, got {type(ids).__name__}")
    ids = list(ids)
    if len(ids) > MAX_REFERENCES:
        raise ValidationError(field, f"at most {MAX_REFERENCES} references, got {len(ids)}")
    return {f"{wire}{n}": check_id(field, asset) for n, asset in enumerate(ids, start=1)}


def _instruction(given: Mapping[str, Any]) -> str:
    return _text("instruction", _required(given, "instruction"), max_len=10_000)


def _required(given: Mapping[str, Any], name: str) -> Any:
    if name not in given:
        raise ValidationError(name, "required")
    return given[name]


def _text(field: str, value: object, *, max_len: int | None, min_len: int = 1) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if min_len > 0 and not value.strip():
        raise ValidationError(field, "must not be empty or blank")
    if max_len is not None and len(value) > max_len:
        raise ValidationError(field, f"at most {max_len:,} characters, got {len(value):,}")
    return check_encodable(field, value)


def _choice(field: str, value: object, allowed: Collection[str]) -> str:
    if value not in allowed or not isinstance(value, str):
        raise ValidationError(field, f"must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _bool(field: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValidationError(field, f"must be True or False, got {value!r}")


def _number(field: str, value: object, *, low: float, high: float | None = None) -> float:
    # bool is an int subclass; True as a number of seconds is a bug, not a value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(field, f"must be a number, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise ValidationError(field, f"must be {bounds}, got {value:g}")
    return value


def _int(field: str, value: object, *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValidationError(field, f"must be {bounds}, got {value}")
    return value


# The longest deadline taken: a year. Past that a float deadline loses nothing, but timers
# overflow (asyncio's call_at with 1e300) and "forever" is what None already means.
MAX_SECONDS = 365 * 24 * 3600.0


def check_seconds(value: object, field: str = "timeout") -> float:
    """A deadline in seconds: a positive, finite number, refused before anything is sent.

    ``inf`` is refused too: a paid job waited on forever is a leak, not a choice; the default
    (None) is `Timing.job_timeout`, and anything up to `MAX_SECONDS` may be given.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(field, f"must be a number of seconds, got {type(value).__name__}")
    # Compared before isfinite(), which overflows on a huge int; NaN fails every comparison.
    if value <= 0 or value > MAX_SECONDS or not math.isfinite(value):
        raise ValidationError(
            field,
            f"must be a positive, finite number of seconds (at most {MAX_SECONDS:g}), "
            f"got {value!r}",
        )
    return float(value)
