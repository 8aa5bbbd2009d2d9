"""What the simulator scenario tests share: counting the requests a simulator answered,
running many songs at once, rewriting its answers on the way back, serving it over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import httpx

from flowmusic_async import FlowMusic
from flowmusic_async.testing import Simulator


def count(sim: Simulator, endpoint: str, status: int | None = None) -> int:
    return sum(
        n for (ep, st), n in sim.stats.requests.items() if ep == endpoint and status in (None, st)
    )


async def generate_all(fm: FlowMusic, prompts: Sequence[str]) -> list[Any]:
    results: list[Any] = [None] * len(prompts)

    async def one(i: int, prompt: str) -> None:
        try:
            results[i] = await fm.generate(prompt)
        except Exception as error:  # collected and asserted on by the caller
            results[i] = error

    async with anyio.create_task_group() as tg:
        for i, prompt in enumerate(prompts):
            tg.start_soon(one, i, prompt)
    return results


INVALID_UTF8 = b'{"jobid": "\xff\xfe", "status": "pending"}'


TOO_DEEP = b"[" * 100_000 + b"]" * 100_000


Rewrite = Callable[[httpx.Request, httpx.Response, bytes], bytes | None]


class Rewriting(httpx.AsyncBaseTransport):
    """Passes requests to the simulator; `rewrite` may replace an answer's body (None: keep)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, rewrite: Rewrite) -> None:
        self._inner = inner
        self._rewrite = rewrite
        self.rewritten = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        body = await response.aread()
        replaced = self._rewrite(request, response, body)
        if replaced is None:
            return httpx.Response(response.status_code, headers=response.headers, content=body)
        self.rewritten += 1
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return httpx.Response(response.status_code, headers=headers, content=replaced)


def first_n(n: int, route: str, body: bytes) -> Rewrite:
    """Replace the first `n` answers of `route` ("GET /jobs", "GET /jobs/", ...) with `body`."""
    left = [n]

    def rewrite(request: httpx.Request, response: httpx.Response, _: bytes) -> bytes | None:
        method, path = route.split(" ", 1)
        matches = request.method == method and (
            request.url.path.endswith(path) if not path.endswith("/") else path in request.url.path
        )
        if matches and left[0] > 0:
            left[0] -= 1
            return body
        return None

    return rewrite


@asynccontextmanager
async def served(sim: Simulator) -> AsyncIterator[str]:
    async with sim.serve() as url:
        yield url


def deletes(sim: Simulator) -> int:
    return sim.stats.requests[("DELETE /jobs/{jobid}", 204)]
