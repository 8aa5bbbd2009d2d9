"""A job's whole life: submit, pending, running list, completion, media, cancel, expiry."""

from __future__ import annotations

import struct
from typing import Any

import anyio
import httpx
import pytest

from flowmusic_async.testing import SimAccount, Simulator

pytestmark = pytest.mark.anyio


async def _full_life(http: httpx.AsyncClient, sim: Simulator) -> None:
    r = await http.post(
        "/music", json={"prompt": "lofi beat", "mode": "async", "replyRef": "ref-1"}
    )
    assert r.status_code == 201
    pending = r.json()
    assert pending["status"] == "pending"
    assert set(pending) == {"jobid", "email", "status", "created_at", "request"}
    assert pending["request"] == {"prompt": "lofi beat", "mode": "async", "replyRef": "ref-1"}
    jobid = pending["jobid"]
    assert jobid.startswith("job:") and jobid.endswith("-bot:flowmusic")
    assert (await http.get(f"/jobs/{jobid}")).json()["status"] == "pending"
    sim.advance(151)
    done = (await http.get(f"/jobs/{jobid}")).json()
    assert done["status"] == "completed"
    assert 40_000 <= done["duration_ms"] <= 150_000
    assert 1 <= len(done["clips"]) <= 2
    clip = done["clips"][0]
    assert clip["clip"].startswith("user:1001-alpha@example.com-clip:")
    assert clip["title"] and clip["lyrics"] and clip["lyrics_timing"]
    assert isinstance(clip["seed"], int)
    wav = await http.get(clip["wav_url"])
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    riff, size, wave, fmt, _, audio_format, channels, rate = struct.unpack(
        "<4sI4s4sIHHI", wav.content[:28]
    )
    assert (riff, wave, fmt, audio_format) == (b"RIFF", b"WAVE", b"fmt ", 1)
    assert size == len(wav.content) - 8 and channels == 1 and rate > 0
    m4a = await http.get(clip["audio_url"])
    assert m4a.content[4:8] == b"ftyp"
    assert clip["image_url"].split("?")[0].endswith(".jpg")  # as on the seed page
    jpeg = await http.get(clip["image_url"])
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert jpeg.content.startswith(b"\xff\xd8\xff") and jpeg.content.endswith(b"\xff\xd9")
    mp3 = await http.get("/music/download", params={"id": jobid})
    assert mp3.headers["content-type"] == "audio/mpeg" and mp3.content.startswith(b"ID3")
    assert f'filename="{clip["clip"]}.mp3"' in mp3.headers["content-disposition"]


async def test_async_job_full_life_in_process(sim: Simulator, http: httpx.AsyncClient) -> None:
    """The core flow a client depends on works through the in-process transport."""
    await _full_life(http, sim)


async def test_async_job_full_life_over_socket(sim: Simulator, connect: Any) -> None:
    """The same flow over a real loopback socket, media URLs pointing at the server."""
    async with sim.serve() as base_url, connect(sim, base_url=base_url) as http:
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1/flowmusic")
        await _full_life(http, sim)


async def test_sync_mode_holds_until_done_and_is_listed(connect: Any) -> None:
    """Sync jobs occupy a slot and appear in GET /jobs while held
    (docs/api-notes.md#q6-sync-jobs-hold-a-slot)."""
    sim = Simulator(time_scale=1.0)
    results: list[httpx.Response] = []
    async with connect(sim) as http:

        async def sync_post() -> None:
            results.append(await http.post("/music", json={"prompt": "held"}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(sync_post)
            await anyio.wait_all_tasks_blocked()
            listing = (await http.get("/jobs")).json()
            assert listing["alpha@example.com"]["running"] == 1
            assert listing["alpha@example.com"]["maxJobs"] == 4
            assert listing["alpha@example.com"]["jobs"][0]["status"] == "pending"
            sim.advance(151)
        assert results[0].status_code == 200
        assert results[0].json()["status"] == "completed"
        assert (await http.get("/jobs")).json() == {}


async def test_sync_mode_at_small_time_scale(sim: Simulator, http: httpx.AsyncClient) -> None:
    """Time scale makes a 40-150 s song take a fraction of a second of real time."""
    with anyio.fail_after(2):
        r = await http.post("/music", json={"prompt": "quick", "instrumental": True})
    assert r.status_code == 200
    record = r.json()
    assert record["status"] == "completed"
    # The POST /music page's model: lyrics are "[Instrumental]" for instrumentals.
    clips = record["clips"]
    assert all(c["lyrics"] == "[Instrumental]" and c["lyrics_timing"] is None for c in clips)


async def test_cancel_frees_slot_keeps_credits_and_is_idempotent(
    make_sim: Any, connect: Any
) -> None:
    """Cancel is bookkeeping: failed/user_cancelled, slot free at once, credits still spent."""
    sim = make_sim(accounts=(SimAccount(email="solo@example.com", max_jobs=1, credits=100.0),))
    async with connect(sim) as http:
        jobid = (await http.post("/music", json={"prompt": "x", "mode": "async"})).json()["jobid"]
        assert (await http.post("/music", json={"prompt": "y", "mode": "async"})).status_code == 429
        assert (await http.delete(f"/jobs/{jobid}")).status_code == 204
        record = (await http.get(f"/jobs/{jobid}")).json()
        assert record["status"] == "failed"
        assert record["error"]["code"] == "user_cancelled"
        assert "clips" not in record and "completed_at" in record
        assert (await http.delete(f"/jobs/{jobid}")).status_code == 204
        assert (await http.get("/jobs")).json() == {}
        account = (await http.get("/accounts/solo%40example.com")).json()
        assert account["credits_remaining"] == 90.0
        assert (await http.post("/music", json={"prompt": "y", "mode": "async"})).status_code == 201


async def test_cancel_releases_a_held_sync_request(connect: Any) -> None:
    """A sync request whose job is cancelled answers at once with the failed record."""
    sim = Simulator(time_scale=1.0)
    async with connect(sim) as http:
        results: list[httpx.Response] = []

        async def sync_post() -> None:
            results.append(await http.post("/music", json={"prompt": "held"}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(sync_post)
            await anyio.wait_all_tasks_blocked()
            jobid = (await http.get("/jobs")).json()["alpha@example.com"]["jobs"][0]["jobid"]
            assert (await http.delete(f"/jobs/{jobid}")).status_code == 204
        assert results[0].status_code == 200
        assert results[0].json()["error"]["code"] == "user_cancelled"


async def test_finished_job_expires_after_retention(
    make_sim: Any, connect: Any, finished_song: Any
) -> None:
    """After retention GET /jobs/{jobid} answers 404, clips stay listed
    (docs/api-notes.md#q8-job-retention)."""
    sim = make_sim(retention_s=1000)
    async with connect(sim) as http:
        record = await finished_song(http, sim)
        sim.advance(1001)
        r = await http.get(f"/jobs/{record['jobid']}")
        assert r.status_code == 404 and r.json()["code"] == 404
        listed = (await http.get("/music")).json()["clips"]
        assert {c["clip"] for c in record["clips"]} <= {c["clip"] for c in listed}


async def test_job_failure_rate_fails_jobs_with_moderation_reject(
    make_sim: Any, connect: Any
) -> None:
    """A failed job is a 200 record with error {code, message}; a sync one answers 422 with it."""
    sim = make_sim(job_failure_rate=1.0)
    async with connect(sim) as http:
        jobid = (await http.post("/music", json={"prompt": "x", "mode": "async"})).json()["jobid"]
        sim.advance(151)
        record = (await http.get(f"/jobs/{jobid}")).json()
        assert record["status"] == "failed"
        assert record["error"]["code"] == "moderation_reject" and record["error"]["message"]
        # As the page's failed record: no clips, no duration_ms.
        assert "clips" not in record and "duration_ms" not in record
        r = await http.post("/music", json={"prompt": "x"})
        assert r.status_code == 422
        failed = r.json()  # the POST /music page: the body is the terminal job record
        assert failed["status"] == "failed" and failed["error"]["code"] == "moderation_reject"
        assert (await http.get(f"/jobs/{failed['jobid']}")).json() == failed


async def test_seed_makes_runs_reproducible(
    make_sim: Any, connect: Any, finished_song: Any
) -> None:
    """Same seed, same requests: same durations, titles and ids (benchmarks rely on it)."""
    records = []
    for _ in range(2):
        sim = make_sim(seed=7)
        async with connect(sim) as http:
            record = await finished_song(http, sim)
            records.append((record["jobid"], [(c["clip"], c["title"]) for c in record["clips"]]))
    assert records[0] == records[1]


async def test_webhook_posts_record_with_reply_ref(make_sim: Any, connect: Any) -> None:
    """A terminal job POSTs its record, with top-level replyRef, to replyUrl."""
    received: list[dict[str, Any]] = []
    arrived = anyio.Event()

    def hook(request: httpx.Request) -> httpx.Response:
        import json

        received.append(json.loads(request.content))
        arrived.set()
        return httpx.Response(204)

    sim = make_sim(webhook_transport=httpx.MockTransport(hook))
    async with sim, connect(sim) as http:
        body = {
            "prompt": "hook",
            "mode": "async",
            "replyUrl": "https://hooks.test/x",
            "replyRef": "batch-7",
        }
        jobid = (await http.post("/music", json=body)).json()["jobid"]
        sim.advance(151)
        with anyio.fail_after(5):
            await arrived.wait()
    assert received[0]["jobid"] == jobid and received[0]["status"] == "completed"
    assert received[0]["replyRef"] == "batch-7"
    assert received[0]["request"]["replyUrl"] == "https://hooks.test/x"
    assert sim.stats.webhooks_delivered == 1


async def test_a_webhook_that_cannot_be_delivered_is_counted_never_fatal(
    make_sim: Any, connect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A replyUrl httpx cannot even use is logged and counted; the simulator keeps serving.

    `http://[::1` raised httpx.InvalidURL (not an httpx.HTTPError) out of the webhook sender,
    which took `async with sim:` (and `flowmusic simulate`) down when the job ended.
    """
    bad_urls = ["http://[::1", "http://xn--a.com/", "http://exa\u2028mple.com/"]
    delivered = anyio.Event()

    def hook(request: httpx.Request) -> httpx.Response:
        delivered.set()
        return httpx.Response(204)

    caplog.set_level("WARNING", logger="flowmusic_async.testing")
    sim = make_sim(webhook_transport=httpx.MockTransport(hook))
    async with sim, connect(sim) as http:
        for url in bad_urls:
            r = await http.post("/music", json={"prompt": "x", "mode": "async", "replyUrl": url})
            assert r.status_code == 201
        sim.advance(151)  # every bad webhook is due now
        good = {"prompt": "y", "mode": "async", "replyUrl": "https://hooks.test/ok"}
        assert (await http.post("/music", json=good)).status_code == 201
        sim.advance(151)
        with anyio.fail_after(5):
            await delivered.wait()  # the sender outlived the bad ones
        assert (await http.get("/jobs")).status_code == 200
    assert sim.stats.webhooks_failed == len(bad_urls)
    assert sim.stats.webhooks_delivered == 1
    failures = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert len(failures) == len(bad_urls)
