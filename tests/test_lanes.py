"""Lanes: a transport of several small httpx pools, filled lowest first, behind one count of places.

The point of lanes is CPU (httpcore walks every connection of its pool on each request), and
that is measured in benchmarks/. What is tested here is what must stay true while doing it:
no more requests at once than there are places, the lowest lane with room first, a place
given back on every path (the response closed, an error, a cancellation), a paid POST's place
taken ahead used once by the request that carries it, downloads never queued behind API
requests, and the caller's own client (and proxies from the environment) respected.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from mock_api import TOKEN

from flowmusic_async import FlowMusic
from flowmusic_async._aiohttp import aiohttp_available
from flowmusic_async._client import _DownloadAPI
from flowmusic_async._lanes import (
    API_LANES,
    PER_LANE,
    LaneTransport,
    Place,
    open_clients,
    take_place,
)

pytestmark = pytest.mark.anyio


class _Pool(httpx.AsyncBaseTransport):
    """A lane's pool that answers at once, or when `release` is set, and records its closing."""

    def __init__(self, release: anyio.Event | None = None) -> None:
        self.release = release
        self.sent = 0
        self.closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        if self.release is not None:
            await self.release.wait()
        if request.url.path == "/boom":
            raise httpx.ConnectError("boom", request=request)
        if request.url.path == "/whole":
            return httpx.Response(200, content=b"{}")  # read at once, as a MockTransport's
        return httpx.Response(200, stream=_Streamed())

    async def aclose(self) -> None:
        self.closed = True


class _Streamed(httpx.AsyncByteStream):
    """A body that streams, as one from a socket does: open until it is closed."""

    async def __aiter__(self) -> Any:
        yield b"{}"


def _counting_lanes(
    count: int, per_lane: int, release: anyio.Event | None = None
) -> tuple[LaneTransport, list[_Pool], httpx.AsyncClient]:
    made: list[_Pool] = []

    def make() -> _Pool:
        made.append(_Pool(release))
        return made[-1]

    lanes = LaneTransport(make, count=count, per_lane=per_lane)
    return lanes, made, httpx.AsyncClient(transport=lanes)


async def _open(client: httpx.AsyncClient, path: str = "/", **extensions: Any) -> httpx.Response:
    request = client.build_request("GET", "http://lanes.test" + path, extensions=extensions)
    return await client.send(request, stream=True)


@pytest.mark.anyio_backends("asyncio", "trio")
async def test_lowest_lane_with_room_first_and_lanes_made_on_demand() -> None:
    """Light traffic stays in the first lane; a lane is built only when the ones below are
    full, and a lane is held until its response is closed."""
    lanes, made, client = _counting_lanes(count=3, per_lane=2)
    assert len(made) == 1  # the first lane is built at once, the others wait for traffic
    a, b = await _open(client), await _open(client)
    assert made[0].sent == 2 and len(made) == 1
    c = await _open(client)
    assert made[1].sent == 1 and len(made) == 2
    await c.aclose()
    d = await _open(client)
    assert made[1].sent == 2 and len(made) == 2  # reused, not a new lane
    for response in (a, b, d):
        await response.aclose()
    await (await _open(client)).aclose()
    assert made[0].sent == 3
    assert lanes.in_flight == 0
    await client.aclose()
    assert all(pool.closed for pool in made)


@pytest.mark.anyio_backends("asyncio", "trio")
async def test_a_full_set_of_places_makes_the_next_request_wait() -> None:
    """count * per_lane requests at once, never more: the next one waits for a release."""
    release = anyio.Event()
    lanes, made, client = _counting_lanes(count=2, per_lane=2, release=release)
    assert lanes.places == 4
    got_fifth = anyio.Event()

    async def hold() -> None:
        await client.get("http://lanes.test/")

    async def fifth() -> None:
        await client.get("http://lanes.test/")
        got_fifth.set()

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(hold)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(fifth)
        await anyio.wait_all_tasks_blocked()
        assert sum(pool.sent for pool in made) == 4 and not got_fifth.is_set()
        assert lanes.in_flight == 4
        release.set()
        with anyio.fail_after(5):
            await got_fifth.wait()
    assert lanes.in_flight == 0
    await client.aclose()


@pytest.mark.anyio_backends("asyncio", "trio")
async def test_a_place_is_given_back_when_the_exchange_fails_or_is_cancelled() -> None:
    """An error or a cancellation in the pool, or a response closed unread, must not leak
    the place (else: a slow hang)."""
    release = anyio.Event()
    lanes, _, client = _counting_lanes(count=1, per_lane=1, release=release)
    release.set()
    with pytest.raises(httpx.ConnectError):
        await client.get("http://lanes.test/boom")
    assert lanes.in_flight == 0
    response = await _open(client)
    assert lanes.in_flight == 1  # held while the body is open
    await response.aclose()
    assert lanes.in_flight == 0
    whole = await _open(client, "/whole")
    assert lanes.in_flight == 0  # a body read when it was built: over at once
    await whole.aclose()
    never = anyio.Event()
    lanes._pools[0] = _Pool(never)
    with anyio.move_on_after(0.01):
        await client.get("http://lanes.test/")
    assert lanes.in_flight == 0
    lanes._pools[0] = _Pool()
    with anyio.fail_after(5):
        await client.get("http://lanes.test/")  # the only place is free again
    await client.aclose()


async def test_closed_lanes_build_no_new_pool() -> None:
    """A request that outlives `aclose` (a download in another task) must not open a pool
    nobody will close: it goes to the first, closed, one."""
    lanes, made, client = _counting_lanes(count=4, per_lane=1)
    await lanes.aclose()
    a, b = await _open(client), await _open(client)
    assert made[0].sent == 2 and len(made) == 1
    await a.aclose()
    await b.aclose()


async def test_a_lent_client_is_used_as_it_is_and_never_closed() -> None:
    """A caller's httpx client serves the API and media as it is: no lanes of ours, no place
    to take ahead, and closing leaves it open."""
    async with httpx.AsyncClient() as mine:
        clients = open_clients(user_client=mine, transport=None, timeout=httpx.Timeout(5))
        assert clients.api is clients.media is mine and clients.lanes is None
        place = clients.place_ahead()
        await place.take()  # nothing to wait for
        place.give_back()
        await clients.aclose()
        assert not mine.is_closed


async def test_a_lent_transport_is_one_lane_of_each_client_and_closed_once() -> None:
    """The caller's transport (tests, the simulator) is the one lane of the API's transport
    and of the media's, and is closed with the API's client."""
    closed: list[int] = []

    class Lent(httpx.MockTransport):
        async def aclose(self) -> None:
            closed.append(1)

    lent = Lent(lambda request: httpx.Response(200))
    clients = open_clients(user_client=None, transport=lent, timeout=httpx.Timeout(5))
    assert clients.api is not clients.media
    assert clients.lanes is not None and clients.lanes.places == API_LANES * PER_LANE
    assert (await clients.media.get("https://cdn.example/a.m4a")).status_code == 200
    await clients.aclose()
    assert closed == [1]


async def test_lanes_read_proxy_variables_only_when_some_are_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Building the clients must stay cheap, but a proxy set in the environment still applies."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    clients = open_clients(user_client=None, transport=None, timeout=httpx.Timeout(5))
    assert clients.lanes is not None and clients.lanes.places == API_LANES * PER_LANE
    assert clients.api.trust_env is False and clients.media.trust_env is False
    await clients.aclose()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    clients = open_clients(user_client=None, transport=None, timeout=httpx.Timeout(5))
    assert clients.api.trust_env is True and clients.media.trust_env is True
    await clients.aclose()


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


@pytest.mark.anyio_backends("asyncio", "trio")
async def test_a_place_taken_ahead_serves_the_request_that_carries_it_once() -> None:
    """A paid POST takes its place before it is on its way (while it can still be abandoned):
    the request carrying it then uses that place rather than a second one, only once, and a
    place nobody used is given back."""
    lanes, _, client = _counting_lanes(count=1, per_lane=2)
    ahead = Place(lanes)
    await ahead.take()
    assert lanes.in_flight == 1
    first = await _open(client, **ahead.extensions)
    assert lanes.in_flight == 1  # the place taken ahead, not a new one
    second = await _open(client, **ahead.extensions)  # used once: this one takes its own
    assert lanes.in_flight == 2
    await first.aclose()
    await second.aclose()
    assert lanes.in_flight == 0  # the requests gave both back
    ahead.give_back()  # nothing left to give back
    assert lanes.in_flight == 0
    unused = Place(lanes)
    await unused.take()
    unused.give_back()
    assert lanes.in_flight == 0
    alone = await _open(client)  # a request without a place takes its own
    assert lanes.in_flight == 1
    await alone.aclose()
    await client.aclose()


@pytest.mark.anyio_backends("asyncio", "trio")
async def test_a_place_taken_ahead_is_never_picked_up_implicitly() -> None:
    """Only the request that carries the place uses it: another request of the same task
    takes a place of its own (no hand-over through the task's context), and a place of other
    lanes is ignored."""
    lanes, _, client = _counting_lanes(count=1, per_lane=3)
    other, _, other_client = _counting_lanes(count=1, per_lane=1)
    ahead = Place(lanes)
    await ahead.take()
    plain = await _open(client)
    assert lanes.in_flight == 2
    elsewhere = await _open(other_client, **ahead.extensions)
    assert other.in_flight == 1 and lanes.in_flight == 2  # not its place to use
    carried = await _open(client, **ahead.extensions)
    assert lanes.in_flight == 2  # the place ahead, at last
    for response in (plain, elsewhere, carried):
        await response.aclose()
    ahead.give_back()
    assert lanes.in_flight == 0 and other.in_flight == 0
    await client.aclose()
    await other_client.aclose()


# ----- the aiohttp backend (the optional extra) -------------------------------------------------

aiohttp_only = pytest.mark.skipif(
    not aiohttp_available(), reason="the aiohttp extra is not installed"
)


@asynccontextmanager
async def _answer_then(behaviour: str) -> AsyncIterator[str]:
    """A loopback server that reads one request, then closes ("close") or drips ("hang")."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()  # the request has arrived: it may have created a job
            if behaviour == "hang":
                await anyio.sleep(30)

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        try:
            yield f"http://127.0.0.1:{port}/v1/flowmusic"
        finally:
            tg.cancel_scope.cancel()  # `serve` closes the listener as it ends


@aiohttp_only
@pytest.mark.anyio_backends("asyncio")
@pytest.mark.parametrize("behaviour", ["close", "hang"])
async def test_aiohttp_says_a_paid_post_that_left_may_have_been_sent(behaviour: str) -> None:
    """httpx-aiohttp maps a server that hangs up after the request left ("close": aiohttp's
    ServerDisconnectedError) to `httpx.ConnectTimeout`, "not sent": a paid POST would then be
    sent again. Ours says it may have been sent (this case fails without `_remapped`); a read
    that times out ("hang") is mapped right upstream, and stays so."""
    from flowmusic_async import TransportError

    async with _answer_then(behaviour) as url:
        fm = FlowMusic(token=TOKEN, base_url=url, http_backend="aiohttp", http_timeout=0.5)
        async with fm:
            with pytest.raises(TransportError) as caught:
                await fm.music.send_job("/music", {"prompt": "x", "mode": "async"})
    assert caught.value.maybe_sent is True


@aiohttp_only
@pytest.mark.anyio_backends("asyncio")
async def test_aiohttp_says_a_refused_connection_sent_nothing() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # nobody listens there any more
    from flowmusic_async import TransportError

    fm = FlowMusic(token=TOKEN, base_url=f"http://127.0.0.1:{port}", http_backend="aiohttp")
    async with fm:
        with pytest.raises(TransportError) as caught:
            await fm.music.send_job("/music", {"prompt": "x", "mode": "async"})
    assert caught.value.maybe_sent is False


@aiohttp_only
@pytest.mark.anyio_backends("asyncio")
async def test_aiohttp_backend_runs_a_song_behind_the_same_places() -> None:
    """A song end to end over loopback, through aiohttp, with the places (and so a paid
    POST's place ahead) in front of its pool."""
    from flowmusic_async import Timing
    from flowmusic_async.testing import SimAccount, Simulator

    sim = Simulator(accounts=(SimAccount(email="a@example.com", max_jobs=2),), time_scale=0.01)
    async with sim.serve() as url:
        fm = FlowMusic(
            token=sim.token, base_url=url, http_backend="aiohttp", timing=Timing.scaled(0.01)
        )
        async with fm:
            clients = fm._clients
            assert clients is not None and clients.lanes is not None
            assert clients.lanes.places == API_LANES * PER_LANE
            assert type(clients.lanes._pools[0]).__name__ == "_SafeAiohttpTransport"
            job = await fm.generate("a song through aiohttp")
            assert job.status == "completed"
            assert clients.lanes.in_flight == 0


@aiohttp_only
@pytest.mark.anyio_backends("trio")
async def test_aiohttp_backend_is_refused_under_trio_before_anything_opens() -> None:
    from flowmusic_async import ConfigurationError

    fm = FlowMusic(token=TOKEN, http_backend="aiohttp")
    with pytest.raises(ConfigurationError, match="asyncio only"):
        await fm.open()
    await fm.aclose()
    # "auto" never picks aiohttp there: the lanes serve trio.
    async with FlowMusic(token=TOKEN, http_backend="auto") as fm:
        assert fm._clients is not None and fm._clients.lanes is not None
        assert type(fm._clients.lanes._pools[0]) is httpx.AsyncHTTPTransport


def test_http_backend_is_checked_when_the_client_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flowmusic_async import ConfigurationError

    with pytest.raises(ConfigurationError, match="http_backend must be one of"):
        FlowMusic(token=TOKEN, http_backend="curl")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not both"):
        FlowMusic(token=TOKEN, http_backend="aiohttp", transport=httpx.MockTransport(_unused))
    monkeypatch.setattr("flowmusic_async._lanes.aiohttp_available", lambda: False)
    with pytest.raises(ConfigurationError, match="pip install httpx-aiohttp"):
        FlowMusic(token=TOKEN, http_backend="aiohttp")
    FlowMusic(token=TOKEN, http_backend="httpx")


def _unused(request: httpx.Request) -> httpx.Response:
    raise AssertionError("the client must refuse before sending")  # pragma: no cover
