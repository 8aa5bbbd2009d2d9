"""The free dry run: a batch's cost, balances, capacity and time, with nothing paid sent."""

from __future__ import annotations

import io
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flowmusic_async import BatchEstimate, SongRequest, Timing, estimate_batch
from flowmusic_async._cli import run
from flowmusic_async._spend import CostTable
from flowmusic_async.testing import SimAccount, Simulator

pytestmark = pytest.mark.anyio

SCALE = 0.002
ACCOUNTS = (
    SimAccount(email="alpha@example.com", max_jobs=3, credits=1000.0),
    SimAccount(email="beta@example.com", max_jobs=2, credits=55.0),
    SimAccount(email="broken@example.com", max_jobs=4, error="refresh token rejected"),
)
PROMPTS = [f"song number {n}" for n in range(12)]


def _sim(**options: Any) -> Simulator:
    options.setdefault("accounts", ACCOUNTS)
    return Simulator(time_scale=SCALE, seed=5, **options)


def _balances(sim: Simulator) -> dict[str, float]:
    return {email: sim.credits(email) for email in sim.world.accounts}


def _paid_requests(sim: Simulator) -> dict[str, int]:
    return {
        f"{key} {status}": n
        for (key, status), n in sim.stats.requests.items()
        if not key.startswith("GET ")
    }


async def test_the_estimate_reads_accounts_and_sends_nothing_paid() -> None:
    """Songs, cost, budget, balances, maxJobs and time, from one GET /accounts and one
    GET /accounts/{email} per account: no POST, no job, every balance unchanged."""
    sim = _sim()
    before = _balances(sim)
    requests: list[Any] = [
        *PROMPTS[:10],
        SongRequest(prompt="as a request", instrumental=True),
        {"prompt": "as a mapping", "ghostwriter": "pro"},
        {"prompt": "bad", "ghostwriter": "maximal"},
    ]
    async with sim.client() as fm:
        estimate = await estimate_batch(fm.accounts, requests, budget=100)
    assert isinstance(estimate, BatchEstimate)
    assert estimate.songs == 12
    assert [(bad.index, bad.field) for bad in estimate.invalid] == [(12, "ghostwriter")]
    assert (estimate.cost_per_song, estimate.cost_source) == (10.0, "default")
    assert estimate.total_credits == 120.0
    assert estimate.budget == 100 and estimate.within_budget is False
    assert estimate.songs_within_budget == 10
    by_email = {a.email: a for a in estimate.accounts}
    assert by_email["alpha@example.com"].credits_remaining == 1000.0
    assert by_email["beta@example.com"].songs_affordable == 5
    assert by_email["broken@example.com"].error == "refresh token rejected"
    assert by_email["broken@example.com"].credits_remaining is None
    assert estimate.credits_available == 1055.0 and estimate.within_balances is True
    assert estimate.slots == 5  # the broken account's 4 slots take no job
    # 12 songs on 5 slots: 3 rounds of a typical song (Timing's 95 s by default).
    assert estimate.song_seconds == Timing().typical_job_seconds == 95.0
    assert estimate.duration_seconds == math.ceil(12 / 5) * 95.0
    assert sim.stats.jobs_created == 0 and sim.stats.credits_spent == {}
    assert _balances(sim) == before
    assert _paid_requests(sim) == {}
    reads = {f"{k} {s}": n for (k, s), n in sim.stats.requests.items()}
    assert reads == {"GET /accounts 200": 1, "GET /accounts/{email} 200": 3}


async def test_the_estimate_equals_what_the_same_batch_then_spends() -> None:
    """Dry run, then the batch for real on the same simulator: the credits the simulator
    charged are exactly the estimate (the songs' price learned or configured alike)."""
    for costs, sim in (
        (None, _sim()),
        (CostTable({"song": 7.5}), _sim(song_credits=7.5)),
    ):
        async with sim.client() as fm:
            estimate = await estimate_batch(fm.accounts, PROMPTS, costs=costs)
            assert sim.stats.jobs_created == 0
            async with fm.generate_many(PROMPTS) as outcomes:
                results = [outcome async for outcome in outcomes]
        assert len(results) == len(PROMPTS) and all(r.ok for r in results)
        assert sim.stats.jobs_created == estimate.songs == len(PROMPTS)
        assert sim.stats.total_credits_spent == estimate.total_credits
        usable = sim.credits("alpha@example.com") + sim.credits("beta@example.com")
        assert estimate.credits_available is not None
        assert usable == estimate.credits_available - estimate.total_credits


async def test_an_async_iterable_of_requests_is_estimated_too() -> None:
    """generate_many takes async iterables; so does the dry run."""

    async def requests() -> AsyncIterator[str]:
        for prompt in PROMPTS[:4]:
            yield prompt

    sim = _sim(accounts=(SimAccount(email="solo@example.com", max_jobs=1, credits=15.0),))
    async with sim.client() as fm:
        estimate = await estimate_batch(fm.accounts, requests(), timing=Timing())
    assert estimate.songs == 4 and estimate.within_balances is False
    assert estimate.duration_seconds == 4 * 95.0 and estimate.budget is None
    assert estimate.within_budget is None and estimate.songs_within_budget is None


# ----- the CLI ---------------------------------------------------------------------------------


async def _cli(sim: Simulator, *argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    prefix = ["--token", sim.token, "--base-url", sim.base_url, "--time-scale", str(SCALE)]
    code = await run([*prefix, *argv], transport=sim.transport(), stdout=stdout, stderr=stderr)
    for text in (stdout.getvalue(), stderr.getvalue()):
        assert sim.token not in text
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


async def test_cli_dry_run_prints_the_estimate_and_sends_nothing_paid(prompts: Path) -> None:
    """`flowmusic batch prompts.txt --dry-run --budget 100`: the figures a person needs before
    paying, and no POST."""
    sim = _sim()
    code, out, _ = await _cli(sim, "batch", str(prompts), "--dry-run", "--budget", "100")
    assert code == 0
    assert "dry run: nothing that costs credits was sent" in out
    assert "songs: 12" in out
    assert "cost: 120 credits (10 per song, default figure)" in out
    assert "budget: 100 credits, over it (10 songs fit)" in out
    assert "accounts: 2 usable of 3, 5 songs at once (maxJobs), 1055 credits, enough" in out
    assert "beta@example.com" in out and "refresh token rejected" in out
    assert "time: about 0.6 s (12 songs, 5 at once, 0.2 s per song from Timing." in out
    assert sim.stats.jobs_created == 0 and _paid_requests(sim) == {}


async def test_cli_dry_run_json_is_one_document(prompts: Path) -> None:
    """--json: the estimate as one JSON document, for scripts."""
    sim = _sim()
    code, out, _ = await _cli(sim, "--json", "batch", str(prompts), "--dry-run")
    assert code == 0
    document = json.loads(out)
    assert document["songs"] == 12 and document["total_credits"] == 120.0
    assert document["budget"] is None and document["slots"] == 5
    assert [a["email"] for a in document["accounts"]] == [a.email for a in ACCOUNTS]
    assert sim.stats.jobs_created == 0


@pytest.mark.parametrize("budget", ["-1", "nan", "inf", "lots"])
async def test_cli_budget_must_be_a_number_of_credits(
    prompts: Path, budget: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A budget that is not a finite number >= 0 is a usage error (exit 2), nothing sent."""
    sim = _sim()
    code, _, err = await _cli(sim, "batch", str(prompts), "--dry-run", "--budget", budget)
    err += capsys.readouterr().err  # argparse writes its usage errors to sys.stderr
    assert code == 2 and "argument --budget: expected a number of credits" in err
    assert sim.stats.requests == {}


async def test_cli_budget_on_a_real_run_stops_paying_at_the_budget(prompts: Path) -> None:
    """`flowmusic batch --budget 100`: ten songs of 10 credits are paid, the other two end
    unsent with the budget named, and the summary says what was spent."""
    sim = _sim()
    code, out, _ = await _cli(
        sim, "--json", "batch", str(prompts), "--budget", "100", "--no-journal"
    )
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    summary = next(line for line in lines if line.get("type") == "summary")
    assert sim.stats.jobs_created == 10 and sim.stats.total_credits_spent == 100.0
    assert summary["ok"] == 10 and summary["failed"] == 2
    assert summary["credits_spent"] == 100.0
    refused = [line for line in lines if line.get("error") and "BudgetExceeded" in str(line)]
    assert len(refused) == 2
    assert code != 0  # two songs did not get made
