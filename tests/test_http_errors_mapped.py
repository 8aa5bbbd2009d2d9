"""Every exception httpx can raise reaches a caller as one of the library's errors, and a
redirect that cannot be followed (a loop, a file:// target) is refused at once."""

from __future__ import annotations

import inspect
import logging
import socket
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest
from mock_api import TOKEN
from raw_server import RawServer, head

from flowmusic_async import FlowMusic, FlowMusicError, RedirectError, Timing, TransportError
from flowmusic_async._errors import HTTPX_ERRORS, error_from_httpx
from flowmusic_async._models import Clip, Job
from flowmusic_async._redact import remember_secret

pytestmark = pytest.mark.anyio

JOBID = "job:5555-user:1001-a@example.com-bot:flowmusic"
CLIP = "user:1001-a@example.com-clip:0a1b2c3d-1111-4111-8111-111111111111"


def httpx_exception_classes() -> list[type[Exception]]:
    """Every exception class httpx exposes, found by walking the module (new ones included)."""
    return sorted(
        (
            cls
            for _, cls in inspect.getmembers(httpx, inspect.isclass)
            if issubclass(cls, Exception)
        ),
        key=lambda cls: cls.__name__,
    )


def instance_of(cls: type[Exception]) -> Exception:
    """An instance of `cls` whose text quotes the token, as an echoing server could make it."""
    request = httpx.Request("GET", "https://api.example/jobs/x")
    text = f"server said Bearer {TOKEN}"
    if issubclass(cls, httpx.HTTPStatusError):
        return cls(text, request=request, response=httpx.Response(502, request=request))
    attempts: list[Callable[[], Exception]] = [
        lambda: cls(text, request=request),  # type: ignore[call-arg]
        lambda: cls(text),
        lambda: cls(),
    ]
    for attempt in attempts:
        try:
            return attempt()
        except TypeError:
            continue
    raise AssertionError(f"cannot build {cls.__name__}")


def test_httpx_defines_the_exceptions_this_test_expects() -> None:
    """The walk finds httpx's whole tree; if httpx reshapes it, this test says so."""
    names = {cls.__name__ for cls in httpx_exception_classes()}
    assert {"TooManyRedirects", "InvalidURL", "UnsupportedProtocol", "DecodingError"} <= names
    assert {"StreamConsumed", "StreamClosed", "ResponseNotRead", "RequestNotRead"} <= names
    assert len(names) >= 25


@pytest.mark.parametrize("cls", httpx_exception_classes(), ids=lambda cls: cls.__name__)
def test_every_httpx_exception_maps_into_the_tree_without_the_token(
    cls: type[Exception],
) -> None:
    """One mapping for all of httpx: the result is ours, names the request, quotes no token."""
    assert issubclass(cls, HTTPX_ERRORS), f"{cls.__name__} would escape untyped"
    remember_secret(TOKEN)  # as every FlowMusic(token=...) does
    exc = instance_of(cls)
    error = error_from_httpx(exc, endpoint="GET /jobs/{jobid}", jobid=JOBID)
    assert isinstance(error, FlowMusicError)
    assert "GET /jobs/{jobid}" in str(error)
    assert TOKEN not in str(error) and TOKEN not in repr(error)
    assert all(TOKEN not in str(arg) for arg in exc.args)  # the chain is scrubbed too


@pytest.mark.parametrize("cls", httpx_exception_classes(), ids=lambda cls: cls.__name__)
async def test_every_httpx_exception_from_a_transport_reaches_the_caller_typed(
    cls: type[Exception],
) -> None:
    """Whatever httpx raises while sending, `fm.jobs.get` raises a FlowMusicError."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise instance_of(cls)

    transport = httpx.MockTransport(handler)
    # Scaled timing: a connection that never opens is retried for 30 ms, not 30 s.
    fast = Timing.scaled(0.001)
    async with FlowMusic(token=TOKEN, transport=transport, max_retries=0, timing=fast) as fm:
        with pytest.raises(FlowMusicError) as caught:
            await fm.jobs.get(JOBID)
    assert caught.value.endpoint == "GET /jobs/{jobid}" or caught.value.field == "url"  # type: ignore[attr-defined]


def _job(url: str) -> Job:
    clip = Clip(clip=CLIP, title="Night Drive", audio_url=url)
    return Job(jobid=JOBID, email="a@example.com", status="completed", clips=(clip,))


def redirecting(server: RawServer, location: str):  # type: ignore[no-untyped-def]
    def behave(conn: socket.socket, _head: bytes) -> None:
        server.send(
            conn, head("302 Found", Location=location, Content_Length="0", Connection="close")
        )

    return behave


async def test_a_media_redirect_loop_is_a_redirect_error_not_a_traceback(tmp_path: Path) -> None:
    """httpx.TooManyRedirects is no TransportError: it used to escape untyped."""
    server = RawServer(lambda conn, h: behave(conn, h))
    behave = redirecting(server, "/a.m4a?sig=again")
    with server.running():
        async with FlowMusic(token=TOKEN, base_url=server.url, timing=Timing.scaled(0.01)) as fm:
            with anyio.fail_after(20), pytest.raises(RedirectError) as caught:
                await fm.download(_job(f"{server.url}/a.m4a?sig=1"), tmp_path)
    assert isinstance(caught.value, TransportError)
    assert "TooManyRedirects" in str(caught.value)
    assert len(server.requests) == 21  # httpx's 20 hops, once: a loop is not retried
    assert list(tmp_path.iterdir()) == []


async def test_a_redirect_to_file_url_is_refused_at_once(tmp_path: Path) -> None:
    """A file:// target is never fetched, and refusing it takes one request, not 5 s of retries."""
    server = RawServer(lambda conn, h: behave(conn, h))
    behave = redirecting(server, "file:///etc/passwd")
    with server.running():
        async with FlowMusic(token=TOKEN, base_url=server.url, timing=Timing.scaled(0.01)) as fm:
            started = anyio.current_time()
            with anyio.fail_after(20), pytest.raises(RedirectError, match="only http and https"):
                await fm.download(_job(f"{server.url}/a.m4a?sig=1"), tmp_path)
            took = anyio.current_time() - started
    assert len(server.requests) == 1
    assert took < 2.0
    assert list(tmp_path.iterdir()) == []


def test_logging_a_mapped_error_prints_no_token(caplog: pytest.LogCaptureFixture) -> None:
    """logging.exception prints the whole chain; an h11-style cause quoting the token is blank."""
    remember_secret(TOKEN)
    try:
        try:
            raise httpx.RemoteProtocolError(f"illegal header line: b'X-Echo: {TOKEN}'")
        except httpx.HTTPError as exc:
            raise error_from_httpx(exc, endpoint="GET /jobs") from exc
    except FlowMusicError:
        logging.getLogger("test").exception("request failed")
    assert "RemoteProtocolError" in caplog.text
    assert TOKEN not in caplog.text
