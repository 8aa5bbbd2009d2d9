"""HTTP correctness: auth scheme case, 405 with Allow, HEAD, whole-second Retry-After, the
account selector (empty `email`, no account configured) and the POST /music page's bodies."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from flowmusic_async.testing import Faults, SimAccount, Simulator

pytestmark = pytest.mark.anyio


async def test_bearer_scheme_is_case_insensitive(sim: Simulator) -> None:
    """RFC 9110: auth schemes are case-insensitive; `bearer` and `BEARER` work like `Bearer`."""
    async with httpx.AsyncClient(transport=sim.transport(), base_url=sim.base_url) as bare:
        for scheme in ("bearer", "BEARER", "Bearer"):
            r = await bare.get("/jobs", headers={"Authorization": f"{scheme} {sim.token}"})
            assert r.status_code == 200, scheme
        for header in (f"Basic {sim.token}", sim.token, "Bearer", f"Bearer{sim.token}"):
            r = await bare.get("/jobs", headers={"Authorization": header})
            assert r.json() == {"error": "Unauthorized", "code": 401}, header


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/jobs", "GET, HEAD"),
        ("POST", "/jobs/job:x-user:1001-a@example.com-bot:flowmusic", "DELETE, GET, HEAD"),
        ("DELETE", "/music", "GET, HEAD, POST"),
        ("GET", "/music/edit", "POST"),
        ("PATCH", "/accounts/alpha%40example.com", "DELETE, GET, HEAD"),
        # A literal segment is its own resource, not an account called "usage".
        ("DELETE", "/accounts/usage", "GET, HEAD"),
    ],
)
async def test_405_names_the_allowed_methods(
    http: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    """A wrong method on a known path is 405 with `Allow` (RFC 9110 requires it)."""
    r = await http.request(method, path)
    assert r.status_code == 405 and r.headers["allow"] == allow
    assert r.json() == {"error": "Method not allowed", "code": 405}


async def _head_matches_get(http: httpx.AsyncClient, path: str, **params: Any) -> None:
    get = await http.get(path, params=params)
    head = await http.head(path, params=params)
    assert get.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert int(head.headers["content-length"]) == len(get.content) > 0


async def test_head_answers_like_get_without_a_body(
    sim: Simulator, http: httpx.AsyncClient, finished_song: Any
) -> None:
    """HEAD on every GET route: GET's status and headers, no body (in-process transport)."""
    clip = (await finished_song(http, sim))["clips"][0]["clip"]
    await _head_matches_get(http, "/jobs")
    await _head_matches_get(http, "/accounts")
    await _head_matches_get(http, "/music/download", id=clip)
    r = await http.head("/music/edit")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and r.content == b""


async def test_head_over_a_real_socket_keeps_the_connection_usable(
    sim: Simulator, finished_song: Any, connect: Any
) -> None:
    """Over HTTP/1.1 a HEAD answer must carry no body bytes, or the next answer is corrupt."""
    async with sim.serve() as base_url, connect(sim, base_url=base_url) as http:
        record = await finished_song(http, sim)
        for _ in range(2):  # same keep-alive connection: HEAD, GET, HEAD, GET
            await _head_matches_get(http, "/music/download", id=record["clips"][0]["clip"])
            await _head_matches_get(http, f"/jobs/{record['jobid']}")


@pytest.mark.parametrize(
    ("time_scale", "retry_after_s", "whole", "precise"),
    [
        (1.0, 10.0, "10", "10"),
        (0.01, 10.0, "1", "0.1"),
        (1.0, 2.2, "3", "2.2"),
        (0.001, 1, "1", "0.001"),
    ],
)
async def test_retry_after_is_whole_seconds_rounded_up(
    make_sim: Any, connect: Any, time_scale: float, retry_after_s: float, whole: str, precise: str
) -> None:
    """HTTP's Retry-After is whole seconds (requests/urllib3 refuse `0.01`); rounded up, >= 1."""
    sim = make_sim(
        accounts=(SimAccount(email="one@example.com", max_jobs=1),),
        time_scale=time_scale,
        retry_after_s=retry_after_s,
    )
    async with connect(sim) as http:
        await http.post("/music", json={"prompt": "x", "mode": "async"})
        r = await http.post("/music", json={"prompt": "x", "mode": "async"})
    assert r.status_code == 429
    assert r.headers["retry-after"] == whole and r.headers["retry-after"].isdigit()
    assert r.headers["x-sim-retry-after"] == precise


async def test_burst_429_sends_the_body_of_its_case(make_sim: Any, connect: Any) -> None:
    """The burst fault answers the page's pass-through body when `email` names the account."""
    sim = make_sim(faults=Faults(burst_429=2))
    async with connect(sim) as http:
        named = await http.post("/music", json={"prompt": "x", "email": "alpha@example.com"})
        anyone = await http.post("/music", json={"prompt": "x"})
    assert named.json()["error"] == (
        'FlowMusic conversation failed (429): {"detail":"Too Many Requests"}'
    )
    assert anyone.json()["error"].startswith("All 1 FlowMusic accounts are at their maxJobs")


async def test_402_is_the_pages_pass_through_body(make_sim: Any, connect: Any) -> None:
    """An account out of credits answers the page's 402 body word for word."""
    sim = make_sim(accounts=(SimAccount(email="poor@example.com", credits=0.0),))
    async with connect(sim) as http:
        r = await http.post("/music", json={"prompt": "x", "mode": "async"})
    assert r.status_code == 402
    assert r.json() == {
        "error": 'FlowMusic conversation failed (402): {"detail":"User has insufficient credits"}',
        "code": 402,
    }


async def test_no_account_configured_is_400_on_every_selector(make_sim: Any, connect: Any) -> None:
    """The page: "missing/invalid parameter, or no account configured" is 400 (was 404)."""
    sim = make_sim(accounts=())
    async with connect(sim) as http:
        calls = [
            http.post("/music", json={"prompt": "x"}),
            http.get("/music"),
            http.post("/music/lyrics", json={"prompt": "x"}),
            http.post("/files/generate", json={"prompt": "x"}),
        ]
        for call in calls:
            r = await call
            assert r.status_code == 400 and r.json()["code"] == 400, r.text
            assert "No FlowMusic accounts configured" in r.json()["error"]
        # A named account that is not configured stays 404 (docs/api-notes.md#q28-unknown-account).
        r = await http.get("/music", params={"email": "nobody@example.com"})
        assert r.status_code == 404


async def test_empty_email_means_any_account_on_post_and_get_music(
    make_sim: Any, connect: Any
) -> None:
    """`email=""` is treated as omitted on both POST /music and GET /music, never 404."""
    sim = make_sim(accounts=(SimAccount(email="only@example.com"),))
    async with connect(sim) as http:
        r = await http.post("/music", json={"prompt": "x", "email": "", "mode": "async"})
        assert r.status_code == 201 and r.json()["email"] == "only@example.com"
        assert r.json()["request"]["email"] == ""  # the echo stays verbatim
        r = await http.get("/music", params={"email": ""})
        assert r.status_code == 200 and r.json()["email"] == "only@example.com"
        files = {"prompt": (None, "x"), "email": (None, ""), "mode": (None, "async")}
        r = await http.post("/music", files=files)  # the form a Postman user sends
        assert r.status_code == 201 and r.json()["email"] == "only@example.com"
