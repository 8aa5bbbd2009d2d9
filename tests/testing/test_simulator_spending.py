"""What each operation costs, and how every charge shows in balances, usage and stats."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from flowmusic_async.testing import SimAccount, Simulator

pytestmark = pytest.mark.anyio

COSTS = {"song": 7.0, "extend": 5.0, "replace": 4.0, "cover": 3.0, "remix": 2.0, "stems": 1.5}
EDITS: dict[str, dict[str, Any]] = {
    "effect": {"effect": "Gain", "gain_db": 3},
    "extend": {"instruction": "longer", "extend_s": 30},
    "replace": {"instruction": "new bridge", "mask_start_s": 1, "mask_end_s": 5},
    "cover": {"instruction": "as jazz"},
    "remix": {"lyrics": "new words"},
}


async def _balance(http: httpx.AsyncClient, email: str = "alpha@example.com") -> tuple[Any, Any]:
    account = (await http.get(f"/accounts/{email}")).json()
    return account["credits_remaining"], account["tokens_remaining"]


async def _charged(http: httpx.AsyncClient, email: str = "alpha@example.com") -> Any:
    usage = (await http.get("/accounts/usage", params={"email": email})).json()
    return usage["summary"]["total_charged_credits"]


async def test_each_operation_spends_its_own_cost_everywhere_the_api_reports_it(
    make_sim: Any, connect: Any, finished_song: Any
) -> None:
    """A song and each edit spend their configured cost; effect is free; balance, usage and
    stats agree after every step, so a client can be checked against any of them."""
    sim: Simulator = make_sim(
        accounts=(SimAccount(email="alpha@example.com", max_jobs=16, credits=100.0),),
        operation_costs=COSTS,
    )
    async with connect(sim) as http:
        clip = (await finished_song(http, sim))["clips"][0]["clip"]
        spent = COSTS["song"]
        assert await _balance(http) == (100.0 - spent, (100.0 - spent) * 12)
        for op, fields in EDITS.items():
            body = {"operation": op, "clip": clip, "mode": "async", **fields}
            r = await http.post("/music/edit", json=body)
            assert r.status_code == 201, r.text
            spent += COSTS.get(op, 0.0)  # effect: free by default
            assert await _balance(http) == (100.0 - spent, (100.0 - spent) * 12), op
            assert await _charged(http) == spent, op
            assert sim.stats.credits_spent == {"alpha@example.com": spent}, op
        r = await http.post("/music/edit", json={"operation": "stems", "clip": clip})
        assert r.status_code == 200
        spent += COSTS["stems"]
        # Splitting the same clip again returns the same stems, and is not paid twice.
        r = await http.post("/music/edit", json={"operation": "stems", "clip": clip})
        assert r.status_code == 200
        assert await _balance(http) == (100.0 - spent, (100.0 - spent) * 12)
        assert sim.stats.total_credits_spent == spent == await _charged(http)
        assert sim.credits("alpha@example.com") == 100.0 - spent


async def test_usage_report_has_one_charged_row_per_job_that_adds_up(
    make_sim: Any, connect: Any
) -> None:
    """GET /accounts/usage: a producer-usage event per paid job, in tokens (credits x 12), and
    per_conversation spend that sums to total_charged_credits."""
    sim: Simulator = make_sim(operation_costs={"song": 3.0})
    async with connect(sim) as http:
        for n in range(3):
            r = await http.post("/music", json={"prompt": f"song {n}", "mode": "async"})
            assert r.status_code == 201
        usage = (await http.get("/accounts/usage", params={"email": "alpha@example.com"})).json()
    charged = [e for e in usage["events"] if e["type"] == "producer-usage"]
    assert [e["amount"] for e in charged] == [36.0, 36.0, 36.0]
    assert usage["summary"]["by_type_credits"]["producer-usage"] == 9.0
    assert usage["summary"]["total_charged_credits"] == 9.0
    songs = [c for c in usage["summary"]["per_conversation"] if c["title"] != "Credit grant"]
    assert len(songs) == 3 and sum(c["credits"] for c in songs) == 9.0


async def test_cancelled_and_failed_jobs_stay_charged_a_moderated_one_is_not(
    make_sim: Any, connect: Any
) -> None:
    """DELETE does not refund and a failure while rendering is charged
    (docs/api-notes.md#q32-failed-job-cost); a moderation refusal costs nothing."""
    sim: Simulator = make_sim(
        accounts=(SimAccount(email="alpha@example.com", max_jobs=16, credits=100.0),),
        job_failure_rate=1.0,
    )
    async with connect(sim) as http:
        cancelled = (await http.post("/music", json={"prompt": "a", "mode": "async"})).json()
        assert (await http.delete(f"/jobs/{cancelled['jobid']}")).status_code == 204
        failing = (await http.post("/music", json={"prompt": "b", "mode": "async"})).json()
        refused = await http.post("/music", json={"prompt": "[moderate] c", "mode": "async"})
        assert refused.status_code == 201
        sim.advance(200)
        for jobid in (cancelled["jobid"], failing["jobid"], refused.json()["jobid"]):
            assert (await http.get(f"/jobs/{jobid}")).json()["status"] == "failed"
        assert await _balance(http) == (80.0, 960.0)
        assert await _charged(http) == 20.0
    assert sim.stats.credits_spent == {"alpha@example.com": 20.0}


async def test_a_paid_operation_the_balance_cannot_cover_is_402_and_a_free_one_is_not(
    make_sim: Any, connect: Any, finished_song: Any
) -> None:
    """402 once the balance is below the operation's cost; nothing is charged for it, and a
    free effect still runs on an empty account."""
    sim: Simulator = make_sim(
        accounts=(SimAccount(email="alpha@example.com", max_jobs=16, credits=12.0),),
        operation_costs={"song": 10.0, "extend": 5.0},
    )
    async with connect(sim) as http:
        clip = (await finished_song(http, sim))["clips"][0]["clip"]
        r = await http.post("/music", json={"prompt": "again", "mode": "async"})
        assert r.status_code == 402 and "insufficient credits" in r.json()["error"]
        r = await http.post(
            "/music/edit",
            json={"operation": "extend", "clip": clip, "instruction": "more", "mode": "async"},
        )
        assert r.status_code == 402
        r = await http.post(
            "/music/edit",
            json={"operation": "effect", "clip": clip, "mode": "async", **EDITS["effect"]},
        )
        assert r.status_code == 201
        assert await _balance(http) == (2.0, 24.0)
    assert sim.stats.credits_spent == {"alpha@example.com": 10.0}


async def test_lyrics_are_free_by_default_and_charged_when_given_a_cost(
    make_sim: Any, connect: Any
) -> None:
    """Lyrics follow docs/api-notes.md#q24-lyrics-cost (free), but a test can price them, and
    then they answer credits_burned and 402 like any paid call."""
    free: Simulator = make_sim()
    async with connect(free) as http:
        body = (await http.post("/music/lyrics", json={"prompt": "rain"})).json()
        assert body["credits_burned"] == 0 and await _balance(http) == (1000.0, 12000.0)
    priced: Simulator = make_sim(
        accounts=(SimAccount(email="alpha@example.com", credits=1.5),),
        operation_costs={"lyrics": 1.0},
    )
    async with connect(priced) as http:
        body = (await http.post("/music/lyrics", json={"prompt": "rain"})).json()
        assert body["credits_burned"] == 1.0 and await _balance(http) == (0.5, 6.0)
        assert (await http.post("/music/lyrics", json={"prompt": "snow"})).status_code == 402
        assert await _charged(http) == 1.0


def test_unknown_operations_and_negative_costs_are_refused() -> None:
    """A typo in a cost table would silently leave an operation free: refuse it."""
    with pytest.raises(ValueError, match="unknown operations"):
        Simulator(operation_costs={"songs": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        Simulator(operation_costs={"song": -1.0})


async def test_stats_split_the_spend_per_account(make_sim: Any, connect: Any) -> None:
    """stats.credits_spent is per account: what each one was charged, and nothing for an
    account that ran no job."""
    sim: Simulator = make_sim(
        accounts=(
            SimAccount(email="a@example.com", max_jobs=2),
            SimAccount(email="b@example.com", max_jobs=2),
            SimAccount(email="idle@example.com", max_jobs=2),
        )
    )
    async with connect(sim) as http:
        for email in ("a@example.com", "a@example.com", "b@example.com"):
            body = {"prompt": "x", "mode": "async", "email": email}
            assert (await http.post("/music", json=body)).status_code == 201
    assert sim.stats.credits_spent == {"a@example.com": 20.0, "b@example.com": 10.0}
    assert sim.stats.snapshot()["credits_spent"] == sim.stats.credits_spent
