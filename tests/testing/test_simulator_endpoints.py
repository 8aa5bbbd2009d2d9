"""Every other endpoint: accounts, usage, edits, stems, lyrics, listing, files, encoding."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from flowmusic_async.testing import SimAccount, Simulator

pytestmark = pytest.mark.anyio


async def test_accounts_add_refresh_update_delete(http: httpx.AsyncClient) -> None:
    """POST /accounts: stable email from the token, 201 then 200; mode B; delete."""
    r = await http.post("/accounts", json={"refresh_token": "rt-0123456789", "maxJobs": 3})
    assert r.status_code == 201
    account = r.json()
    email = account["email"]
    assert account["maxJobs"] == 3 and "credits_remaining" not in account
    assert "0123456789" not in account["refresh_token"]  # redacted
    r = await http.post("/accounts", json={"refresh_token": "rt-0123456789"})
    assert r.status_code == 200 and r.json()["email"] == email
    assert r.json()["refreshed_count"] == 2
    r = await http.post("/accounts", data={"email": email, "maxJobs": "7"})  # form, string
    assert r.status_code == 200 and r.json()["maxJobs"] == 7
    r = await http.post("/accounts", json={"email": "ghost@example.com", "maxJobs": 2})
    assert r.status_code == 404
    r = await http.post("/accounts", json={"email": email})
    assert r.status_code == 400 and r.json()["error"] == "Parameter maxJobs is required"
    listing = (await http.get("/accounts")).json()
    assert set(listing) == {"alpha@example.com", email}
    assert (await http.delete(f"/accounts/{quote(email, safe='')}")).status_code == 204
    assert email not in (await http.get("/accounts")).json()


async def test_readding_a_configured_token_heals_error(make_sim: Any, connect: Any) -> None:
    """Re-running POST /accounts with the account's refresh token clears its error state."""
    sim = make_sim(
        accounts=(
            SimAccount(
                email="a@example.com",
                refresh_token="tok-abcdefghij",
                error="refresh token rejected",
            ),
        )
    )
    async with connect(sim) as http:
        r = await http.post("/accounts", json={"refresh_token": "tok-abcdefghij"})
        assert r.status_code == 200 and r.json()["email"] == "a@example.com"
        assert "error" not in r.json()


async def test_account_balances_and_usage(sim: Simulator, http: httpx.AsyncClient) -> None:
    """Credits drop by song_credits per song; usage reports tokens = credits x 12."""
    await http.post("/music", json={"prompt": "x", "mode": "async"})
    account = (await http.get("/accounts/alpha@example.com")).json()  # raw @ accepted too
    assert account["credits_remaining"] == 990.0 and account["tokens_remaining"] == 11880.0
    usage = (await http.get("/accounts/usage", params={"email": "alpha@example.com"})).json()
    summary = usage["summary"]
    assert summary["by_type_tokens"]["producer-usage"] == 120
    assert summary["by_type_credits"]["producer-usage"] == 10
    assert summary["total_charged_credits"] == 10
    assert summary["total_received_tokens"] == 12000
    event = usage["events"][-1]
    assert event["_account_email"] == "alpha@example.com" and "T00:00:00" in event["event_at"]
    r = await http.get("/accounts/usage")
    assert r.status_code == 400 and r.json()["error"] == "Parameter email is required"


async def test_jobid_path_raw_or_encoded_decoded_once(http: httpx.AsyncClient) -> None:
    """Both the raw and the percent-encoded jobid work; a double-encoded one does not."""
    jobid = (await http.post("/music", json={"prompt": "x", "mode": "async"})).json()["jobid"]
    assert (await http.get(f"/jobs/{jobid}")).status_code == 200
    assert (await http.get(f"/jobs/{quote(jobid, safe='')}")).status_code == 200
    twice = quote(quote(jobid, safe=""), safe="")
    assert (await http.get(f"/jobs/{twice}")).status_code in (403, 404)


async def test_multipart_and_string_values_are_coerced(http: httpx.AsyncClient) -> None:
    """Form bodies carry booleans and numbers as strings; they are coerced, then echoed typed."""
    r = await http.post(
        "/music",
        data={"prompt": "x", "instrumental": "true", "mode": "async"},
        files={"unused": ("", b"")},
    )
    assert r.status_code == 400  # a stray field is still refused
    r = await http.post("/music", data={"prompt": "x", "instrumental": "true", "mode": "async"})
    assert r.status_code == 201 and r.json()["request"]["instrumental"] is True
    r = await http.post("/music", json={"prompt": "x", "instrumental": "maybe"})
    assert r.status_code == 400


async def test_multipart_form_data_body(sim: Simulator, http: httpx.AsyncClient) -> None:
    """A real multipart/form-data body (as the Postman collection sends) is parsed."""
    boundary = "XyZ"
    parts = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in {"prompt": "multi", "mode": "async", "model": "lyria-3.5"}.items()
    )
    body = (parts + f"--{boundary}--\r\n").encode()
    r = await http.post(
        "/music",
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 201 and r.json()["request"]["model"] == "lyria-3.5"


async def test_edit_operations_validate_and_run(
    sim: Simulator, http: httpx.AsyncClient, finished_song: Any
) -> None:
    """Each edit operation checks its own parameters and runs as a job on the clip's account."""
    clip = (await finished_song(http, sim))["clips"][0]
    cid, length = clip["clip"], clip["duration_s"]
    good = [
        {"operation": "effect", "effect": "Reverb", "mix": "0.4", "room_size": 0.7},
        {"operation": "effect", "effect": "Gain", "gain_db": -3, "pan": 5},  # pan ignored
        {"operation": "effect", "effect": "Trim", "start_s": 0, "end_s": length},
        {"operation": "effect", "effect": "Fade", "fade_out_s": 2},
        {"operation": "extend", "instruction": "outro", "extend_s": 30, "model": "lyria-3.5"},
        {"operation": "replace", "instruction": "softer", "mask_start_s": 0, "mask_end_s": 8},
        {"operation": "cover", "instruction": "lofi", "strength": 0.7},
        {"operation": "remix", "lyrics": "[Verse]\nnew words", "prompt": "synthwave"},
    ]
    for body in good:
        r = await http.post("/music/edit", json={"clip": cid, "mode": "async", **body})
        assert r.status_code == 201, (body, r.text)
        assert r.json()["operation"] == body["operation"]
        sim.advance(200)  # free the slot for the next one
    bad: list[dict[str, Any]] = [
        {"operation": "effect", "effect": "Gain"},
        {"operation": "effect", "effect": "Gain", "gain_db": 31},
        {"operation": "effect", "effect": "Fade"},
        {"operation": "effect", "effect": "Trim", "start_s": 5, "end_s": 4},
        {"operation": "effect", "effect": "Echo"},
        {"operation": "extend"},
        {"operation": "extend", "instruction": "x", "extend_s": 301},
        {"operation": "replace", "instruction": "x", "mask_start_s": 8, "mask_end_s": 2},
        {"operation": "cover", "strength": 2},
        {"operation": "remix"},
        {"operation": "cover", "extend_s": 5},  # another operation's parameter
        {"operation": "twist"},
    ]
    for body in bad:
        r = await http.post("/music/edit", json={"clip": cid, **body})
        assert r.status_code == 400, (body, r.text)
    r = await http.post("/music/edit", json={"operation": "cover", "clip": "garbage"})
    assert r.status_code == 400
    r = await http.post("/music/edit", json={"clip": cid})
    assert r.json()["error"] == "Parameter operation is required"
    sim.advance(151)
    r = await http.post(
        "/music/edit",
        json={"clip": cid, "operation": "effect", "effect": "Pan", "pan": -1, "title": "Left"},
    )
    assert r.status_code == 200 and r.json()["clips"][0]["title"] == "Left"


async def test_edit_of_another_users_clip_is_403(
    sim: Simulator, http: httpx.AsyncClient, connect: Any, finished_song: Any
) -> None:
    """Edits run on the clip's own account and only for its owner
    (docs/api-notes.md#q30-another-users-clip)."""
    clip = (await finished_song(http, sim))["clips"][0]["clip"]
    async with connect(sim, token="user:2002-anotheruserstoken") as other:
        r = await other.post("/music/edit", json={"operation": "stems", "clip": clip})
        assert r.status_code == 403
        assert (await other.get("/music/download", params={"id": clip})).status_code == 403


async def test_stems_sync_titled_and_idempotent(
    sim: Simulator, http: httpx.AsyncClient, finished_song: Any
) -> None:
    """Stems answer four clips at once; asking again returns the same stems."""
    clip = (await finished_song(http, sim))["clips"][0]
    body = {"operation": "stems", "clip": clip["clip"], "mode": "async", "replyUrl": "http://x"}
    first = await http.post("/music/edit", json=body)
    assert first.status_code == 200
    stems = first.json()
    assert stems["status"] == "completed" and stems["operation"] == "stems"
    titles = [c["title"] for c in stems["clips"]]
    assert titles == [f"{clip['title']} - {p}" for p in ("drums", "bass", "vocals", "other")]
    again = (await http.post("/music/edit", json=body)).json()
    assert [c["clip"] for c in again["clips"]] == [c["clip"] for c in stems["clips"]]
    listed = {c["title"] for c in (await http.get("/music", params={"limit": 100})).json()["clips"]}
    assert set(titles) <= listed
    mp3 = await http.get("/music/download", params={"id": stems["clips"][0]["clip"]})
    assert mp3.status_code == 200


async def test_music_listing_paginates_newest_first(
    sim: Simulator, http: httpx.AsyncClient, finished_song: Any
) -> None:
    """GET /music: newest first, limit default 20, next offset until the last page."""
    for _ in range(12):
        await finished_song(http, sim)
    page = (await http.get("/music")).json()
    total = sum(1 for _ in sim.world.visible_clips("alpha@example.com"))
    assert page["limit"] == 20 and page["offset"] == 0 and len(page["clips"]) == 20
    assert page["next"] == 20 and page["email"] == "alpha@example.com"
    last = (await http.get("/music", params={"offset": 20, "limit": "100"})).json()
    assert len(last["clips"]) == total - 20 and last["next"] is None
    first_ids = [c["clip"] for c in page["clips"]]
    newest = sim.world.visible_clips("alpha@example.com")[0].clip_id
    assert first_ids[0] == newest
    assert set(page["clips"][0]) >= {"clip", "title", "lyrics", "duration_s", "image_url"}


async def test_lyrics_endpoint_shape(http: httpx.AsyncClient) -> None:
    """POST /music/lyrics answers the documented record and spends nothing."""
    r = await http.post(
        "/music/lyrics", json={"prompt": "a song about trains", "structure": "verse chorus"}
    )
    body = r.json()
    assert r.status_code == 200 and body["source"] == "lyrics-create"
    assert body["credits_burned"] == 0 and body["audio_create_song_fired"] is False
    assert body["lyrics"] and body["title"] and body["sound_prompt"]


async def test_file_upload_types_and_reference_assets(http: httpx.AsyncClient) -> None:
    """Uploads check type and bytes; assets can be used as refImage/refAudio on their account."""
    png = b"\x89PNG\r\n\x1a\nrest"
    r = await http.post("/files", content=png, headers={"content-type": "image/png"})
    image = r.json()
    assert r.status_code == 200 and image["kind"] == "image" == image["assetType"]
    assert image["metadata_stripped"] is True
    wav = b"RIFF\x00\x00\x00\x00WAVEfmt "
    r = await http.post("/files", content=wav, headers={"content-type": "audio/wav"})
    audio = r.json()
    assert audio["kind"] == "audio"
    r = await http.post("/files", content=b"x", headers={"content-type": "application/pdf"})
    assert r.status_code == 400 and r.json()["error"].startswith("Content-Type (application/pdf)")
    r = await http.post("/files", content=b"", headers={"content-type": "image/png"})
    assert r.status_code == 400
    r = await http.post("/files", content=b"notapng", headers={"content-type": "image/png"})
    assert r.status_code == 400
    r = await http.post(
        "/music",
        json={"prompt": "x", "mode": "async", "refImage1": image["id"], "refAudio1": audio["id"]},
    )
    assert r.status_code == 201 and r.json()["email"] == image["email"]
    r = await http.post("/music", json={"prompt": "x", "refImage1": audio["id"]})
    assert r.status_code == 400
    fetched = await http.get(image["url"])
    assert fetched.content.startswith(b"\x89PNG")


async def test_image_generation_shape(http: httpx.AsyncClient) -> None:
    """POST /files/generate answers an image asset with size and model."""
    r = await http.post("/files/generate", json={"prompt": "album cover"})
    body = r.json()
    assert r.status_code == 200 and body["kind"] == "image" and body["width"] == 1024
    assert body["model"] == "google-generative-ai" and body["id"].startswith("user:1001-")
    r = await http.post("/files/generate", json={"prompt": ""})
    assert r.status_code == 400


async def test_download_by_clip_id_and_bad_format(
    sim: Simulator, http: httpx.AsyncClient, finished_song: Any
) -> None:
    """Download accepts a clip id; only mp3 is served here."""
    clip = (await finished_song(http, sim))["clips"][0]["clip"]
    assert (await http.get("/music/download", params={"id": clip})).status_code == 200
    r = await http.get("/music/download", params={"id": clip, "format": "wav"})
    assert r.status_code == 400


async def test_unknown_route_and_method(http: httpx.AsyncClient) -> None:
    """Unknown paths are 404 and wrong methods 405, both with the error envelope."""
    assert (await http.get("/nothing")).json() == {"error": "Not found", "code": 404}
    assert (await http.put("/jobs")).status_code == 405
