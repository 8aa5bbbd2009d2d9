"""Several small httpx connection pools ("lanes") instead of one big one; responses freed early.

httpcore's connection pool walks every connection it holds, and every request queued in it,
each time a request starts or ends, and for each idle connection it asks the socket whether it
is readable (two syscalls). With the 64 connections a busy batch needs in one pool, that walk
was 40% of the client's CPU (docs/benchmarks.md, "What changed in this round"). Here a
request first waits for a free place in anyio (O(1), never in httpcore's queue), then goes to
the lowest lane with room: each walk sees at most one lane's connections, and under light
traffic only the first lane has any.

A lease is held for the whole exchange, body included, so a streamed download counts until
it is closed. Leases are not nested (no caller holds one while asking for another), which is
what keeps a full set of places from waiting on itself; a place taken ahead (`PlaceAhead`, a
paid POST's) is the one its request's lease then uses, not a second one.
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar

import anyio
import httpx

from ._sniffio import remember_missing_sniffio

__all__ = ["Lanes", "PlaceAhead", "open_lanes", "take_place", "unlink_body"]


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


class PlaceAhead:
    """A place among the requests in flight, taken before the request that will use it.

    A paid POST takes its place while it can still be abandoned (`JobEngine._place`): a POST
    waiting for a place has not left, and once its caller is gone it must never leave. The
    next `lease` of the same lanes in the same task then uses this place instead of taking
    one; `give_back` returns it if no lease did.
    """

    __slots__ = ("_borrower", "_held", "_lanes")

    def __init__(self, lanes: Lanes) -> None:
        self._lanes = lanes
        self._borrower = object()
        self._held = False

    async def take(self) -> None:
        """Wait for a free place and keep it for this task's next request."""
        await take_place(self._lanes._places, self._borrower)
        self._held = True
        _place_ahead.set(self)

    def give_back(self) -> None:
        """Return the place if no request used it (a lease that did gives it back itself)."""
        _place_ahead.set(None)
        if self._held:
            self._held = False
            self._lanes._places.release_on_behalf_of(self._borrower)

    def _hand_over(self, lanes: Lanes) -> object | None:
        """The borrower of this place for a lease of `lanes`, once; None if it cannot serve."""
        if lanes is not self._lanes or not self._held:
            return None
        self._held = False
        _place_ahead.set(None)
        return self._borrower


# The place this task took ahead for its next request (see PlaceAhead).
_place_ahead: ContextVar[PlaceAhead | None] = ContextVar("flowmusic_place_ahead", default=None)


class Lanes:
    """Up to `count` httpx clients of `per_lane` connections each: the first one now (the first
    httpx client of a process pays for httpx's lazy imports, ~0.1 s, which belongs in `open`
    rather than in a batch's first request), the others when traffic first needs them.

    Args:
        make_client: builds one lane's client (called at most `count` times).
        count: how many lanes at most.
        per_lane: requests one lane carries at once (its connection limit).
        owned: close the clients in `aclose` (False for a client lent by the caller).
    """

    def __init__(
        self,
        make_client: Callable[[], httpx.AsyncClient],
        *,
        count: int,
        per_lane: int,
        owned: bool = True,
    ) -> None:
        self._make_client = make_client
        self._owned = owned
        self._clients: list[httpx.AsyncClient] = []
        self._count = count
        self._per_lane = per_lane
        self._busy: list[int] = []
        self._closed = False
        self._places = anyio.CapacityLimiter(count * per_lane)
        self._add_lane()

    @classmethod
    def single(cls, client: httpx.AsyncClient, *, places: int, owned: bool) -> Lanes:
        """One lane over one client: the caller's, or ours over a transport it gave us."""
        return cls(lambda: client, count=1, per_lane=places, owned=owned)

    @property
    def places(self) -> int:
        """Requests carried at once, over all lanes."""
        return self._count * self._per_lane

    def place_ahead(self) -> PlaceAhead:
        """A place to take before a request that must not leave once abandoned (a paid POST)."""
        return PlaceAhead(self)

    @property
    def first(self) -> httpx.AsyncClient:
        """The first lane's client; requests are built with it."""
        return self._clients[0]

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[httpx.AsyncClient]:
        """Wait for a free place (or use the one this task took ahead, see `PlaceAhead`), then
        lend the lowest lane with room until the block ends."""
        ahead = _place_ahead.get()
        borrower = ahead._hand_over(self) if ahead is not None else None
        if borrower is None:
            borrower = object()  # a token per lease: one task may hold several in turn
            await take_place(self._places, borrower)
        try:
            # The limiter guarantees a lane with room: fewer leases than count * per_lane.
            lane = next((i for i, n in enumerate(self._busy) if n < self._per_lane), None)
            if lane is None:
                # Closed lanes build nothing new: a late request meets httpx's "client closed".
                lane = 0 if self._closed else self._add_lane()
            self._busy[lane] += 1
            try:
                yield self._clients[lane]
            finally:
                self._busy[lane] -= 1
        finally:
            self._places.release_on_behalf_of(borrower)

    async def aclose(self) -> None:
        """Close the clients these lanes own; no lane is added afterwards."""
        self._closed = True
        for client in self._clients if self._owned else ():
            await client.aclose()

    def _add_lane(self) -> int:
        self._clients.append(self._make_client())
        self._busy.append(0)
        return len(self._clients) - 1


# The API: 64 lanes of 2 connections, 128 requests at once. Lanes of 16, 8, 2 and 1
# connections cost 5.7-6.6, 4.3, 3.1 and 3.0 ms of client CPU per song, one pool of 64 cost
# 7.1-7.5 (3,000 songs, 800 slots, one run of each interleaved, twice; docs/benchmarks.md).
# 128 rather than 64 places: the first POSTs of a batch fill every free slot at once, and on a
# slow network they are bound by round trips (800 POSTs at 2 s each: 25 s at 64 in flight, 12.5
# at 128). Media downloads get lanes of their own, so files never hold up a sweep or a POST.
PER_LANE = 2
API_LANES = 64
MEDIA_LANES = 16


def open_lanes(
    *,
    user_client: httpx.AsyncClient | None,
    transport: httpx.AsyncBaseTransport | None,
    timeout: httpx.Timeout,
) -> tuple[Lanes, Lanes]:
    """The API's lanes and the media downloads' lanes of one FlowMusic client.

    A client the caller passed is used as it is (its limits are the caller's choice) and never
    closed; a transport the caller passed (tests, the simulator) gets one client of ours.
    """
    remember_missing_sniffio()  # httpcore looks for it on every request
    api_places, media_places = API_LANES * PER_LANE, MEDIA_LANES * PER_LANE
    if user_client is not None:
        return (
            Lanes.single(user_client, places=api_places, owned=False),
            Lanes.single(user_client, places=media_places, owned=False),
        )
    if transport is not None:
        both = api_places + media_places
        client = httpx.AsyncClient(
            transport=transport,
            timeout=timeout,
            limits=httpx.Limits(max_connections=both, max_keepalive_connections=both),
        )
        return (
            Lanes.single(client, places=api_places, owned=True),
            Lanes.single(client, places=media_places, owned=False),  # closed with the API's
        )
    # Every connection is kept alive: httpx's default keeps 20 of 100, and under load it
    # closes and reopens them (`python -m benchmarks.bench_pool`). One SSL context for all,
    # built with the SSL_CERT_* variables. Reading the proxy variables is most of what an httpx
    # client costs to build (0.3 ms): they are read once here, and a lane reads them again only
    # if some are set.
    limits = httpx.Limits(max_connections=PER_LANE, max_keepalive_connections=PER_LANE)
    ssl_context = httpx.create_ssl_context()
    proxies = bool(urllib.request.getproxies())

    def make_client() -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=timeout, limits=limits, verify=ssl_context, trust_env=proxies
        )

    return (
        Lanes(make_client, count=API_LANES, per_lane=PER_LANE),
        Lanes(make_client, count=MEDIA_LANES, per_lane=PER_LANE),
    )


_READ = httpx.ByteStream(b"")


def unlink_body(response: httpx.Response) -> None:
    """Let reference counting free a response whose body is read and closed.

    httpx links a response and its body stream both ways, so every response is otherwise left
    to the cyclic garbage collector: about 20 objects per request, whose collections stalled
    the event loop (a full pass over a busy batch's objects takes tens of milliseconds;
    docs/benchmarks.md, "Loop stalls"). The body is already in ``response.content``, or was
    streamed to its reader, so the stream is no longer needed.
    """
    response.stream = _READ
