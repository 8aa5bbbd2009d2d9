"""An httpx transport that runs the simulator's ASGI app in-process.

Unlike httpx.ASGITransport it turns a dropped connection into httpx.RemoteProtocolError (what a
real server closing the socket produces) and honours the request's read timeout, so a sync-mode
request held open while its job runs behaves as it would over the network.
"""

from __future__ import annotations

import contextlib
from collections.abc import MutableMapping
from typing import Any

import anyio
import httpx

from ._app import App
from ._wire import ConnectionDropped

DROPPED = "Server disconnected without sending a response."


class SimTransport(httpx.AsyncBaseTransport):
    """In-process transport; may be shared by any number of clients and tasks."""

    def __init__(self, app: App) -> None:
        self._app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        url = request.url
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": url.scheme,
            "path": url.path,
            "raw_path": url.raw_path.split(b"?", 1)[0],
            "query_string": url.query,
            "root_path": "",
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "client": ("127.0.0.1", 0),
            "server": (url.host, url.port or (443 if url.scheme == "https" else 80)),
        }
        sent_body = False
        status: int | None = None
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def receive() -> MutableMapping[str, Any]:
            nonlocal sent_body
            if sent_body:
                return {"type": "http.disconnect"}
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status, headers = message["status"], list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        timeout = request.extensions.get("timeout", {}).get("read")
        scope_cm = anyio.fail_after(timeout) if timeout is not None else contextlib.nullcontext()
        try:
            with scope_cm:
                await self._app(scope, receive, send)
        except ConnectionDropped:
            raise httpx.RemoteProtocolError(DROPPED, request=request) from None
        except TimeoutError:
            raise httpx.ReadTimeout("Simulated read timeout", request=request) from None
        if status is None:
            raise httpx.RemoteProtocolError(DROPPED, request=request)
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(b"".join(chunks)))
