"""A raw loopback HTTP server for faults httpx.MockTransport cannot play: bodies that never
end, servers that drip, redirect loops. It runs in a thread, so it behaves the same whatever
event loop the client under test uses, and counts what it sent.

Each connection reads one request head, then hands the socket to the test's `behave` callable.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

Behave = Callable[[socket.socket, bytes], None]


class RawServer:
    """A loopback server whose answers are written by hand; `sent` counts body bytes sent."""

    def __init__(self, behave: Behave) -> None:
        self._behave = behave
        self._listener = socket.create_server(("127.0.0.1", 0))
        # Closing a socket does not wake a thread blocked in accept(): poll for the stop flag.
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.sent = 0
        self.requests: list[bytes] = []
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def send(self, conn: socket.socket, data: bytes) -> None:
        """Send `data`, counting it; raises OSError once the client has gone."""
        conn.sendall(data)
        self.sent += len(data)

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            thread = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _handle(self, conn: socket.socket) -> None:
        with conn, suppress(OSError):
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            self.requests.append(head.split(b"\r\n", 1)[0])
            self._behave(conn, head)

    @contextmanager
    def running(self) -> Iterator[RawServer]:
        thread = threading.Thread(target=self._serve, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stopping.set()
            self._listener.close()
            thread.join(timeout=5)
            for each in self._threads:
                each.join(timeout=5)


def head(status: str = "200 OK", **headers: str) -> bytes:
    """A response head; header names are given with underscores for dashes."""
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
