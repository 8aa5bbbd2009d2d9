"""Capacity: maxJobs per account, account selection, 429 when every slot is taken."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from flowmusic_async.testing import SimAccount

pytestmark = pytest.mark.anyio

THREE = (
    SimAccount(email="a@example.com", max_jobs=2),
    SimAccount(email="b@example.com", max_jobs=3),
    SimAccount(email="c@example.com", max_jobs=4),
)


async def _burst(http: httpx.AsyncClient, n: int) -> list[httpx.Response]:
    answers: list[httpx.Response] = []

    async def one(i: int) -> None:
        answers.append(await http.post("/music", json={"prompt": f"song {i}", "mode": "async"}))

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return answers


@pytest.mark.parametrize("over_socket", [False, True])
async def test_burst_fills_exactly_the_sum_of_max_jobs(
    make_sim: Any, connect: Any, over_socket: bool
) -> None:
    """20 submissions over maxJobs 2+3+4: exactly 9 accepted, 11 answered 429, peaks = maxJobs."""
    sim = make_sim(accounts=THREE, time_scale=1.0)
    if over_socket:
        async with sim.serve() as url, connect(sim, base_url=url) as http:
            answers = await _burst(http, 20)
    else:
        async with connect(sim) as http:
            answers = await _burst(http, 20)
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(201) == 9 and statuses.count(429) == 11
    assert all(r.json()["code"] == 429 for r in answers if r.status_code == 429)
    assert sim.stats.peak_running == {"a@example.com": 2, "b@example.com": 3, "c@example.com": 4}
    assert sim.stats.responses_429 == 11
    assert sim.stats.requests[("POST /music", 201)] == 9


async def test_get_jobs_reports_running_against_max_jobs(make_sim: Any, connect: Any) -> None:
    """GET /jobs shows running/maxJobs per account, and slots free up when jobs end."""
    sim = make_sim(accounts=THREE, time_scale=1.0)
    async with connect(sim) as http:
        await _burst(http, 9)
        listing = (await http.get("/jobs")).json()
        assert {e: (v["running"], v["maxJobs"]) for e, v in listing.items()} == {
            "a@example.com": (2, 2),
            "b@example.com": (3, 3),
            "c@example.com": (4, 4),
        }
        assert all(len(v["jobs"]) == v["running"] for v in listing.values())
        sim.advance(151)
        assert (await http.get("/jobs")).json() == {}
        assert (await http.post("/music", json={"prompt": "x", "mode": "async"})).status_code == 201


async def test_selection_skips_accounts_in_error_and_without_credits(
    make_sim: Any, connect: Any
) -> None:
    """Auto-selection only picks healthy accounts that can pay."""
    sim = make_sim(
        accounts=(
            SimAccount(email="broken@example.com", max_jobs=16, error="refresh token rejected"),
            SimAccount(email="broke@example.com", max_jobs=16, credits=0.0),
            SimAccount(email="ok@example.com", max_jobs=1),
        ),
        time_scale=1.0,
    )
    async with connect(sim) as http:
        r = await http.post("/music", json={"prompt": "x", "mode": "async"})
        assert r.json()["email"] == "ok@example.com"
        r = await http.post("/music", json={"prompt": "x", "mode": "async"})
        assert r.status_code == 402  # the only free healthy account cannot pay


async def test_all_accounts_in_error_answers_596(make_sim: Any, connect: Any) -> None:
    """With no healthy account left the answer is the account error, not 429."""
    sim = make_sim(accounts=(SimAccount(email="x@example.com", error="refresh token rejected"),))
    async with connect(sim) as http:
        r = await http.post("/music", json={"prompt": "x", "mode": "async"})
        assert r.status_code == 596
