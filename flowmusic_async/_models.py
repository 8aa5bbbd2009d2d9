"""Wire models: one frozen msgspec Struct per record the Flow Music API returns, and their decoders.

Python names are snake_case; the API's camelCase names (``maxJobs``, ``replyRef``,
``assetType``) are mapped with ``name=``. Every field the contract does not promise on every
record has a default, and unknown fields are ignored, so a server that adds fields never
breaks decoding. Decoders run in lax mode (``strict=False``) because the API accepts
form-encoded requests and may echo numbers as strings ("12"); an integral float such as
``12.0`` is also accepted where an int is expected.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

__all__ = [
    "ACCOUNTS_DECODER",
    "ACCOUNT_DECODER",
    "ASSET_DECODER",
    "CLIP_PAGE_DECODER",
    "JOBS_DECODER",
    "JOB_DECODER",
    "LYRICS_DECODER",
    "STEMS_DECODER",
    "USAGE_DECODER",
    "Account",
    "AccountJobs",
    "Asset",
    "Clip",
    "ClipPage",
    "ConversationUsage",
    "Job",
    "JobError",
    "JobStatus",
    "LibraryClip",
    "Lyrics",
    "RunningJob",
    "Stems",
    "Usage",
    "UsageEvent",
    "UsageSummary",
    "without_callback_secret",
]

JobStatus = Literal["pending", "completed", "failed"]

# The query parameter `fm.webhooks` appends to a job's replyUrl: the callback's secret, which
# every record loses as it is decoded (see `fm.webhooks`, docs/architecture.md "Webhooks").
CALLBACK_SECRET_PARAM = "flowmusic_sig"
_SECRET_AT_END = re.compile(rf"[?&]{CALLBACK_SECRET_PARAM}=[^&#]*$")


def without_callback_secret(url: str) -> str:
    """`url` without the callback secret the client appended to it (the URL as it was given)."""
    if CALLBACK_SECRET_PARAM not in url:
        return url
    base, hash_mark, fragment = url.partition("#")
    base = _SECRET_AT_END.sub("", base)
    path, _, query = base.partition("?")
    if f"{CALLBACK_SECRET_PARAM}=" in query:  # not where we put it: the query was reordered
        kept = [p for p in query.split("&") if not p.startswith(f"{CALLBACK_SECRET_PARAM}=")]
        base = f"{path}?{'&'.join(kept)}" if kept else path
    return base + hash_mark + fragment


class _Record(msgspec.Struct, frozen=True, kw_only=True):
    """The base of every record: frozen, keyword-only, and convertible to JSON-ready data."""

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready builtins (dicts, lists, str, numbers), named as on the wire.

        What a web framework can return as is (FastAPI, Starlette's JSONResponse, Flask).
        """
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data


class JobError(_Record, frozen=True, kw_only=True):
    """Why a job failed, e.g. ``code="user_cancelled"`` after DELETE /jobs/{jobid}."""

    code: str
    message: str = ""


class Clip(_Record, frozen=True, kw_only=True):
    """One rendered clip inside a job record; ``clip`` is the id to edit or download."""

    clip: str
    title: str | None = None
    duration_s: float | None = None
    lyrics: str | None = None
    seed: int | None = None
    # [start_s, end_s] pairs, vocal clips only
    lyrics_timing: tuple[tuple[float, float], ...] | None = None
    created_at: str | None = None
    audio_url: str | None = None  # public m4a
    wav_url: str | None = None  # public lossless WAV
    image_url: str | None = None  # cover art


class Job(_Record, frozen=True, kw_only=True):
    """A job record (POST /music, POST /music/edit, GET /jobs/{jobid}, webhooks).

    ``clips`` is filled only once completed and ``error`` only once failed. Instances are
    immutable and safe to share between tasks.
    """

    jobid: str
    email: str
    status: JobStatus
    created_at: str | None = None
    operation: str | None = None
    completed_at: str | None = None
    duration_ms: float | None = None
    clips: tuple[Clip, ...] = ()
    error: JobError | None = None
    request: dict[str, Any] = {}
    reply_ref: str | None = msgspec.field(default=None, name="replyRef")

    def __post_init__(self) -> None:
        # The server echoes the replyUrl it was sent, secret included: no record the library
        # hands out carries it, so none that a user logs or returns can be used to forge a
        # callback. A new dict, so that a caller's own is never changed.
        reply_url = self.request.get("replyUrl")
        if isinstance(reply_url, str) and CALLBACK_SECRET_PARAM in reply_url:
            request = {**self.request, "replyUrl": without_callback_secret(reply_url)}
            msgspec.structs.force_setattr(self, "request", request)

    @property
    def is_terminal(self) -> bool:
        """True once the job is completed or failed; it will not change again."""
        return self.status != "pending"

    @property
    def is_completed(self) -> bool:
        """True when the job finished with clips."""
        return self.status == "completed"

    @property
    def is_failed(self) -> bool:
        """True when the job ended failed (cancelled too: code "user_cancelled")."""
        return self.status == "failed"

    @property
    def request_reply_ref(self) -> str | None:
        """The ``replyRef`` sent with the request, from the top level or the ``request`` echo.

        The API does not say where the server puts it, so both are read
        (docs/api-notes.md#q10-webhooks).
        """
        if self.reply_ref is not None:
            return self.reply_ref
        echoed = self.request.get("replyRef")
        return echoed if isinstance(echoed, str) else None


class Stems(_Record, frozen=True, kw_only=True):
    """The synchronous answer of ``operation=stems``: a job-record-like object with four clips.

    The envelope is undocumented, so everything but ``clips`` is optional
    (docs/api-notes.md#q13-stems-shape).
    """

    clips: tuple[Clip, ...] = ()
    jobid: str | None = None
    email: str | None = None
    status: JobStatus = "completed"
    operation: str | None = None
    created_at: str | None = None
    completed_at: str | None = None
    duration_ms: float | None = None
    request: dict[str, Any] = {}


class RunningJob(_Record, frozen=True, kw_only=True):
    """One running job as GET /jobs lists it."""

    jobid: str
    status: JobStatus = "pending"
    created_at: str | None = None
    operation: str | None = None


class AccountJobs(_Record, frozen=True, kw_only=True):
    """One account's entry in GET /jobs: how many jobs run against its ``maxJobs``."""

    running: int
    max_jobs: int = msgspec.field(name="maxJobs")
    jobs: tuple[RunningJob, ...] = ()


class Account(_Record, frozen=True, kw_only=True):
    """A configured Flow Music account (GET/POST /accounts).

    Tokens in the record are redacted by the server; credit balances appear only on
    GET /accounts/{email} for a healthy account.
    """

    email: str
    tier: str = "unknown"
    # Documented as always present; None only if a server leaves it out.
    max_jobs: int | None = msgspec.field(default=None, name="maxJobs")
    subscription_plan: str | None = None
    provider: str | None = None
    user_id: str | None = None
    added: str | None = None
    refreshed_at: str | None = None
    refreshed_count: int | None = None
    access_token: str | None = None
    access_token_expires_at: str | None = None
    refresh_token: str | None = None
    session_id: str | None = None
    error: str | None = None
    credits_remaining: float | None = None
    tokens_remaining: float | None = None

    @property
    def is_healthy(self) -> bool:
        """False when the server recorded an error (calls for it answer 596 until re-added)."""
        return self.error is None


class UsageEvent(_Record, frozen=True, kw_only=True):
    """One usage row: one type, one conversation, one UTC day."""

    type: str
    amount: float = 0.0
    conversation_id: str | None = None
    conversation_title: str | None = None
    event_at: str | None = None
    max_created_at: str | None = None
    account_email: str | None = msgspec.field(default=None, name="_account_email")


class ConversationUsage(_Record, frozen=True, kw_only=True):
    """Spend on one Flow Music conversation (song)."""

    conversation_id: str
    title: str | None = None
    email: str | None = None
    tokens: float = 0.0
    credits: float = 0.0


class UsageSummary(_Record, frozen=True, kw_only=True):
    """Totals of a usage report; 1 credit = 12 tokens."""

    by_type_tokens: dict[str, float] = {}
    by_type_credits: dict[str, float] = {}
    total_charged_credits: float = 0.0
    total_received_tokens: float = 0.0
    per_conversation: tuple[ConversationUsage, ...] = ()


class Usage(_Record, frozen=True, kw_only=True):
    """GET /accounts/usage: token and credit usage of one account."""

    email: str
    events: tuple[UsageEvent, ...] = ()
    summary: UsageSummary = UsageSummary()


class LibraryClip(_Record, frozen=True, kw_only=True):
    """A clip as GET /music lists it; media URLs may or may not be present.

    See docs/api-notes.md#q15-get-music-media-urls.
    """

    clip: str
    title: str | None = None
    lyrics: str | None = None
    duration_s: float | None = None
    image_url: str | None = None
    audio_url: str | None = None
    wav_url: str | None = None


class ClipPage(_Record, frozen=True, kw_only=True):
    """One page of GET /music, newest first; ``next`` is the next offset, None on the last page."""

    email: str
    clips: tuple[LibraryClip, ...] = ()
    limit: int = 20
    offset: int = 0
    next: int | None = None


class Lyrics(_Record, frozen=True, kw_only=True):
    """POST /music/lyrics: lyrics and a matching sound prompt, no audio."""

    lyrics: str
    email: str | None = None
    title: str | None = None
    sound_prompt: str | None = None
    source: str | None = None
    audio_create_song_fired: bool | None = None
    credits_burned: float | None = None


class Asset(_Record, frozen=True, kw_only=True):
    """An uploaded (POST /files) or generated (POST /files/generate) reference asset.

    Use ``id`` as ``ref_images``/``ref_audios``; it only works on the account in ``email``.
    """

    id: str
    url: str | None = None
    kind: str | None = None
    asset_type: str | None = msgspec.field(default=None, name="assetType")
    email: str | None = None
    metadata_stripped: bool | None = None
    clip_id: str | None = None
    operation_id: str | None = None
    is_flagged: bool | None = None
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    model: str | None = None


JOB_DECODER = msgspec.json.Decoder(Job, strict=False)
STEMS_DECODER = msgspec.json.Decoder(Stems, strict=False)
JOBS_DECODER = msgspec.json.Decoder(dict[str, AccountJobs], strict=False)
ACCOUNT_DECODER = msgspec.json.Decoder(Account, strict=False)
ACCOUNTS_DECODER = msgspec.json.Decoder(dict[str, Account], strict=False)
USAGE_DECODER = msgspec.json.Decoder(Usage, strict=False)
CLIP_PAGE_DECODER = msgspec.json.Decoder(ClipPage, strict=False)
LYRICS_DECODER = msgspec.json.Decoder(Lyrics, strict=False)
ASSET_DECODER = msgspec.json.Decoder(Asset, strict=False)
