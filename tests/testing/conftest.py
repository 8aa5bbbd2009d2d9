"""Fixtures for the simulator's own tests: a fast simulator and raw httpx clients on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest

from flowmusic_async.testing import SimAccount, Simulator

OTHER_TOKEN = "user:2002-anotheruserstoken"
Connect = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@asynccontextmanager
async def _connect(
    sim: Simulator, *, token: str | None = None, base_url: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {token or sim.token}"}
    if base_url is None:
        client = httpx.AsyncClient(
            transport=sim.transport(), base_url=sim.base_url, headers=headers
        )
    else:
        client = httpx.AsyncClient(base_url=base_url, headers=headers)
    async with client:
        yield client


@pytest.fixture
def connect() -> Connect:
    """connect(sim, token=None, base_url=None): an authorised raw httpx client."""
    return _connect


@pytest.fixture
def make_sim() -> Callable[..., Simulator]:
    """A simulator factory defaulting to a fast clock and two tokens (for 403 tests)."""

    def make(**kwargs: Any) -> Simulator:
        kwargs.setdefault("time_scale", 0.001)
        kwargs.setdefault("tokens", ("user:1001-simulatortoken", OTHER_TOKEN))
        kwargs.setdefault("accounts", (SimAccount(email="alpha@example.com", max_jobs=4),))
        return Simulator(**kwargs)

    return make


@pytest.fixture
def sim(make_sim: Callable[..., Simulator]) -> Simulator:
    return make_sim()


@pytest.fixture
async def http(sim: Simulator, connect: Connect) -> AsyncIterator[httpx.AsyncClient]:
    async with connect(sim) as client:
        yield client


async def _finished_song(http: httpx.AsyncClient, sim: Simulator, **body: Any) -> dict[str, Any]:
    r = await http.post("/music", json={"prompt": "a song", "mode": "async", **body})
    assert r.status_code == 201, r.text
    sim.advance(200)
    r = await http.get(f"/jobs/{r.json()['jobid']}")
    assert r.json()["status"] == "completed"
    record: dict[str, Any] = r.json()
    return record


@pytest.fixture
def finished_song() -> Callable[..., Any]:
    """await finished_song(http, sim, **body): an async song run to completion by a clock jump."""
    return _finished_song
