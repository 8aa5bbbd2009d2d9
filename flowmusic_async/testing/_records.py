"""JSON shapes of the API's records (,), rendered from state at read time."""

from __future__ import annotations

from typing import Any

from ._clock import iso
from ._media import MediaSigner
from ._state import TOKENS_PER_CREDIT, AccountState, ClipRec, Job

_PAID_TIERS = ("starter", "plus", "member")


def clip_record(clip: ClipRec, origin: str, media: MediaSigner) -> dict[str, Any]:
    return {
        "clip": clip.clip_id,
        "title": clip.title,
        "duration_s": clip.duration_s,
        "lyrics": clip.lyrics,
        "seed": clip.seed,
        "lyrics_timing": clip.lyrics_timing,
        "created_at": iso(clip.ready),
        "audio_url": media.url(origin, clip.name, "m4a"),
        "wav_url": media.url(origin, clip.name, "wav"),
        "image_url": media.url(origin, clip.name, "jpg"),  # JPEG cover art, as on the seed
    }


def library_record(clip: ClipRec, origin: str, media: MediaSigner) -> dict[str, Any]:
    # docs/api-notes.md#q15-get-music-media-urls: GET /music clips carry the documented fields plus
    # the media URLs.
    full = clip_record(clip, origin, media)
    keep = ("clip", "title", "lyrics", "duration_s", "image_url", "audio_url", "wav_url")
    return {k: full[k] for k in keep}


def job_record(
    job: Job, now: float, media: MediaSigner, origin: str | None = None
) -> dict[str, Any]:
    """The job record; pending records carry only the dispatch fields."""
    status = job.status(now)
    record: dict[str, Any] = {"jobid": job.jobid, "email": job.email}
    if job.operation is not None:
        record["operation"] = job.operation
    record["status"] = status
    record["created_at"] = iso(job.created)
    record["request"] = job.request
    if status == "pending":
        return record
    end = job.end_time()
    record["completed_at"] = iso(end)
    error = job.error()
    if error is not None:
        # The POST /music page's failed record has no duration_ms (it is optional in its model).
        record["error"] = {"code": error[0], "message": error[1]}
    else:
        record["duration_ms"] = round((end - job.created) * 1000)
        record["clips"] = [clip_record(c, origin or job.origin, media) for c in job.clips]
    return record


def running_job(job: Job) -> dict[str, Any]:
    entry: dict[str, Any] = {"jobid": job.jobid, "status": "pending"}
    if job.operation is not None:
        entry["operation"] = job.operation
    entry["created_at"] = iso(job.created)
    return entry


def account_record(acct: AccountState, *, balances: bool = False) -> dict[str, Any]:
    token = acct.refresh_token
    record: dict[str, Any] = {"email": acct.email, "tier": acct.tier}
    if acct.tier in _PAID_TIERS:
        record["subscription_plan"] = f"{acct.tier}-monthly"
        record["provider"] = "g1_entitlement"
    record.update(
        user_id=acct.user_id,
        maxJobs=acct.max_jobs,
        added=iso(acct.added),
        refreshed_at=iso(acct.refreshed_at),
        refreshed_count=acct.refreshed_count,
        access_token="eyJhbGciOi…redacted…zmQ",
        access_token_expires_at=iso(acct.refreshed_at + 3600),
        refresh_token=f"{token[:4]}…redacted…{token[-3:]}",
        session_id=acct.session_id,
    )
    if acct.error is not None:
        record["error"] = acct.error
    elif balances:
        record["credits_remaining"] = round(acct.credits, 4)
        record["tokens_remaining"] = round(acct.credits * TOKENS_PER_CREDIT, 4)
    return record


def usage_record(acct: AccountState) -> dict[str, Any]:
    rows = sorted(acct.usage.values(), key=lambda r: (r.day, r.last))
    by_tokens: dict[str, float] = {}
    per_conv: dict[str, dict[str, Any]] = {}
    events = []
    for row in rows:
        by_tokens[row.type] = by_tokens.get(row.type, 0) + row.amount
        events.append(
            {
                "type": row.type,
                "amount": row.amount,
                "conversation_id": row.conversation_id,
                "conversation_title": row.title,
                "event_at": iso(row.day)[:19],  # start of the UTC day, no zone suffix
                "max_created_at": iso(row.last).replace("Z", "000Z"),  # microseconds
                "_account_email": acct.email,
            }
        )
        conv = per_conv.setdefault(
            row.conversation_id,
            {
                "conversation_id": row.conversation_id,
                "title": row.title,
                "email": acct.email,
                "tokens": 0.0,
                "credits": 0.0,
            },
        )
        conv["tokens"] += row.amount
        conv["credits"] = conv["tokens"] / TOKENS_PER_CREDIT
    charged = ("producer-usage", "riffusion")
    received = ("daily-free", "grant")
    return {
        "email": acct.email,
        "events": events,
        "summary": {
            "by_type_tokens": by_tokens,
            "by_type_credits": {k: v / TOKENS_PER_CREDIT for k, v in by_tokens.items()},
            "total_charged_credits": sum(by_tokens.get(k, 0) for k in charged) / TOKENS_PER_CREDIT,
            "total_received_tokens": sum(by_tokens.get(k, 0) for k in received),
            "per_conversation": list(per_conv.values()),
        },
    }
