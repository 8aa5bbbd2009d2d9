"""Every endpoint: the exact request sent, the decoded answer, and refusals that send nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from mock_api import BASE, TOKEN, MockAPI

from flowmusic_async._errors import (
    AccountBusyError,
    AccountError,
    AllAccountsBusyError,
    ModeratedError,
    NotReadyError,
    TransportError,
    ValidationError,
)
from flowmusic_async._resources import account_of_id

pytestmark = pytest.mark.anyio

EMAIL = "someone@example.com"
CLIP = f"user:1234-{EMAIL}-clip:0f0e"
JOBID = f"job:56ef7890-user:1234-{EMAIL}-bot:flowmusic"
ENC_JOBID = "job%3A56ef7890-user%3A1234-someone%40example.com-bot%3Aflowmusic"
PENDING = {
    "jobid": JOBID,
    "email": EMAIL,
    "status": "pending",
    "created_at": "t",
    "request": {"prompt": "p", "mode": "async"},
}
COMPLETED = {
    **PENDING,
    "status": "completed",
    "completed_at": "u",
    "duration_ms": 1000,
    "clips": [{"clip": CLIP, "audio_url": "https://m/a.m4a"}],
}
ACCOUNT = {"email": EMAIL, "tier": "plus", "maxJobs": 12, "access_token": "eyJ…redacted…zmQ"}


def _check(request: httpx.Request, method: str, raw_path: str) -> None:
    """The request line, and auth sent per request."""
    assert request.method == method
    assert request.url.raw_path.decode().split("?")[0] == raw_path
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"


# ----- music -----------------------------------------------------------------------------


async def test_music_create_async(api: MockAPI, fm: Any) -> None:
    """POST /music sends the validated body and returns the pending record to poll."""
    api.reply(201, PENDING)
    job = await fm.music.create("p", mode="async", ref_images=["i1"], reply_ref="r1")
    _check(api.last, "POST", "/v1/flowmusic/music")
    assert api.last.headers["Content-Type"] == "application/json"
    assert api.body() == {"prompt": "p", "refImage1": "i1", "mode": "async", "replyRef": "r1"}
    assert job.jobid == JOBID and job.status == "pending"
    # async answers at once: the client's own timeout, not the sync-mode minutes
    assert api.last.extensions["timeout"]["read"] == 30.0


async def test_music_create_sync_waits_long_enough(api: MockAPI, fm: Any) -> None:
    """Sync mode holds the connection 40-150 s; a 30 s read timeout would abandon paid songs."""
    api.reply(200, COMPLETED)
    job = await fm.music.create("p")
    assert api.body() == {"prompt": "p"}
    assert api.last.extensions["timeout"]["read"] >= 300
    assert job.is_completed and job.clips[0].audio_url == "https://m/a.m4a"


async def test_music_create_429_named_vs_any_account(api: MockAPI, fm: Any) -> None:
    """Naming an account turns a 429 into "that account is full", else "all are busy"."""
    api.reply(429, {"error": "busy", "code": 429}, headers={"Retry-After": "2"})
    api.reply(429, {"error": "busy", "code": 429})
    with pytest.raises(AccountBusyError) as named:
        await fm.music.create("p", email=EMAIL, mode="async")
    assert named.value.email == EMAIL and named.value.retry_after == 2
    with pytest.raises(AllAccountsBusyError):
        await fm.music.create("p", mode="async")
    assert len(api.requests) == 2  # never retried


async def test_music_create_596_names_the_account(api: MockAPI, fm: Any) -> None:
    """A 596 on POST /music identifies the broken account for the scheduler."""
    api.reply(
        596, {"error": f"Account {EMAIL} in error state: refresh token rejected", "code": 596}
    )
    with pytest.raises(AccountError) as info:
        await fm.music.create("p")
    assert info.value.email == EMAIL and info.value.endpoint == "POST /music"


async def test_music_create_lost_answer_is_not_retried(api: MockAPI, fm: Any) -> None:
    """A paid POST whose answer was lost must surface (maybe_sent) instead of paying twice."""
    api.fail(httpx.RemoteProtocolError("Server disconnected without sending a response."))
    with pytest.raises(TransportError) as info:
        await fm.music.create("p", mode="async")
    assert info.value.maybe_sent and len(api.requests) == 1


async def test_send_job_posts_a_prebuilt_body(api: MockAPI, fm: Any) -> None:
    """The engine validates once, then posts the same body; nothing may be added or dropped."""
    api.reply(201, {**PENDING, "operation": "extend"})
    body = {"operation": "extend", "clip": CLIP, "instruction": "more", "mode": "async"}
    job = await fm.music.send_job("/music/edit", body)
    _check(api.last, "POST", "/v1/flowmusic/music/edit")
    assert api.body() == body and job.operation == "extend"


async def test_send_job_refuses_other_paths(fm: Any) -> None:
    """Only the two job endpoints may go through the never-retried job path."""
    with pytest.raises(ValueError):
        await fm.music.send_job("/jobs", {})


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (
            lambda fm: fm.music.effect(CLIP, "Reverb", mix=0.4, room_size=0.7),
            {"operation": "effect", "clip": CLIP, "effect": "Reverb", "mix": 0.4, "room_size": 0.7},
        ),
        (
            lambda fm: fm.music.extend(CLIP, "outro", extend_s=30, mode="async"),
            {
                "operation": "extend",
                "clip": CLIP,
                "instruction": "outro",
                "extend_s": 30,
                "mode": "async",
            },
        ),
        (
            lambda fm: fm.music.replace(CLIP, "softer", mask_start_s=0, mask_end_s=8),
            {
                "operation": "replace",
                "clip": CLIP,
                "instruction": "softer",
                "mask_start_s": 0,
                "mask_end_s": 8,
            },
        ),
        (
            lambda fm: fm.music.cover(CLIP, strength=0.7, model="lyria-3.5"),
            {"operation": "cover", "clip": CLIP, "strength": 0.7, "model": "lyria-3.5"},
        ),
        (
            lambda fm: fm.music.remix(CLIP, "[Verse]\nnew", prompt="synthwave", seed=3),
            {
                "operation": "remix",
                "clip": CLIP,
                "lyrics": "[Verse]\nnew",
                "prompt": "synthwave",
                "seed": 3,
            },
        ),
        (
            lambda fm: fm.music.edit("effect", CLIP, effect="Gain", gain_db=-6, title="Quiet"),
            {
                "operation": "effect",
                "clip": CLIP,
                "effect": "Gain",
                "gain_db": -6,
                "title": "Quiet",
            },
        ),
    ],
)
async def test_edit_helpers_send_the_documented_body(
    api: MockAPI, fm: Any, call: Callable[[Any], Awaitable[Any]], expected: dict[str, Any]
) -> None:
    """Each typed edit helper must post exactly the contract's body for its operation."""
    api.reply(200, {**COMPLETED, "operation": expected["operation"]})
    job = await call(fm)
    _check(api.last, "POST", "/v1/flowmusic/music/edit")
    assert api.body() == expected
    assert job.operation == expected["operation"]


async def test_edit_429_names_the_clip_account(api: MockAPI, fm: Any) -> None:
    """Edits run on the clip's account, so a 429 means that account is full, not all of them."""
    api.reply(429, {"error": "busy", "code": 429})
    with pytest.raises(AccountBusyError) as info:
        await fm.music.cover(CLIP, mode="async")
    assert info.value.email == EMAIL


def test_account_of_id_reads_clip_ids_only_when_well_formed() -> None:
    """A malformed id must yield None rather than a wrong account."""
    assert account_of_id(CLIP) == EMAIL
    assert account_of_id("opaque-id") is None


async def test_edit_stems_goes_through_stems(fm: Any, api: MockAPI) -> None:
    """stems answers with four clips, not a job; edit() points to the right method."""
    with pytest.raises(ValidationError) as info:
        await fm.music.edit("stems", CLIP)
    assert info.value.field == "operation" and api.requests == []


async def test_stems(api: MockAPI, fm: Any) -> None:
    """POST /music/edit operation=stems sends only the clip and returns four clips."""
    clips = [
        {"clip": f"c{n}", "title": f"T - {p}"}
        for n, p in enumerate(["drums", "bass", "vocals", "other"])
    ]
    api.reply(200, {"status": "completed", "email": EMAIL, "clips": clips})
    stems = await fm.music.stems(CLIP)
    _check(api.last, "POST", "/v1/flowmusic/music/edit")
    assert api.body() == {"operation": "stems", "clip": CLIP}
    assert [c.title for c in stems.clips][-1] == "T - other"
    assert api.last.extensions["timeout"]["read"] >= 300


async def test_lyrics(api: MockAPI, fm: Any) -> None:
    """POST /music/lyrics returns lyrics and a sound prompt."""
    api.reply(
        200,
        {
            "email": EMAIL,
            "title": "T",
            "lyrics": "[Verse]",
            "sound_prompt": "pop",
            "source": "lyrics-create",
            "audio_create_song_fired": False,
            "credits_burned": 0,
        },
    )
    lyrics = await fm.music.lyrics("a song about rain", structure="verse, chorus", email=EMAIL)
    _check(api.last, "POST", "/v1/flowmusic/music/lyrics")
    assert api.body() == {
        "prompt": "a song about rain",
        "structure": "verse, chorus",
        "email": EMAIL,
    }
    assert lyrics.lyrics == "[Verse]" and lyrics.title == "T"


async def test_lyrics_422_object_error(api: MockAPI, fm: Any) -> None:
    """The lyrics 422 object body maps to ModeratedError with code and account."""
    api.reply(
        422,
        {"email": EMAIL, "error": {"code": "no_lyrics", "message": "none"}, "agent_text": "..."},
    )
    with pytest.raises(ModeratedError) as info:
        await fm.music.lyrics("x")
    assert info.value.error_code == "no_lyrics" and info.value.email == EMAIL
    assert info.value.server_message == "none"


async def test_music_list(api: MockAPI, fm: Any) -> None:
    """GET /music passes email/limit/offset as query values and decodes the page."""
    api.reply(
        200, {"email": EMAIL, "clips": [{"clip": "c1"}], "limit": 5, "offset": 10, "next": 15}
    )
    page = await fm.music.list(email=EMAIL, limit=5, offset=10)
    _check(api.last, "GET", "/v1/flowmusic/music")
    assert dict(api.last.url.params) == {"email": EMAIL, "limit": "5", "offset": "10"}
    assert page.next == 15 and page.clips[0].clip == "c1"


async def test_music_iter_all_follows_next_on_one_account(api: MockAPI, fm: Any) -> None:
    """Paging must follow `next` to the end and stay on the account of the first page."""
    api.reply(
        200,
        {
            "email": EMAIL,
            "clips": [{"clip": "c1"}, {"clip": "c2"}],
            "limit": 2,
            "offset": 0,
            "next": 2,
        },
    )
    api.reply(
        200, {"email": EMAIL, "clips": [{"clip": "c3"}], "limit": 2, "offset": 2, "next": None}
    )
    clips = [clip.clip async for clip in fm.music.iter_all(page_size=2)]
    assert clips == ["c1", "c2", "c3"]
    assert dict(api.requests[0].url.params) == {"limit": "2"}
    assert dict(api.requests[1].url.params) == {"email": EMAIL, "limit": "2", "offset": "2"}


async def test_music_iter_all_stops_on_a_repeated_offset(api: MockAPI, fm: Any) -> None:
    """A server that never advances must not trap the caller in an endless loop."""
    api.reply(200, {"email": EMAIL, "clips": [{"clip": "c1"}], "limit": 1, "offset": 0, "next": 0})
    assert [c.clip async for c in fm.music.iter_all(page_size=1)] == ["c1"]
    assert len(api.requests) == 1


async def test_music_download_stream(api: MockAPI, fm: Any) -> None:
    """GET /music/download streams mp3 bytes with the server's filename."""
    api.reply(
        200,
        content=b"ID3" + b"\x00" * 100,
        headers={
            "Content-Type": "audio/mpeg",
            "Content-Disposition": 'attachment; filename="c1.mp3"',
        },
    )
    async with fm.music.download(CLIP) as stream:
        assert stream.filename == "c1.mp3" and stream.content_type == "audio/mpeg"
        assert stream.content_length == 103
        data = b"".join([chunk async for chunk in stream.aiter_bytes()])
    _check(api.last, "GET", "/v1/flowmusic/music/download")
    assert dict(api.last.url.params) == {"id": CLIP, "format": "mp3"}
    assert data.startswith(b"ID3") and len(data) == 103


async def test_music_download_bytes_and_409(api: MockAPI, fm: Any) -> None:
    """download_bytes returns the body; a running job's download is NotReadyError (409)."""
    api.reply(200, content=b"mp3data", headers={"Content-Type": "audio/mpeg"})
    assert await fm.music.download_bytes(CLIP) == b"mp3data"
    api.reply(409, {"error": "Job is not completed", "code": 409})
    with pytest.raises(NotReadyError) as info:
        await fm.music.download_bytes(JOBID)
    assert info.value.jobid == JOBID


# ----- jobs ------------------------------------------------------------------------------


async def test_jobs_get_percent_encodes_the_jobid(api: MockAPI, fm: Any) -> None:
    """Jobids contain ':' and '@'; the path segment must be fully percent-encoded."""
    api.reply(200, COMPLETED)
    job = await fm.jobs.get(JOBID)
    _check(api.last, "GET", f"/v1/flowmusic/jobs/{ENC_JOBID}")
    assert job.is_completed and job.duration_ms == 1000


async def test_jobs_get_404_carries_the_jobid(api: MockAPI, fm: Any, sleeps: list[float]) -> None:
    """An expired job's error must say which job; 404 is final, so no retries."""
    from flowmusic_async._errors import NotFoundError

    api.reply(404, {"error": "Job not found", "code": 404})
    with pytest.raises(NotFoundError) as info:
        await fm.jobs.get(JOBID)
    assert info.value.jobid == JOBID and len(api.requests) == 1


async def test_jobs_list(api: MockAPI, fm: Any) -> None:
    """GET /jobs decodes running vs maxJobs per account."""
    api.reply(
        200,
        {
            EMAIL: {
                "running": 1,
                "maxJobs": 4,
                "jobs": [{"jobid": JOBID, "status": "pending", "created_at": "t"}],
            }
        },
    )
    jobs = await fm.jobs.list()
    _check(api.last, "GET", "/v1/flowmusic/jobs")
    assert jobs[EMAIL].running == 1 and jobs[EMAIL].jobs[0].jobid == JOBID


async def test_jobs_cancel_is_retried_because_idempotent(
    api: MockAPI, fm: Any, sleeps: list[float]
) -> None:
    """DELETE /jobs/{jobid} is safe to repeat, so a transient failure is retried."""
    api.reply(502, {"error": "bad gateway"}).reply(204)
    assert await fm.jobs.cancel(JOBID) is None
    _check(api.last, "DELETE", f"/v1/flowmusic/jobs/{ENC_JOBID}")
    assert len(api.requests) == 2


# ----- accounts --------------------------------------------------------------------------


async def test_accounts_list_and_get(api: MockAPI, fm: Any) -> None:
    """GET /accounts and GET /accounts/{email} (email percent-encoded)."""
    api.reply(200, {EMAIL: ACCOUNT})
    api.reply(200, {**ACCOUNT, "credits_remaining": 5000, "tokens_remaining": 60000})
    accounts = await fm.accounts.list()
    _check(api.requests[0], "GET", "/v1/flowmusic/accounts")
    assert accounts[EMAIL].max_jobs == 12
    account = await fm.accounts.get(EMAIL)
    _check(api.last, "GET", "/v1/flowmusic/accounts/someone%40example.com")
    assert account.credits_remaining == 5000


async def test_accounts_add(api: MockAPI, fm: Any) -> None:
    """POST /accounts mode A: refresh token and optional maxJobs; not retried."""
    api.reply(201, ACCOUNT)
    account = await fm.accounts.add("bdykxtrr5eaf-refresh", max_jobs=12)
    _check(api.last, "POST", "/v1/flowmusic/accounts")
    assert api.body() == {"refresh_token": "bdykxtrr5eaf-refresh", "maxJobs": 12}
    assert account.email == EMAIL


async def test_accounts_set_max_jobs_is_retried(api: MockAPI, fm: Any, sleeps: list[float]) -> None:
    """POST /accounts mode B changes a number only, so repeating it is safe."""
    api.reply(500, {"error": "x"}).reply(200, {**ACCOUNT, "maxJobs": 4})
    account = await fm.accounts.set_max_jobs(EMAIL, 4)
    assert api.body() == {"email": EMAIL, "maxJobs": 4}
    assert account.max_jobs == 4 and len(api.requests) == 2


async def test_accounts_delete_and_usage(api: MockAPI, fm: Any) -> None:
    """DELETE /accounts/{email} answers 204; GET /accounts/usage takes email as a query."""
    api.reply(204)
    api.reply(200, {"email": EMAIL, "events": [], "summary": {"total_charged_credits": 105}})
    assert await fm.accounts.delete(EMAIL) is None
    _check(api.requests[0], "DELETE", "/v1/flowmusic/accounts/someone%40example.com")
    usage = await fm.accounts.usage(EMAIL)
    _check(api.last, "GET", "/v1/flowmusic/accounts/usage")
    assert dict(api.last.url.params) == {"email": EMAIL}
    assert usage.summary.total_charged_credits == 105


# ----- files -----------------------------------------------------------------------------

ASSET = {
    "id": "user:1-someone@example.com-img:1",
    "url": "https://s/x.png",
    "kind": "image",
    "assetType": "image",
    "email": EMAIL,
    "metadata_stripped": True,
}


async def test_files_upload_bytes(api: MockAPI, fm: Any) -> None:
    """POST /files sends raw bytes with their MIME type, query email/stripMetadata."""
    api.reply(200, ASSET)
    asset = await fm.files.upload(
        b"\x89PNG....", content_type="image/png", email=EMAIL, strip_metadata=True
    )
    _check(api.last, "POST", "/v1/flowmusic/files")
    assert api.last.headers["Content-Type"] == "image/png"
    assert api.last.content == b"\x89PNG...."
    assert dict(api.last.url.params) == {"email": EMAIL, "stripMetadata": "true"}
    assert asset.asset_type == "image" and asset.id == ASSET["id"]


async def test_files_upload_path_guesses_type(api: MockAPI, fm: Any, tmp_path: Path) -> None:
    """A path's content type comes from its extension."""
    song = tmp_path / "take.wav"
    song.write_bytes(b"RIFF0000WAVE")
    api.reply(200, {**ASSET, "kind": "audio", "assetType": "audio", "duration_s": 1.5})
    asset = await fm.files.upload(song)
    assert api.last.headers["Content-Type"] == "audio/wav"
    assert api.last.content == b"RIFF0000WAVE" and asset.duration_s == 1.5


async def test_files_generate(api: MockAPI, fm: Any) -> None:
    """POST /files/generate returns an image asset with its size and model."""
    api.reply(200, {**ASSET, "width": 1024, "height": 1024, "model": "google-generative-ai"})
    asset = await fm.files.generate("a neon city", email=EMAIL)
    _check(api.last, "POST", "/v1/flowmusic/files/generate")
    assert api.body() == {"prompt": "a neon city", "email": EMAIL}
    assert asset.width == 1024


# ----- refusals send nothing ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda fm: fm.music.create(""), "prompt"),
        (lambda fm: fm.music.create("p", instrumental=True, lyrics="[Verse] hi"), "lyrics"),
        (lambda fm: fm.music.create("p", ref_images=["x"] * 11), "ref_images"),
        (lambda fm: fm.music.create("p", model="lyria-2"), "model"),
        (lambda fm: fm.music.effect(CLIP, "Gain", gain_db=31), "gain_db"),
        (lambda fm: fm.music.extend(CLIP, "x", extend_s=301), "extend_s"),
        (lambda fm: fm.music.replace(CLIP, "x", mask_start_s=5, mask_end_s=1), "mask_end_s"),
        (lambda fm: fm.music.cover(CLIP, strength=2), "strength"),
        (lambda fm: fm.music.remix(CLIP, ""), "lyrics"),
        (lambda fm: fm.music.edit("effect", CLIP, effect="Pan", pan=0, gain_db=1), "gain_db"),
        (lambda fm: fm.music.stems(""), "clip"),
        (lambda fm: fm.music.lyrics("x" * 2001), "prompt"),
        (lambda fm: fm.music.list(limit=101), "limit"),
        (lambda fm: fm.music.download_bytes("c", format="wav"), "format"),
        (lambda fm: fm.jobs.get(""), "jobid"),
        (lambda fm: fm.jobs.cancel(""), "jobid"),
        (lambda fm: fm.accounts.get("nope"), "email"),
        (lambda fm: fm.accounts.add("short"), "refresh_token"),
        (lambda fm: fm.accounts.set_max_jobs(EMAIL, 17), "max_jobs"),
        (lambda fm: fm.accounts.delete(""), "email"),
        (lambda fm: fm.accounts.usage("x"), "email"),
        (lambda fm: fm.files.upload(b"data"), "content_type"),
        (
            lambda fm: fm.files.upload(b"x" * (20 * 1024 * 1024 + 1), content_type="image/png"),
            "data",
        ),
        (lambda fm: fm.files.upload("notes.txt"), "content_type"),
        (lambda fm: fm.files.generate(""), "prompt"),
    ],
)
async def test_refusals_send_nothing(
    api: MockAPI, fm: Any, call: Callable[[Any], Awaitable[Any]], field: str
) -> None:
    """A request the server would refuse must not cost a round trip, and must name the field."""
    with pytest.raises(ValidationError) as info:
        await call(fm)
    assert info.value.field == field
    assert api.requests == []


async def test_iter_all_refuses_bad_page_size_before_any_request(api: MockAPI, fm: Any) -> None:
    """The generator must fail on its first step, not after some pages were fetched."""
    with pytest.raises(ValidationError):
        async for _ in fm.music.iter_all(page_size=0):
            pass  # pragma: no cover
    assert api.requests == []


async def test_upload_of_missing_path(api: MockAPI, fm: Any, tmp_path: Path) -> None:
    """A path that does not exist is a caller error, reported before any request."""
    with pytest.raises(ValidationError) as info:
        await fm.files.upload(tmp_path / "missing.png")
    assert info.value.field == "data_or_path" and api.requests == []


def test_base_is_the_documented_root() -> None:
    """The tests assume the documented base URL."""
    assert BASE == "https://api.useapi.net/v1/flowmusic"


async def test_a_compressed_download_announces_no_length(api: MockAPI, fm: Any) -> None:
    """A gzipped body's Content-Length counts compressed bytes: trusting it flags a truncation."""
    import gzip

    body = b"ID3" + b"\x00" * 5000
    api.reply(
        200,
        content=gzip.compress(body),
        headers={"content-type": "audio/mpeg", "content-encoding": "gzip"},
    )
    clip = "user:1-a@b.com-clip:00000000-0000-0000-0000-000000000000"
    async with fm.music.download(clip) as stream:
        assert stream.content_length is None
        data = b"".join([chunk async for chunk in stream.aiter_bytes()])
    assert data == body
