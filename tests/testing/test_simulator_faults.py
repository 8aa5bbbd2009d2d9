"""Every fault knob has a visible effect; observation (stats) counts what happened."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import anyio
import httpx
import pytest

from flowmusic_async.testing import Faults, SimAccount, Simulator

pytestmark = pytest.mark.anyio
ASYNC_SONG = {"prompt": "x", "mode": "async"}


async def test_faults_are_off_by_default(sim: Simulator) -> None:
    """A fresh simulator injects nothing, so plain tests see the plain API."""
    assert sim.faults == Faults()


async def test_latency_adds_real_seconds(sim: Simulator, http: httpx.AsyncClient) -> None:
    """latency_s delays every request by that many real seconds."""
    sim.faults.latency_s = 0.05
    started = time.monotonic()
    assert (await http.get("/jobs")).status_code == 200
    assert time.monotonic() - started >= 0.05


async def test_error_rate_answers_500_without_processing(
    sim: Simulator, http: httpx.AsyncClient
) -> None:
    """error_rate: a 500 envelope and no job created (the request was not processed)."""
    sim.faults.error_rate = {"POST /music": 1.0}
    r = await http.post("/music", json=ASYNC_SONG)
    assert r.status_code == 500 and r.json()["code"] == 500
    assert sim.stats.jobs_created == 0
    assert (await http.get("/jobs")).status_code == 200  # other endpoints untouched


async def test_drop_rate_in_process_raises_remote_protocol_error(
    sim: Simulator, http: httpx.AsyncClient
) -> None:
    """drop_rate: the connection drops before processing; httpx sees RemoteProtocolError."""
    sim.faults.drop_rate = {"*": 1.0}
    with pytest.raises(httpx.RemoteProtocolError, match="Server disconnected"):
        await http.post("/music", json=ASYNC_SONG)
    assert sim.stats.jobs_created == 0
    assert sim.stats.requests[("POST /music", 0)] == 1


async def test_drop_rate_over_socket_closes_connection(sim: Simulator, connect: Any) -> None:
    """Over a real socket the server closes without answering, and keeps serving afterwards."""
    async with sim.serve() as url, connect(sim, base_url=url) as http:
        sim.faults.drop_rate = {"GET /jobs": 1.0}
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get("/jobs")
        sim.faults.drop_rate = {}
        assert (await http.get("/jobs")).status_code == 200


async def test_malformed_rate_breaks_json_but_processes(
    sim: Simulator, http: httpx.AsyncClient
) -> None:
    """malformed_rate: a success status with a body that is not JSON; the job exists."""
    sim.faults.malformed_rate = {"POST /music": 1.0}
    r = await http.post("/music", json=ASYNC_SONG)
    assert r.status_code == 201
    with pytest.raises(json.JSONDecodeError):
        r.json()
    assert sim.stats.jobs_created == 1


async def test_burst_429_refuses_next_job_posts(sim: Simulator, http: httpx.AsyncClient) -> None:
    """burst_429: the next N job POSTs are 429 whatever the capacity, then normal again."""
    sim.faults.burst_429 = 2
    assert [(await http.post("/music", json=ASYNC_SONG)).status_code for _ in range(3)] == [
        429,
        429,
        201,
    ]
    assert sim.faults.burst_429 == 0 and sim.stats.responses_429 == 2


async def test_account_error_after_turns_account_596(make_sim: Any, connect: Any) -> None:
    """account_error_after: after N accepted jobs the account answers 596."""
    sim = make_sim(faults=Faults(account_error_after={"alpha@example.com": 2}))
    async with connect(sim) as http:
        for _ in range(2):
            assert (await http.post("/music", json=ASYNC_SONG)).status_code == 201
        r = await http.post("/music", json={**ASYNC_SONG, "email": "alpha@example.com"})
        assert r.status_code == 596
        assert "refresh token rejected" in r.json()["error"]


async def test_account_error_after_zero_breaks_the_account_at_once(
    make_sim: Any, connect: Any
) -> None:
    """account_error_after = 0: the account answers 596 before accepting any job.

    It used to accept one job first, the same as 1.
    """
    sim = make_sim(faults=Faults(account_error_after={"alpha@example.com": 0}))
    async with connect(sim) as http:
        r = await http.post("/music", json={**ASYNC_SONG, "email": "alpha@example.com"})
        assert r.status_code == 596
        assert sim.stats.jobs_created == 0
        # Re-adding the account heals it for good (the fault fires once).
        token = sim.world.accounts["alpha@example.com"].refresh_token
        assert (await http.post("/accounts", json={"refresh_token": token})).status_code == 200
        assert (await http.post("/music", json=ASYNC_SONG)).status_code == 201


async def test_lost_response_creates_job_then_drops(
    sim: Simulator, http: httpx.AsyncClient
) -> None:
    """lost_response_rate: the job exists (and is listed) but the client sees a dropped line."""
    sim.faults.lost_response_rate = 1.0
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post("/music", json=ASYNC_SONG)
    sim.faults.lost_response_rate = 0.0
    assert sim.stats.lost_responses == 1 and sim.stats.jobs_created == 1
    listing = (await http.get("/jobs")).json()
    assert listing["alpha@example.com"]["running"] == 1


async def test_duplicates_and_accepted_prompts_are_counted(
    sim: Simulator, http: httpx.AsyncClient
) -> None:
    """Equal accepted bodies count as duplicate submissions (how double-spend is measured)."""
    for _ in range(2):
        await http.post("/music", json={**ASYNC_SONG, "replyRef": "r1"})
    await http.post("/music", json={**ASYNC_SONG, "replyRef": "r2"})
    assert sim.stats.duplicate_submissions == 1
    assert sim.stats.accepted_prompts["x"] == 3
    times = list(sim.stats.jobs.values())
    assert all(t.finished > t.created for t in times)
    snap = sim.stats.snapshot()
    assert snap["requests"]["POST /music 201"] == 3
    json.dumps(snap)


async def test_media_url_ttl_expires_signed_urls(
    make_sim: Any, connect: Any, finished_song: Any
) -> None:
    """Signed media URLs answer 403 after their TTL; a fresh read of the job re-signs them."""
    sim = make_sim(media_url_ttl_s=3600)
    async with connect(sim) as http:
        record = await finished_song(http, sim)
        url = record["clips"][0]["wav_url"]
        assert "sig=" in url and (await http.get(url)).status_code == 200
        sim.advance(3601)
        assert (await http.get(url)).status_code == 403
        fresh = (await http.get(f"/jobs/{record['jobid']}")).json()["clips"][0]["wav_url"]
        assert (await http.get(fresh)).status_code == 200
        assert (await http.get(url.replace("sig=", "sig=0"))).status_code == 403


async def test_sim_endpoints_over_socket(sim: Simulator, connect: Any) -> None:
    """GET /_sim/stats and POST /_sim/faults let another process observe and steer."""
    async with sim.serve() as url, connect(sim, base_url=url) as http:
        await http.post("/music", json=ASYNC_SONG)
        origin = url.removesuffix("/v1/flowmusic")
        async with httpx.AsyncClient(base_url=origin) as bare:  # no auth needed
            stats = (await bare.get("/_sim/stats")).json()
            assert stats["jobs_created"] == 1 and stats["requests"]["POST /music 201"] == 1
            knobs = {"burst_429": 1, "error_rate": {"GET /jobs": 0.5}}
            r = await bare.post("/_sim/faults", json=knobs)
            assert r.status_code == 200 and r.json()["burst_429"] == 1
            assert (await bare.post("/_sim/faults", json={"nope": 1})).status_code == 400
            assert (await bare.post("/_sim/faults", json={"burst_429": -1})).status_code == 400
        assert sim.faults.error_rate == {"GET /jobs": 0.5}
        assert (await http.post("/music", json=ASYNC_SONG)).status_code == 429


async def test_serve_over_chunked_request_body(sim: Simulator, connect: Any) -> None:
    """The socket server reads chunked request bodies (streamed uploads)."""

    async def chunks() -> Any:
        yield b'{"prompt": "chun'
        yield b'ked", "mode": "async"}'

    async with sim.serve() as url, connect(sim, base_url=url) as http:
        headers = {"content-type": "application/json"}
        r = await http.post("/music", content=chunks(), headers=headers)
        assert r.status_code == 201 and r.json()["request"]["prompt"] == "chunked"


async def test_account_error_controls(make_sim: Any, connect: Any) -> None:
    """set_account_error / clear_account_error switch 596 on and off."""
    sim = make_sim(accounts=(SimAccount(email="a@example.com"), SimAccount(email="b@example.com")))
    async with connect(sim) as http:
        sim.set_account_error("a@example.com", "refresh token rejected")
        r = await http.post("/music", json=ASYNC_SONG)
        assert r.json()["email"] == "b@example.com"
        sim.clear_account_error("a@example.com")
        r = await http.post("/music", json={**ASYNC_SONG, "email": "a@example.com"})
        assert r.status_code == 201


def test_cli_prints_ready_and_serves() -> None:
    """`python -m flowmusic_async.testing` prints one READY line and answers requests."""
    cmd = [
        sys.executable,
        "-m",
        "flowmusic_async.testing",
        "--time-scale",
        "0.01",
        "--seed",
        "1",
        "--account",
        "alpha@example.com:4",
        "--account",
        "beta@example.com:3",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY http://127.0.0.1:") and line.rstrip().endswith(
            "/v1/flowmusic"
        )
        base = line.split()[1]
        r = httpx.get(
            f"{base}/accounts", headers={"Authorization": "Bearer user:1001-simulatortoken"}
        )
        assert set(r.json()) == {"alpha@example.com", "beta@example.com"}
        assert r.json()["beta@example.com"]["maxJobs"] == 3
    finally:
        proc.terminate()
        proc.wait(timeout=5)


async def test_in_process_read_timeout_is_honoured(connect: Any) -> None:
    """A sync request longer than the client's read timeout raises ReadTimeout; the job lives."""
    sim = Simulator(time_scale=1.0)
    async with connect(sim) as http:
        with anyio.fail_after(5), pytest.raises(httpx.ReadTimeout):
            await http.post("/music", json={"prompt": "slow"}, timeout=0.05)
        assert (await http.get("/jobs")).json()["alpha@example.com"]["running"] == 1
