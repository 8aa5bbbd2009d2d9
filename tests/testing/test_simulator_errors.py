"""One test per row of the contract's §10 error table, asserting status and body shape."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from flowmusic_async.testing import SimAccount, Simulator

pytestmark = pytest.mark.anyio

OTHER_TOKEN = "user:2002-anotheruserstoken"


def _error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == status and isinstance(body["error"], str)
    return str(body["error"])


async def test_success_statuses_200_201_204(sim: Simulator, http: httpx.AsyncClient) -> None:
    """200 sync, 201 async/created account, 204 delete and cancel."""
    assert (await http.post("/music", json={"prompt": "s"})).status_code == 200
    r = await http.post("/music", json={"prompt": "a", "mode": "async"})
    assert r.status_code == 201
    assert (await http.delete(f"/jobs/{r.json()['jobid']}")).status_code == 204
    r = await http.post("/accounts", json={"refresh_token": "abcdefghij-new"})
    assert r.status_code == 201
    assert (await http.delete(f"/accounts/{r.json()['email']}")).status_code == 204


async def test_400_documented_messages(http: httpx.AsyncClient) -> None:
    """The two 400 messages the contract quotes come back word for word."""
    r = await http.post("/accounts", json={})
    assert _error(r, 400) == "Parameter refresh_token is required"
    r = await http.get("/music/download", params={"id": "nonsense"})
    assert _error(r, 400) == "Parameter id not a valid clip ID or jobid"


async def test_400_unknown_field_and_bad_values(http: httpx.AsyncClient) -> None:
    """The simulator is strict so that client bugs (typos, bad enums, ranges) surface."""
    assert "Unknown parameter promt" in _error(await http.post("/music", json={"promt": "x"}), 400)
    assert "Parameter prompt is required" in _error(await http.post("/music", json={}), 400)
    assert "mode" in _error(await http.post("/music", json={"prompt": "x", "mode": "later"}), 400)
    assert "maxJobs" in _error(
        await http.post("/accounts", json={"refresh_token": "abcdefghijk", "maxJobs": 17}), 400
    )
    assert _error(await http.post("/accounts", json={"refresh_token": "short"}), 400)
    assert _error(
        await http.post(
            "/music", content=b"{not json", headers={"content-type": "application/json"}
        ),
        400,
    )
    assert _error(await http.post("/music", json={"prompt": "x", "instrumental": None}), 400)
    assert _error(await http.get("/music", params={"limit": 101}), 400)
    assert _error(await http.get("/jobs", params={"surprise": "1"}), 400)


async def test_401_wrong_token(sim: Simulator, connect: Any) -> None:
    """A wrong or missing token answers exactly {"error":"Unauthorized","code":401}."""
    async with connect(sim, token="user:1001-wrong") as http:
        for r in (await http.get("/jobs"), await http.post("/music", json={"prompt": "x"})):
            assert r.status_code == 401 and r.json() == {"error": "Unauthorized", "code": 401}
    async with httpx.AsyncClient(transport=sim.transport(), base_url=sim.base_url) as bare:
        assert (await bare.get("/accounts")).status_code == 401


async def test_402_credits_spent(make_sim: Any, connect: Any) -> None:
    """Each song spends credits; when they run out the account answers 402."""
    sim = make_sim(
        accounts=(SimAccount(email="poor@example.com", credits=25.0),), song_credits=10.0
    )
    async with connect(sim) as http:
        for _ in range(2):
            assert (
                await http.post("/music", json={"prompt": "x", "mode": "async"})
            ).status_code == 201
        assert "insufficient credits" in _error(
            await http.post("/music", json={"prompt": "x", "mode": "async"}), 402
        )
        sim.set_credits("poor@example.com", 100)
        assert (await http.post("/music", json={"prompt": "x", "mode": "async"})).status_code == 201


async def test_403_other_users_job(sim: Simulator, http: httpx.AsyncClient, connect: Any) -> None:
    """A jobid of another token's user is 403 on GET and DELETE."""
    jobid = (await http.post("/music", json={"prompt": "x", "mode": "async"})).json()["jobid"]
    async with connect(sim, token=OTHER_TOKEN) as other:
        _error(await other.get(f"/jobs/{jobid}"), 403)
        _error(await other.delete(f"/jobs/{jobid}"), 403)
        assert (await other.get("/jobs")).json()["alpha@example.com"]["jobs"] == []


async def test_404_unknown_job_and_account(http: httpx.AsyncClient) -> None:
    """Unknown jobids and accounts are 404 with the error envelope."""
    _error(
        await http.get(
            "/jobs/job:00000000-0000-4000-8000-000000000000-user:1001-"
            "alpha@example.com-bot:flowmusic"
        ),
        404,
    )
    _error(await http.delete("/jobs/job:nope-user:1001-x-bot:flowmusic"), 404)
    _error(await http.get("/accounts/nobody%40example.com"), 404)
    _error(await http.get("/accounts/usage", params={"email": "nobody@example.com"}), 404)
    _error(await http.delete("/accounts/nobody%40example.com"), 404)
    _error(await http.post("/music", json={"prompt": "x", "email": "nobody@example.com"}), 404)


async def test_409_download_of_unfinished_job(http: httpx.AsyncClient) -> None:
    """Downloading by jobid before the job completes is 409 (retry after completion)."""
    jobid = (await http.post("/music", json={"prompt": "x", "mode": "async"})).json()["jobid"]
    _error(await http.get("/music/download", params={"id": jobid}), 409)


async def test_413_upload_over_cap(http: httpx.AsyncClient) -> None:
    """An image over 20 MB is refused with 413."""
    big = b"\x89PNG\r\n\x1a\n" + bytes(20 * 1024 * 1024)
    _error(await http.post("/files", content=big, headers={"content-type": "image/png"}), 413)


def _seconds_between(record: dict[str, Any]) -> float:
    created = datetime.fromisoformat(record["created_at"].replace("Z", "+00:00"))
    completed = datetime.fromisoformat(record["completed_at"].replace("Z", "+00:00"))
    return (completed - created).total_seconds()


MODERATION_ERROR = {
    "code": "moderation_reject",
    "message": "the model declined to generate audio for this prompt",
}


async def test_moderated_async_song_is_accepted_then_fails_after_a_render(
    sim: Simulator, http: httpx.AsyncClient
) -> None:
    """Async mode: 201, the job renders (holding its slot), then ends failed, nothing charged.

    The POST /music page's 422 record shows 28 s between created_at and completed_at: the
    model rendered, then produced no audio. A client learns of the refusal from a poll.
    """
    before = (await http.get("/accounts/alpha%40example.com")).json()["credits_remaining"]
    body = {"prompt": "bad [moderate] idea", "mode": "async"}
    r = await http.post("/music", json=body)
    assert r.status_code == 201
    assert r.json()["status"] == "pending" and r.json()["request"] == body
    jobid = r.json()["jobid"]
    assert (await http.get(f"/jobs/{jobid}")).json()["status"] == "pending"
    assert (await http.get("/jobs")).json()["alpha@example.com"]["running"] == 1
    sim.advance(200)
    record = (await http.get(f"/jobs/{jobid}")).json()
    assert record["status"] == "failed" and record["error"] == MODERATION_ERROR
    assert record["request"] == body and "clips" not in record
    assert _seconds_between(record) >= 40  # a song's render time (40-150 s)
    after = (await http.get("/accounts/alpha%40example.com")).json()["credits_remaining"]
    assert after == before
    assert sim.stats.jobs_created == 0 and sim.stats.duplicate_submissions == 0


async def test_moderated_sync_song_answers_422_with_its_record_after_the_render(
    sim: Simulator, http: httpx.AsyncClient
) -> None:
    """Sync mode: the 422 (body: the failed record) comes when the render ends, not at once."""
    before = (await http.get("/accounts/alpha%40example.com")).json()["credits_remaining"]
    body = {"prompt": "bad [moderate] idea", "mode": "sync"}
    started = sim.clock.now()
    r = await http.post("/music", json=body)
    assert r.status_code == 422
    assert sim.clock.now() - started >= 40  # held for the render (simulated seconds)
    record = r.json()
    assert record["status"] == "failed" and record["email"] == "alpha@example.com"
    assert record["error"] == MODERATION_ERROR
    assert record["request"] == body and "clips" not in record
    assert _seconds_between(record) >= 40 and record["jobid"].startswith("job:")
    # The jobid it names can be read back, and says the same.
    assert (await http.get(f"/jobs/{record['jobid']}")).json() == record
    assert sim.stats.jobs_created == 0 and sim.stats.duplicate_submissions == 0
    after = (await http.get("/accounts/alpha%40example.com")).json()["credits_remaining"]
    assert after == before
    assert (await http.get("/jobs")).json() == {}  # the slot is free once the render ended


async def test_422_lyrics_and_c2pa_upload(http: httpx.AsyncClient) -> None:
    """The lyrics agent's 422 has its own body; an AI-provenance upload kept as is is 422."""
    r = await http.post("/music/lyrics", json={"prompt": "[moderate] words"})
    assert r.status_code == 422
    body = r.json()
    assert body["error"]["code"] == "no_lyrics" and body["email"] and "agent_text" in body
    png = b"\x89PNG\r\n\x1a\n c2pa manifest"
    r = await http.post(
        "/files",
        params={"stripMetadata": "false"},
        content=png,
        headers={"content-type": "image/png"},
    )
    _error(r, 422)


async def test_422_moderated_edit_is_its_failed_job_record(
    sim: Simulator, http: httpx.AsyncClient, finished_song: Any
) -> None:
    """A refused sync edit answers like a song: after its render, its failed record."""
    clip = (await finished_song(http, sim))["clips"][0]["clip"]
    body = {"operation": "cover", "clip": clip, "instruction": "[moderate]", "mode": "sync"}
    r = await http.post("/music/edit", json=body)
    assert r.status_code == 422
    record = r.json()
    assert record["operation"] == "cover" and record["status"] == "failed"
    assert record["error"]["code"] == "moderation_reject"
    async_body = {**body, "mode": "async"}
    r = await http.post("/music/edit", json=async_body)
    assert r.status_code == 201 and r.json()["operation"] == "cover"


async def test_429_named_account_full_with_retry_after(make_sim: Any, connect: Any) -> None:
    """A named full account answers the page's pass-through 429, Retry-After in whole seconds."""
    sim = make_sim(
        accounts=(SimAccount(email="one@example.com", max_jobs=1),),
        time_scale=0.01,
        retry_after_s=10.0,
    )
    async with connect(sim) as http:
        body = {"prompt": "x", "mode": "async", "email": "one@example.com"}
        assert (await http.post("/music", json=body)).status_code == 201
        r = await http.post("/music", json=body)
        assert (
            _error(r, 429) == 'FlowMusic conversation failed (429): {"detail":"Too Many Requests"}'
        )
        # HTTP's delta-seconds is a whole number: 0.1 real seconds is sent as 1; the precise
        # scaled value is in the simulator's own header.
        assert r.headers["retry-after"] == "1"
        assert r.headers["x-sim-retry-after"] == "0.1"
    assert sim.stats.responses_429 == 1


async def test_429_every_account_full_names_how_many(make_sim: Any, connect: Any) -> None:
    """With `email` omitted the 429 is the page's "All N FlowMusic accounts ..." word for word."""
    sim = make_sim(
        accounts=tuple(SimAccount(email=f"a{i}@example.com", max_jobs=1) for i in range(3)),
        time_scale=1.0,
        retry_after_s=2.5,
    )
    async with connect(sim) as http:
        for _ in range(3):
            assert (
                await http.post("/music", json={"prompt": "x", "mode": "async"})
            ).status_code == 201
        r = await http.post("/music", json={"prompt": "x", "mode": "async"})
        assert _error(r, 429) == (
            "All 3 FlowMusic accounts are at their maxJobs concurrency limit \u2014 retry shortly"
        )
        assert r.headers["retry-after"] == "3" and r.headers["x-sim-retry-after"] == "2.5"


async def test_429_without_retry_after_when_disabled(make_sim: Any, connect: Any) -> None:
    """retry_after_s=None sends no Retry-After header."""
    sim = make_sim(accounts=(SimAccount(email="one@example.com", max_jobs=1),), retry_after_s=None)
    async with connect(sim) as http:
        await http.post("/music", json={"prompt": "x", "mode": "async"})
        r = await http.post("/music", json={"prompt": "x", "mode": "async"})
        assert r.status_code == 429 and "retry-after" not in r.headers


async def test_500_image_generation_refused(http: httpx.AsyncClient) -> None:
    """A moderated image prompt surfaces as the documented upstream 500."""
    r = await http.post("/files/generate", json={"prompt": "[moderate] picture"})
    assert _error(r, 500) == 'FlowMusic image generation failed (500): "Internal Server Error"'


async def test_596_account_in_error_state(
    sim: Simulator, http: httpx.AsyncClient, finished_song: Any
) -> None:
    """Every call targeting a broken account answers 596 with the recorded reason."""
    record = await finished_song(http, sim)
    sim.set_account_error("alpha@example.com", "refresh token rejected")
    expected = "Account alpha@example.com in error state: refresh token rejected"
    calls = [
        http.post("/music", json={"prompt": "x", "email": "alpha@example.com"}),
        http.post("/music", json={"prompt": "x"}),
        http.get("/music"),
        http.post("/music/lyrics", json={"prompt": "x"}),
        http.post("/files/generate", json={"prompt": "x"}),
        http.get("/music/download", params={"id": record["clips"][0]["clip"]}),
        http.post("/music/edit", json={"operation": "cover", "clip": record["clips"][0]["clip"]}),
    ]
    for call in calls:
        assert _error(await call, 596) == expected
    account = (await http.get("/accounts/alpha%40example.com")).json()
    assert account["error"] == "refresh token rejected"
    assert "credits_remaining" not in account
    sim.clear_account_error("alpha@example.com")
    assert (await http.get("/music")).status_code == 200
