"""The wire models decode the contract's example bodies, tolerate drift, and stay immutable."""

from __future__ import annotations

import json

import msgspec
import pytest

from flowmusic_async._models import (
    ACCOUNT_DECODER,
    ACCOUNTS_DECODER,
    ASSET_DECODER,
    CLIP_PAGE_DECODER,
    JOB_DECODER,
    JOBS_DECODER,
    LYRICS_DECODER,
    STEMS_DECODER,
    USAGE_DECODER,
)

COMPLETED = {
    "jobid": "job:56ef7890-aaaa-bot:flowmusic",
    "email": "someone@example.com",
    "request": {"prompt": "lofi beat", "mode": "async"},
    "created_at": "2026-05-31T19:57:23.954Z",
    "completed_at": "2026-05-31T19:59:43.118Z",
    "duration_ms": 139164,
    "status": "completed",
    "clips": [
        {
            "clip": "user:1234-someone@example.com-clip:abc",
            "duration_s": 173.03,
            "image_url": "https://img",
            "lyrics_timing": [[0.5, 2.25], [3, 4]],
            "seed": 42,
        }
    ],
}
PENDING = {
    "jobid": "job:1",
    "email": "someone@example.com",
    "status": "pending",
    "created_at": "2026-05-31T19:57:23.954Z",
    "request": {"prompt": "x", "mode": "async", "replyRef": "ref-7"},
}


def _encode(value: object) -> bytes:
    return json.dumps(value).encode()


def test_completed_example_record_decodes() -> None:
    """The contract's completed record must give clips, timings and terminal state."""
    job = JOB_DECODER.decode(_encode(COMPLETED))
    assert job.is_completed and job.is_terminal and not job.is_failed
    assert job.duration_ms == 139164
    assert job.request == {"prompt": "lofi beat", "mode": "async"}
    (clip,) = job.clips
    assert clip.clip == "user:1234-someone@example.com-clip:abc"
    assert clip.duration_s == pytest.approx(173.03)
    assert clip.lyrics_timing == ((0.5, 2.25), (3.0, 4.0))
    assert clip.seed == 42 and clip.audio_url is None


def test_pending_record_has_no_clips_and_is_not_terminal() -> None:
    """A pending record carries only dispatch fields; the poller must not treat it as done."""
    job = JOB_DECODER.decode(_encode(PENDING))
    assert job.status == "pending" and not job.is_terminal
    assert job.clips == () and job.error is None and job.completed_at is None


def test_failed_record_exposes_error_code() -> None:
    """A cancelled job reports failed with user_cancelled; callers branch on error.code."""
    body = {**PENDING, "status": "failed", "error": {"code": "user_cancelled", "message": "bye"}}
    job = JOB_DECODER.decode(_encode(body))
    assert job.is_failed and job.is_terminal
    assert job.error is not None and job.error.code == "user_cancelled"
    assert job.error.message == "bye"


def test_reply_ref_read_from_top_level_or_request_echo() -> None:
    """Where the server echoes replyRef is undocumented, so both places must be read."""
    assert JOB_DECODER.decode(_encode(PENDING)).request_reply_ref == "ref-7"
    top = {**PENDING, "replyRef": "top", "request": {}}
    job = JOB_DECODER.decode(_encode(top))
    assert job.reply_ref == "top" and job.request_reply_ref == "top"
    assert JOB_DECODER.decode(_encode({**PENDING, "request": {}})).request_reply_ref is None


def test_unknown_fields_and_string_numbers_are_tolerated() -> None:
    """Server drift (new fields, form-coerced numbers) must not break polling."""
    body = {**COMPLETED, "model": "lyria-3.5", "brand_new": {"x": 1}, "duration_ms": "139164"}
    assert JOB_DECODER.decode(_encode(body)).duration_ms == 139164


def test_job_without_jobid_is_a_decode_error() -> None:
    """A record without its key fields is not a job; decoding must fail loudly, not invent one."""
    with pytest.raises(msgspec.ValidationError):
        JOB_DECODER.decode(b'{"status": "pending"}')


def test_models_are_frozen() -> None:
    """Records are shared between tasks (poller, waiters), so they must be immutable."""
    job = JOB_DECODER.decode(_encode(PENDING))
    with pytest.raises(AttributeError):
        job.status = "completed"  # type: ignore[misc]


def test_accounts_listing_keyed_by_email_with_health() -> None:
    """GET /accounts is an object keyed by email; an `error` marks an account to re-add."""
    body = {
        "a@example.com": {"email": "a@example.com", "tier": "plus", "maxJobs": 12},
        "b@example.com": {
            "email": "b@example.com",
            "tier": "free",
            "maxJobs": "3",
            "error": "refresh token rejected",
            "access_token": "eyJ…redacted…zmQ",
        },
    }
    accounts = ACCOUNTS_DECODER.decode(_encode(body))
    assert accounts["a@example.com"].max_jobs == 12 and accounts["a@example.com"].is_healthy
    assert accounts["b@example.com"].max_jobs == 3
    assert not accounts["b@example.com"].is_healthy
    assert ACCOUNTS_DECODER.decode(b"{}") == {}


def test_single_account_with_live_balances() -> None:
    """GET /accounts/{email} adds live balances that capacity decisions may read."""
    body = {
        "email": "a@example.com",
        "tier": "plus",
        "subscription_plan": "plus-monthly",
        "maxJobs": 12,
        "refreshed_count": 3,
        "credits_remaining": 5000,
        "tokens_remaining": 60000,
    }
    account = ACCOUNT_DECODER.decode(_encode(body))
    assert account.credits_remaining == 5000 and account.tokens_remaining == 60000
    assert account.subscription_plan == "plus-monthly" and account.refreshed_count == 3


def test_running_jobs_per_account() -> None:
    """GET /jobs gives running vs maxJobs per account, which the scheduler trusts."""
    body = {
        "a@example.com": {
            "running": 2,
            "maxJobs": 4,
            "jobs": [
                {"jobid": "job:1", "status": "pending", "created_at": "t"},
                {"jobid": "job:2", "status": "pending", "operation": "extend"},
            ],
        }
    }
    jobs = JOBS_DECODER.decode(_encode(body))["a@example.com"]
    assert (jobs.running, jobs.max_jobs) == (2, 4)
    assert [j.jobid for j in jobs.jobs] == ["job:1", "job:2"]
    assert jobs.jobs[1].operation == "extend"


def test_usage_report_example_numbers() -> None:
    """The usage example's totals must survive decoding (credits = tokens / 12)."""
    body = {
        "email": "a@example.com",
        "events": [
            {
                "type": "producer-usage",
                "amount": 1200,
                "conversation_id": "c1",
                "conversation_title": "Song",
                "event_at": "2026-06-01T00:00:00",
                "max_created_at": "2026-06-01T10:11:12.123456Z",
                "_account_email": "a@example.com",
            }
        ],
        "summary": {
            "by_type_tokens": {"daily-free": 1440, "riffusion": 60, "producer-usage": 1200},
            "by_type_credits": {"daily-free": 120, "riffusion": 5, "producer-usage": 100},
            "total_charged_credits": 105,
            "total_received_tokens": 8640,
            "per_conversation": [
                {
                    "conversation_id": "c1",
                    "title": "Song",
                    "email": "a@example.com",
                    "tokens": 1200,
                    "credits": 100,
                }
            ],
        },
    }
    usage = USAGE_DECODER.decode(_encode(body))
    assert usage.events[0].account_email == "a@example.com"
    assert usage.summary.total_charged_credits == 105
    assert usage.summary.by_type_credits["riffusion"] == 5
    assert usage.summary.per_conversation[0].credits == 100


def test_clip_page_last_page_has_null_next() -> None:
    """Pagination stops on `next: null`; a wrong decode would loop or stop early."""
    body = {
        "email": "a@example.com",
        "clips": [{"clip": "c1", "title": None}],
        "limit": 20,
        "offset": 40,
        "next": None,
    }
    page = CLIP_PAGE_DECODER.decode(_encode(body))
    assert page.next is None and page.offset == 40 and page.clips[0].clip == "c1"


def test_lyrics_answer() -> None:
    """POST /music/lyrics answers lyrics plus a sound prompt to feed POST /music."""
    body = {
        "email": "a@example.com",
        "title": "T",
        "lyrics": "[Verse]\nla",
        "sound_prompt": "pop",
        "source": "lyrics-create",
        "audio_create_song_fired": False,
        "credits_burned": 0,
    }
    lyrics = LYRICS_DECODER.decode(_encode(body))
    assert lyrics.lyrics.startswith("[Verse]") and lyrics.sound_prompt == "pop"
    assert lyrics.audio_create_song_fired is False


def test_assets_from_upload_and_generate() -> None:
    """Asset ids feed refImageN; assetType maps to asset_type."""
    upload = ASSET_DECODER.decode(
        b'{"id":"user:1-a@example.com-img:1","url":"https://s","kind":"image",'
        b'"assetType":"image","email":"a@example.com","metadata_stripped":true}'
    )
    assert upload.asset_type == "image" and upload.metadata_stripped is True
    generated = ASSET_DECODER.decode(
        b'{"id":"x","kind":"image","assetType":"image","width":1024,"height":1024,'
        b'"model":"google-generative-ai"}'
    )
    assert (generated.width, generated.height, generated.model) == (
        1024,
        1024,
        "google-generative-ai",
    )


def test_stems_decode_without_jobid() -> None:
    """The stems envelope is undocumented; four clips must decode even without a jobid."""
    clips = [
        {"clip": f"c{n}", "title": f"Song - {part}"}
        for n, part in enumerate(["drums", "bass", "vocals", "other"])
    ]
    stems = STEMS_DECODER.decode(_encode({"status": "completed", "clips": clips}))
    assert len(stems.clips) == 4 and stems.jobid is None
    assert stems.clips[2].title == "Song - vocals"
