"""The aiohttp-backed httpx transport (the optional extra ``aiohttp``; asyncio only).

`httpx-aiohttp` lets httpx send through aiohttp's connection pool, whose cost per request does
not grow with the pool (httpcore's does: encode/httpcore#929, encode/httpx#3215; see
`_lanes.py`). Its own error mapping is not fit for paid requests, though: it turns an
`aiohttp.ClientConnectionError` it has no closer entry for into `httpx.ConnectTimeout`, "the
request was not sent", even a server that disconnected after the request left
(`ServerDisconnectedError`, a reset), which would let a paid POST whose answer was lost be
sent again. `_SafeAiohttpTransport` maps aiohttp's own
exceptions again, by what they mean for the request: only a connection that never opened is
"not sent".
"""

from __future__ import annotations

import importlib.util
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import httpx

__all__ = ["aiohttp_available", "aiohttp_transport"]


def aiohttp_available() -> bool:
    """True when the ``aiohttp`` extra (the httpx-aiohttp package) is installed."""
    return importlib.util.find_spec("httpx_aiohttp") is not None


def aiohttp_transport(*, connections: int, ssl_context: ssl.SSLContext) -> httpx.AsyncBaseTransport:
    """An aiohttp-backed transport of at most `connections` connections, all kept alive."""
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    def make_session() -> aiohttp.ClientSession:
        # Built in the running loop, at the first request (aiohttp requires one).
        connector = aiohttp.TCPConnector(limit=connections, limit_per_host=0, ssl=ssl_context)
        # Proxies from the environment are httpx's (it mounts its own proxy pools first).
        return aiohttp.ClientSession(connector=connector, trust_env=False)

    return _SafeAiohttpTransport(AiohttpTransport(client=make_session))


class _SafeAiohttpTransport(httpx.AsyncBaseTransport):
    """An `AiohttpTransport` whose failures say truly whether the request may have left."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _remapped(request):
            response = await self._inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _RemappedStream(response.stream, request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@contextmanager
def _remapped(request: httpx.Request) -> Iterator[None]:
    """Re-raise httpx-aiohttp's error as the httpx error its aiohttp cause means."""
    try:
        yield
    except httpx.TransportError as exc:
        mapped = _meaning(exc.__cause__)
        if mapped is None or type(exc) is mapped:
            raise
        raise mapped(str(exc), request=request) from exc.__cause__


def _meaning(cause: BaseException | None) -> type[httpx.TransportError] | None:
    """The httpx error an aiohttp exception stands for; None for one not aiohttp's."""
    import aiohttp

    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError  # the connection never opened: nothing was sent
    if isinstance(cause, getattr(aiohttp, "ConnectionTimeoutError", ())):
        return httpx.ConnectTimeout  # no connection in time (pool wait included)
    if isinstance(cause, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout  # the request may have left
    if isinstance(cause, aiohttp.ClientPayloadError):
        return httpx.ReadError
    if isinstance(cause, aiohttp.ClientConnectionError):
        return httpx.ReadError  # disconnected or reset after the request was written
    return None


class _RemappedStream(httpx.AsyncByteStream):
    """A response body whose read errors are mapped like the request's."""

    def __init__(self, stream: httpx.AsyncByteStream, request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _remapped(self._request):
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        with _remapped(self._request):
            await self._stream.aclose()
