"""Lanes: several small httpx pools, filled lowest first, behind one count of free places.

The point of lanes is CPU (httpcore walks every connection of its pool on each request), and
that is measured in benchmarks/. What is tested here is what must stay true while doing it:
no more requests at once than there are places, the lowest lane with room first, a place
given back on every path, downloads never queued behind API requests, and the caller's own
client (and proxies from the environment) respected.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from mock_api import TOKEN

from flowmusic_async import FlowMusic
from flowmusic_async._client import _DownloadAPI
from flowmusic_async._lanes import API_LANES, PER_LANE, Lanes, open_lanes, take_place

pytestmark = pytest.mark.anyio
BACKENDS = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])


def _counting_lanes(count: int, per_lane: int) -> tuple[Lanes, list[httpx.AsyncClient]]:
    made: list[httpx.AsyncClient] = []

    def make() -> httpx.AsyncClient:
        made.append(httpx.AsyncClient())
        return made[-1]

    return Lanes(make, count=count, per_lane=per_lane), made


@BACKENDS
async def test_lowest_lane_with_room_first_and_lanes_made_on_demand() -> None:
    """Light traffic stays in the first lane; a lane is built only when the ones below are full."""
    lanes, made = _counting_lanes(count=3, per_lane=2)
    assert len(made) == 1  # the first lane is built at once, the others wait for traffic
    async with lanes.lease() as a, lanes.lease() as b:
        assert a is b is made[0]
        async with lanes.lease() as c:
            assert c is made[1] and len(made) == 2
        async with lanes.lease() as d:
            assert d is made[1] and len(made) == 2  # reused, not a new lane
    async with lanes.lease() as e:
        assert e is made[0]
    await lanes.aclose()
    assert all(client.is_closed for client in made)


@BACKENDS
async def test_a_full_set_of_places_makes_the_next_request_wait() -> None:
    """count * per_lane leases at once, never more: the next one waits for a release."""
    lanes, _ = _counting_lanes(count=2, per_lane=2)
    assert lanes.places == 4
    holding: list[Any] = []
    release = anyio.Event()
    got_fifth = anyio.Event()

    async def hold() -> None:
        async with lanes.lease() as client:
            holding.append(client)
            await release.wait()

    async def fifth() -> None:
        async with lanes.lease():
            got_fifth.set()

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(hold)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(fifth)
        await anyio.wait_all_tasks_blocked()
        assert len(holding) == 4 and not got_fifth.is_set()
        release.set()
        with anyio.fail_after(5):
            await got_fifth.wait()
    await lanes.aclose()


@BACKENDS
async def test_a_place_is_given_back_when_the_exchange_fails_or_is_cancelled() -> None:
    """An error or a cancellation inside a lease must not leak the place (else: a slow hang)."""
    lanes, _ = _counting_lanes(count=1, per_lane=1)
    with pytest.raises(RuntimeError):
        async with lanes.lease():
            raise RuntimeError("boom")
    with anyio.move_on_after(0.01):
        async with lanes.lease():
            await anyio.sleep(10)
    with anyio.fail_after(5):
        async with lanes.lease():
            pass  # the only place is free again
    await lanes.aclose()


async def test_closed_lanes_build_no_new_client() -> None:
    """A request that outlives `aclose` (a download in another task) must not open a client
    nobody will close: it gets a closed one, and httpx refuses to send."""
    lanes, made = _counting_lanes(count=4, per_lane=1)
    await lanes.aclose()
    async with lanes.lease() as a, lanes.lease() as b:
        assert a is b is made[0] and a.is_closed
    assert len(made) == 1


async def test_a_lent_client_is_never_closed() -> None:
    """`single(owned=False)` wraps the caller's client: closing the lanes leaves it open."""
    async with httpx.AsyncClient() as mine:
        lanes = Lanes.single(mine, places=3, owned=False)
        async with lanes.lease() as client:
            assert client is mine
        await lanes.aclose()
        assert not mine.is_closed


async def test_lanes_read_proxy_variables_only_when_some_are_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Building 48 clients must stay cheap, but a proxy set in the environment still applies."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    api, media = open_lanes(user_client=None, transport=None, timeout=httpx.Timeout(5))
    assert api.places == API_LANES * PER_LANE and api.first.trust_env is False
    await api.aclose()
    await media.aclose()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    api, media = open_lanes(user_client=None, transport=None, timeout=httpx.Timeout(5))
    assert api.first.trust_env is True
    await api.aclose()
    await media.aclose()


async def test_at_most_128_api_requests_reach_the_transport_at_once() -> None:
    """A burst of 300 reads waits in anyio, not in httpx: 128 reach the server at once."""
    now = 0
    most = 0
    release = anyio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal now, most
        now += 1
        most = max(most, now)
        await release.wait()
        now -= 1
        return httpx.Response(200, json={})

    fm = FlowMusic(token=TOKEN, transport=httpx.MockTransport(handler))
    async with fm, anyio.create_task_group() as tg:
        for _ in range(300):
            tg.start_soon(fm.jobs.list)
        with anyio.fail_after(5):
            while now < 128:
                await anyio.sleep(0.01)
        await anyio.sleep(0.05)
        assert now == most == API_LANES * PER_LANE
        release.set()


async def test_downloads_do_not_wait_behind_api_requests() -> None:
    """Media has lanes of its own: with every API place taken, a media GET still goes out."""
    release = anyio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(".m4a"):
            return httpx.Response(200, content=b"audio")
        await release.wait()
        return httpx.Response(200, json={})

    fm = FlowMusic(token=TOKEN, transport=httpx.MockTransport(handler))
    async with fm, anyio.create_task_group() as tg:
        for _ in range(API_LANES * PER_LANE + 10):
            tg.start_soon(fm.jobs.list)
        await anyio.sleep(0.05)
        with anyio.fail_after(5):
            async with _DownloadAPI(fm).media_client() as client:
                answer = await client.get("https://cdn.example/clip.m4a")
        assert answer.content == b"audio"
        release.set()


async def test_a_free_place_is_taken_without_yielding_and_a_full_one_waits_its_turn() -> None:
    """anyio's limiter yields to the loop even when a place is free: a task step per request
    for nothing, which crowded every turn of a busy batch's loop. `take_place` does not."""
    limiter = anyio.CapacityLimiter(1)
    first, second = object(), object()
    others_ran: list[str] = []
    holders: list[object] = []

    async def other() -> None:
        others_ran.append("other")

    async def wait_for_place() -> None:
        await take_place(limiter, second)
        holders.append(second)

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        await take_place(limiter, first)
        assert others_ran == []  # no turn of the loop was given away
        tg.start_soon(wait_for_place)
        await anyio.wait_all_tasks_blocked()
        assert holders == [] and others_ran == ["other"]  # full: it waits
        limiter.release_on_behalf_of(first)
        await anyio.wait_all_tasks_blocked()
        assert holders == [second]
    limiter.release_on_behalf_of(second)


@BACKENDS
async def test_a_place_taken_ahead_serves_the_next_lease_of_its_task_once() -> None:
    """A paid POST takes its place before it is on its way (while it can still be abandoned):
    the request then uses that place rather than a second one, and a place nobody used is
    given back."""
    lanes, _ = _counting_lanes(count=1, per_lane=2)
    ahead = lanes.place_ahead()
    await ahead.take()
    assert lanes._places.borrowed_tokens == 1
    async with lanes.lease():
        assert lanes._places.borrowed_tokens == 1  # the place taken ahead, not a new one
        async with lanes.lease():  # a second request of the task takes a place of its own
            assert lanes._places.borrowed_tokens == 2
    ahead.give_back()  # the lease gave it back already
    assert lanes._places.borrowed_tokens == 0
    unused = lanes.place_ahead()
    await unused.take()
    unused.give_back()
    assert lanes._places.borrowed_tokens == 0
    async with lanes.lease():  # no place ahead left over for it
        assert lanes._places.borrowed_tokens == 1
    await lanes.aclose()
