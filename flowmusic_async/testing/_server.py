"""A small HTTP/1.1 server on anyio sockets that serves the ASGI app over loopback.

Keep-alive, Content-Length and chunked request bodies; responses always carry Content-Length
(for HEAD, the length the GET would have, and no body).
When the app drops a connection the socket is closed without an answer, so clients see a real
"server disconnected" error.
"""

from __future__ import annotations

import http
from collections.abc import MutableMapping
from typing import Any

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

from ._app import App
from ._wire import ConnectionDropped

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024  # above the largest upload cap (40 MB), so the app answers 413
_CLOSED = (
    anyio.EndOfStream,
    anyio.IncompleteRead,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    ConnectionError,
)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpServer:
    """Serves one App on a TCP listener until cancelled."""

    def __init__(self, app: App) -> None:
        self._app = app

    async def serve(
        self, host: str, port: int, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        async with listener:
            task_status.started(listener.extra(SocketAttribute.local_port))
            await listener.serve(self._connection)

    async def _connection(self, stream: SocketStream) -> None:
        async with stream:
            try:
                await self._requests(stream)
            except _CLOSED:
                pass
            except ConnectionDropped:
                pass  # closing the socket without an answer is the fault being simulated

    async def _requests(self, stream: SocketStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        client = stream.extra(SocketAttribute.remote_address, ("127.0.0.1", 0))
        server = stream.extra(SocketAttribute.local_address, ("127.0.0.1", 0))
        while True:
            try:
                head = await reader.receive_until(b"\r\n\r\n", MAX_HEAD)
            except anyio.DelimiterNotFound:
                await _write(stream, 431, [], b"", close=True)
                return
            try:
                method, target, version, headers = _parse_head(head)
                if headers.get(b"expect", b"").lower() == b"100-continue":
                    await stream.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await _read_body(reader, headers)
            except _BadRequest as exc:
                await _write(stream, exc.status, [], str(exc).encode(), close=True)
                return
            conn = headers.get(b"connection", b"").lower()
            close = conn == b"close" or (version == b"HTTP/1.0" and conn != b"keep-alive")
            path, _, query = target.partition(b"?")
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": method.decode("ascii", "replace"),
                "scheme": "http",
                "path": path.decode("latin-1"),
                "raw_path": path,
                "query_string": query,
                "root_path": "",
                "headers": list(headers.items()),
                "client": tuple(client[:2]),
                "server": tuple(server[:2]),
            }
            status, out_headers, out_body = await self._run(scope, body)
            await _write(stream, status, out_headers, out_body, close=close, head=method == b"HEAD")
            if close:
                return

    async def _run(
        self, scope: dict[str, Any], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        result: dict[str, Any] = {"status": None, "headers": [], "body": []}
        delivered = False

        async def receive() -> MutableMapping[str, Any]:
            nonlocal delivered
            if delivered:
                await anyio.sleep_forever()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                result["status"] = message["status"]
                result["headers"] = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                result["body"].append(message.get("body", b""))

        try:
            await self._app(scope, receive, send)
        except ConnectionDropped:
            raise
        except Exception as exc:  # a simulator bug must not kill the server; say so instead
            text = f'{{"error":"simulator error: {type(exc).__name__}","code":500}}'
            return 500, [(b"content-type", b"application/json")], text.encode()
        if result["status"] is None:
            raise ConnectionDropped
        return result["status"], result["headers"], b"".join(result["body"])


def _parse_head(head: bytes) -> tuple[bytes, bytes, bytes, dict[bytes, bytes]]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise _BadRequest(400, "Malformed request line")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise _BadRequest(400, "Malformed header line")
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], parts[2], headers


async def _read_body(reader: BufferedByteReceiveStream, headers: dict[bytes, bytes]) -> bytes:
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = bytearray()
        while True:
            line = await reader.receive_until(b"\r\n", 1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest(400, "Malformed chunk size") from None
            if size == 0:
                while await reader.receive_until(b"\r\n", MAX_HEAD):
                    pass  # trailers, up to the empty line
                return bytes(body)
            if len(body) + size > MAX_BODY:
                raise _BadRequest(413, "Request body too large")
            body += await reader.receive_exactly(size)
            await reader.receive_exactly(2)
    length = headers.get(b"content-length")
    if length is None:
        return b""
    if not length.isdigit():
        raise _BadRequest(400, "Malformed Content-Length")
    if int(length) > MAX_BODY:
        raise _BadRequest(413, "Request body too large")
    return await reader.receive_exactly(int(length)) if int(length) else b""


async def _write(
    stream: SocketStream,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    close: bool,
    head: bool = False,
) -> None:
    """One response; a HEAD answer keeps the app's Content-Length (the GET's) and no body."""
    length = str(len(body)).encode()
    if head:
        given = [v for k, v in headers if k.lower() == b"content-length"]
        length, body = (given[0] if given else length), b""
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Account Error" if status == 596 else "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}".encode()]
    lines += [
        k + b": " + v for k, v in headers if k.lower() not in (b"content-length", b"connection")
    ]
    lines.append(b"content-length: " + length)
    if close:
        lines.append(b"connection: close")
    await stream.send(b"\r\n".join(lines) + b"\r\n\r\n" + body)
