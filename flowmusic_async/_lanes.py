"""Lanes: an httpx transport of several small connection pools instead of one big one.

httpcore's connection pool walks every connection it holds, and every request queued in it,
each time a request starts or ends, and for each idle connection it asks the socket whether it
is readable (two syscalls). With the 64 connections a busy batch needs in one pool, that walk
was 40% of the client's CPU (docs/benchmarks.md, "What changed in this round"; upstream:
encode/httpcore#929, closed without a fix, and encode/httpx#3215, open). `LaneTransport` is an
ordinary `httpx.AsyncBaseTransport` that one `httpx.AsyncClient` sends through: a request
first waits for a free place in anyio (O(1), never in httpcore's queue), then goes to the
lowest lane (pool) with room, so each walk sees at most one lane's connections, and under
light traffic only the first lane has any. The place and the lane are held until the response
stream is closed, so a streamed download counts until its reader closes it.

A paid POST takes its place ahead (`Place`, while it can still be abandoned: a POST waiting for
a place has not left) and hands it to its request explicitly, as the request extension
``"flowmusic_place"``; the transport uses it once instead of taking a second place. Nothing
else knows the lanes exist: `HttpCore` and downloads send through plain httpx clients.
"""

from __future__ import annotations

import asyncio
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import anyio
import httpx

from ._aiohttp import aiohttp_available, aiohttp_transport
from ._errors import ConfigurationError
from ._sniffio import remember_missing_sniffio

__all__ = [
    "PLACE_EXTENSION",
    "Clients",
    "HttpBackend",
    "LaneTransport",
    "Place",
    "check_http_backend",
    "open_clients",
    "take_place",
]

HttpBackend = Literal["auto", "httpx", "aiohttp"]
_BACKENDS = ("auto", "httpx", "aiohttp")

# The request extension a paid POST's `Place` travels in (httpx passes extensions through).
PLACE_EXTENSION = "flowmusic_place"


async def take_place(limiter: anyio.CapacityLimiter, borrower: object) -> None:
    """Take a place of `limiter` for `borrower`, waiting only if none is free.

    anyio's `acquire_on_behalf_of` yields to the event loop even when a place is free: a task
    step per request for nothing, and in a busy batch those steps crowd every turn of the loop.
    """
    try:
        limiter.acquire_on_behalf_of_nowait(borrower)
    except _would_block():
        await limiter.acquire_on_behalf_of(borrower)


def _would_block() -> tuple[type[BaseException], ...]:
    """What a full limiter raises: under trio, anyio 4.6 (our lowest) lets trio's own
    `WouldBlock` through instead of its own."""
    trio = sys.modules.get("trio")
    return (anyio.WouldBlock,) if trio is None else (anyio.WouldBlock, trio.WouldBlock)


class Place:
    """A place among the requests in flight, taken before the request that will use it.

    A paid POST takes its place while it can still be abandoned (`Submitter._reserved`): a POST
    waiting for a place has not left, and once its caller is gone it must never leave. The
    request then carries it (`extensions`) and the transport uses it instead of taking one;
    `give_back` returns it if no request did. Over a client without lanes (one the caller
    passed) there is nothing to take: `take` returns at once and the client's own limits apply.
    """

    __slots__ = ("_held", "_lanes")

    def __init__(self, lanes: LaneTransport | None) -> None:
        self._lanes = lanes
        self._held = False

    @property
    def extensions(self) -> dict[str, Any]:
        """The request extensions that hand this place to the request carrying them."""
        return {PLACE_EXTENSION: self}

    async def take(self) -> None:
        """Wait for a free place and keep it for the request that will carry it."""
        if self._lanes is not None:
            await take_place(self._lanes._places, self)
            self._held = True

    def give_back(self) -> None:
        """Return the place if no request used it (a request that did gives it back itself)."""
        if self._held:
            self._held = False
            assert self._lanes is not None
            self._lanes._places.release_on_behalf_of(self)

    def _hand_over(self, lanes: LaneTransport) -> bool:
        """True, once, if this place is one of `lanes`' and still held: it is the request's now."""
        if lanes is not self._lanes or not self._held:
            return False
        self._held = False
        return True


class LaneTransport(httpx.AsyncBaseTransport):
    """Up to `count` connection pools ("lanes") of `per_lane` connections each, behind one
    count of `count * per_lane` places; the first pool now, the others when traffic first
    needs them.

    Args:
        make_pool: builds one lane's transport (called at most `count` times).
        count: how many lanes at most.
        per_lane: requests one lane carries at once.
        owned: close the pools in `aclose` (False for a transport lent by the caller that
            another `LaneTransport` closes).
    """

    def __init__(
        self,
        make_pool: Callable[[], httpx.AsyncBaseTransport],
        *,
        count: int,
        per_lane: int,
        owned: bool = True,
    ) -> None:
        self._make_pool = make_pool
        self._owned = owned
        self._pools: list[httpx.AsyncBaseTransport] = []
        self._count = count
        self._per_lane = per_lane
        self._busy: list[int] = []
        self._closed = False
        self._places = anyio.CapacityLimiter(count * per_lane)
        self._add_lane()

    @classmethod
    def single(cls, pool: httpx.AsyncBaseTransport, *, places: int, owned: bool) -> LaneTransport:
        """One lane over one transport (the caller's): only the count of places applies."""
        return cls(lambda: pool, count=1, per_lane=places, owned=owned)

    @property
    def places(self) -> int:
        """Requests carried at once, over all lanes."""
        return self._count * self._per_lane

    @property
    def in_flight(self) -> int:
        """Places taken now (taken ahead or by a request whose response is still open)."""
        return int(self._places.borrowed_tokens)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Wait for a place (or use the one the request carries), then send on the lowest
        lane with room; both are held until the response stream is closed."""
        ahead = request.extensions.get(PLACE_EXTENSION)
        borrower: object
        if isinstance(ahead, Place) and ahead._hand_over(self):
            borrower = ahead
        else:
            borrower = object()  # a token per request: one task may send several in turn
            await take_place(self._places, borrower)
        # The places guarantee a lane with room: fewer requests than count * per_lane.
        lane = next((i for i, n in enumerate(self._busy) if n < self._per_lane), None)
        if lane is None:
            # Closed lanes build nothing new: a late request meets a closed pool's refusal.
            lane = 0 if self._closed else self._add_lane()
        self._busy[lane] += 1
        release = _Release(self, lane, borrower)
        try:
            response = await self._pools[lane].handle_async_request(request)
        except BaseException:
            release()
            raise
        if response.is_closed:
            # Built with its whole body (`httpx.Response(content=...)`, a MockTransport's):
            # httpx never closes its stream again, and the exchange is over already.
            release()
        else:
            assert isinstance(response.stream, httpx.AsyncByteStream)
            response.stream = _ReleasingStream(response.stream, release)
        return response

    async def aclose(self) -> None:
        """Close the pools this transport owns; no lane is added afterwards."""
        self._closed = True
        for pool in self._pools if self._owned else ():
            await pool.aclose()

    def _add_lane(self) -> int:
        self._pools.append(self._make_pool())
        self._busy.append(0)
        return len(self._pools) - 1


class _Release:
    """Gives a request's lane and place back, once, however the exchange ends."""

    __slots__ = ("_borrower", "_lane", "_lanes")

    def __init__(self, lanes: LaneTransport, lane: int, borrower: object) -> None:
        self._lanes: LaneTransport | None = lanes
        self._lane = lane
        self._borrower = borrower

    def __call__(self) -> None:
        lanes, self._lanes = self._lanes, None
        if lanes is not None:
            lanes._busy[self._lane] -= 1
            lanes._places.release_on_behalf_of(self._borrower)


class _ReleasingStream(httpx.AsyncByteStream):
    """A response body that gives its lane and place back when it is closed."""

    __slots__ = ("_release", "_stream")

    def __init__(self, stream: httpx.AsyncByteStream, release: _Release) -> None:
        self._stream = stream
        self._release = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._release()


class Clients:
    """The API's and the media downloads' httpx clients of one `FlowMusic` client.

    Args:
        api: the client API requests are sent with (it carries no token).
        media: the client media URLs are fetched with.
        lanes: the API's `LaneTransport`, if the API client sends through one (places ahead
            are taken from it).
        owned: the clients `aclose` closes (not a client the caller lent).
    """

    def __init__(
        self,
        api: httpx.AsyncClient,
        media: httpx.AsyncClient,
        *,
        lanes: LaneTransport | None,
        owned: tuple[httpx.AsyncClient, ...],
    ) -> None:
        self.api = api
        self.media = media
        self.lanes = lanes
        self._owned = owned

    def place_ahead(self) -> Place:
        """A place to take before a request that must not leave once abandoned (a paid POST)."""
        return Place(self.lanes)

    async def aclose(self) -> None:
        """Close the clients made here (and so their transports)."""
        for client in self._owned:
            await client.aclose()


# The API: 64 lanes of 2 connections, 128 requests at once: small lanes cost the least client
# CPU per song (docs/benchmarks.md, "What changed in the evening round"), and 128 places let
# the first POSTs of a batch fill every free slot in few round trips on a slow network. Media
# downloads get lanes of their own, so files never hold up a sweep or a POST.
PER_LANE = 2
API_LANES = 64
MEDIA_LANES = 16


def check_http_backend(
    backend: object,
    *,
    transport: httpx.AsyncBaseTransport | None,
    http_client: httpx.AsyncClient | None,
) -> HttpBackend:
    """`FlowMusic(http_backend=...)` checked when the client is built (ConfigurationError)."""
    if backend not in _BACKENDS:
        raise ConfigurationError(f"http_backend must be one of {_BACKENDS}, got {backend!r}")
    if backend == "aiohttp":
        if transport is not None or http_client is not None:
            raise ConfigurationError(
                "http_backend='aiohttp' builds the transport: pass it or transport= / "
                "http_client=, not both"
            )
        if not aiohttp_available():
            raise ConfigurationError(
                "http_backend='aiohttp' needs the 'aiohttp' extra, the httpx-aiohttp package: "
                "pip install httpx-aiohttp (from a checkout: pip install -e '.[aiohttp]')"
            )
    return backend  # type: ignore[return-value]  # one of _BACKENDS, checked above


def _uses_aiohttp(backend: HttpBackend) -> bool:
    """Whether the client being opened sends through aiohttp (asyncio only)."""
    if backend == "httpx":
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # trio (or any other loop): aiohttp runs on asyncio only
        if backend == "aiohttp":
            raise ConfigurationError(
                "http_backend='aiohttp' runs on asyncio only; under trio use 'httpx' or 'auto'"
            ) from None
        return False
    return backend == "aiohttp" or (_AUTO_PICKS_AIOHTTP and aiohttp_available())


# What http_backend="auto" picks on asyncio when the extra is installed (docs/benchmarks.md).
_AUTO_PICKS_AIOHTTP = False


def open_clients(
    *,
    user_client: httpx.AsyncClient | None,
    transport: httpx.AsyncBaseTransport | None,
    timeout: httpx.Timeout,
    backend: HttpBackend = "auto",
) -> Clients:
    """The API's and the media downloads' httpx clients of one FlowMusic client.

    A client the caller passed is used as it is, for both, and never closed: its transport and
    limits are the caller's. A transport the caller passed (tests, the simulator) is one lane
    under each of our two clients, closed with the API's. Otherwise each client sends through
    lanes of httpx pools, or (`backend`, asyncio) one aiohttp pool behind the same places.

    Raises:
        ConfigurationError: ``backend="aiohttp"`` outside asyncio.
    """
    remember_missing_sniffio()  # httpcore looks for it on every request
    api_places, media_places = API_LANES * PER_LANE, MEDIA_LANES * PER_LANE
    if user_client is not None:
        return Clients(user_client, user_client, lanes=None, owned=())
    if transport is not None:
        api_lanes = LaneTransport.single(transport, places=api_places, owned=True)
        media_lanes = LaneTransport.single(transport, places=media_places, owned=False)
        api = httpx.AsyncClient(transport=api_lanes, timeout=timeout)
        media = httpx.AsyncClient(transport=media_lanes, timeout=timeout)
        # Media first: its transport is the caller's too, closed once by the API's.
        return Clients(api, media, lanes=api_lanes, owned=(media, api))
    # Every connection is kept alive: httpx's default keeps 20 of 100, and under load it
    # closes and reopens them (`python -m benchmarks.bench_pool`). One SSL context for all,
    # built with the SSL_CERT_* variables. Reading the proxy variables is most of what an httpx
    # client costs to build: they are read once here, and only if some are set does
    # a client trust the environment, in which case httpx sends proxied URLs through proxy
    # pools of its own (httpx mounts them ahead of the client's transport).
    limits = httpx.Limits(max_connections=PER_LANE, max_keepalive_connections=PER_LANE)
    ssl_context = httpx.create_ssl_context()
    proxies = bool(urllib.request.getproxies())

    def make_pool() -> httpx.AsyncBaseTransport:
        return httpx.AsyncHTTPTransport(limits=limits, verify=ssl_context)

    def make_client(lanes: LaneTransport) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=lanes, timeout=timeout, verify=ssl_context, trust_env=proxies
        )

    if _uses_aiohttp(backend):
        # aiohttp's pool costs the same per request however many connections it holds: one
        # lane each, still behind the places (a paid POST's place ahead works the same).
        def aiohttp_lane(places: int) -> LaneTransport:
            pool = aiohttp_transport(connections=places, ssl_context=ssl_context)
            return LaneTransport.single(pool, places=places, owned=True)

        api_lanes, media_lanes = aiohttp_lane(api_places), aiohttp_lane(media_places)
    else:
        api_lanes = LaneTransport(make_pool, count=API_LANES, per_lane=PER_LANE)
        media_lanes = LaneTransport(make_pool, count=MEDIA_LANES, per_lane=PER_LANE)
    api, media = make_client(api_lanes), make_client(media_lanes)
    return Clients(api, media, lanes=api_lanes, owned=(api, media))
