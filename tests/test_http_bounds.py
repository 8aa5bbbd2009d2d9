"""Every request is bounded: bytes (API answers and media files), time, and every httpx
failure is one of the library's errors. Judged against raw loopback servers and MockTransport."""

from __future__ import annotations

import gzip
import socket
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from mock_api import TOKEN
from raw_server import RawServer, head

from flowmusic_async import FlowMusic, Timing
from flowmusic_async._errors import DecodeError, RequestTimeout, ResponseTooLarge
from flowmusic_async._models import Clip, Job

pytestmark = pytest.mark.anyio

JOBID = "job:5555-user:1001-a@example.com-bot:flowmusic"
CLIP = "user:1001-a@example.com-clip:0a1b2c3d-1111-4111-8111-111111111111"
TESTS = Path(__file__).parent


def client(url: str, **options: object) -> FlowMusic:
    return FlowMusic(token=TOKEN, base_url=url, timing=Timing.scaled(0.01), **options)  # type: ignore[arg-type]


def endless_chunked(server: RawServer):  # type: ignore[no-untyped-def]
    """An answer whose chunked body never ends (a broken CDN or proxy)."""

    def behave(conn: socket.socket, _head: bytes) -> None:
        server.send(conn, head(Content_Type="application/json", Transfer_Encoding="chunked"))
        chunk = b"x" * 65536
        frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        while not server.stopping.is_set():
            server.send(conn, frame)

    return behave


async def test_an_endless_api_answer_stops_at_the_cap_with_a_typed_error() -> None:
    """A job record is a few KB: an answer that never ends costs at most the cap, not memory."""
    server = RawServer(lambda conn, h: behave(conn, h))
    behave = endless_chunked(server)
    with server.running():
        async with client(server.url, max_response_bytes=256 * 1024) as fm:
            with anyio.fail_after(20), pytest.raises(ResponseTooLarge) as caught:
                await fm.jobs.get(JOBID)
    error = caught.value
    assert error.limit == 256 * 1024
    assert error.option == "max_response_bytes"
    assert error.endpoint == "GET /jobs/{jobid}"
    assert error.jobid == JOBID
    assert "max_response_bytes=262,144" in str(error)
    # Not retried (the same answer would come back), and the read stopped near the cap: what
    # the server got out is the cap plus what the kernel's socket buffers hold.
    assert len(server.requests) == 1
    assert server.sent < 256 * 1024 + 16 * 1024 * 1024


async def test_an_api_answer_announcing_too_much_is_refused_before_reading() -> None:
    """A Content-Length over the cap is refused from the head alone."""

    def handler(request: httpx.Request) -> httpx.Response:
        stream = httpx.ByteStream(b"{}")  # what it would send is never read
        return httpx.Response(200, headers={"Content-Length": "999999999"}, stream=stream)

    transport = httpx.MockTransport(handler)
    async with FlowMusic(token=TOKEN, transport=transport, max_retries=0) as fm:
        with pytest.raises(ResponseTooLarge, match="max_response_bytes=4,194,304"):
            await fm.jobs.get(JOBID)


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


def gzip_bomb(inflated: int) -> bytes:
    """`inflated` zero bytes, gzipped (about 1000:1), built without holding them in memory."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [packer.compress(block) for _ in range(inflated >> 20)]
    return b"".join([*parts, packer.flush()])


async def test_a_gzip_answer_is_capped_by_its_decoded_size() -> None:
    """A small compressed body that inflates past the cap is refused while it inflates."""
    bomb = gzip_bomb(64 << 20)
    assert len(bomb) < 1 << 20  # the wire size is well under the cap; the decoded size is not

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Accept-Encoding"] == "gzip, deflate"
        chunks = [bomb[i : i + 65536] for i in range(0, len(bomb), 65536)]
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=_Chunks(chunks))

    transport = httpx.MockTransport(handler)
    async with FlowMusic(
        token=TOKEN, transport=transport, max_retries=0, max_response_bytes=1 << 20
    ) as fm:
        with pytest.raises(ResponseTooLarge):
            await fm.jobs.get(JOBID)


async def test_a_small_gzip_answer_still_decodes() -> None:
    """The bounded decoder must still read what a normal gzip or deflate answer says."""
    record = b'{"jobid": "' + JOBID.encode() + b'", "status": "pending", "email": "a@example.com"}'
    bodies = {
        "gzip": gzip.compress(record),
        "deflate": zlib.compress(record),
        "raw-deflate": _raw_deflate(record),
    }
    for name, body in bodies.items():
        encoding = "deflate" if "deflate" in name else "gzip"

        def handler(
            request: httpx.Request, body: bytes = body, encoding: str = encoding
        ) -> httpx.Response:
            stream = _Chunks([body[:5], body[5:]])
            return httpx.Response(200, headers={"Content-Encoding": encoding}, stream=stream)

        async with FlowMusic(token=TOKEN, transport=httpx.MockTransport(handler)) as fm:
            job = await fm.jobs.get(JOBID)
        assert job.jobid == JOBID, name


async def test_a_corrupt_gzip_answer_is_a_decode_error() -> None:
    """Broken compression is a broken answer, typed like any other."""

    def handler(request: httpx.Request) -> httpx.Response:
        stream = _Chunks([b"\x1f\x8b\x08\x00garbage-not-deflate"])
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=stream)

    async with FlowMusic(token=TOKEN, transport=httpx.MockTransport(handler), max_retries=0) as fm:
        with pytest.raises(DecodeError, match="not valid gzip"):
            await fm.jobs.get(JOBID)


BOMB_CHILD = r"""
import resource, socket, sys, zlib
import anyio
sys.path.insert(0, sys.argv[1])
from raw_server import RawServer, head
from flowmusic_async import FlowMusic, ResponseTooLarge, Timing

INFLATED = 400 << 20
packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
block = bytes(1 << 20)
bomb = b"".join([*(packer.compress(block) for _ in range(INFLATED >> 20)), packer.flush()])

def behave(conn, _head):
    server.send(conn, head(Content_Type="application/json", Content_Encoding="gzip",
                           Content_Length=str(len(bomb))))
    server.send(conn, bomb)

server = RawServer(behave)

async def main():
    async with FlowMusic(token="user:1-abc", base_url=server.url, timing=Timing.scaled(0.01)) as fm:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            await fm.jobs.get("job:5555-user:1001-a@example.com-bot:flowmusic")
        except ResponseTooLarge as error:
            outcome = f"{type(error).__name__} {error.limit}"
        except Exception as error:
            outcome = type(error).__name__
        else:
            outcome = "decoded"
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(outcome, len(bomb), (after - before) // 1024)

with server.running():
    anyio.run(main)
"""


def test_a_gzip_bomb_costs_at_most_the_cap_in_memory() -> None:
    """400 MB inflated from 0.4 MB on the wire: peak memory grows by about the cap, not 400 MB."""
    out = subprocess.run(
        [sys.executable, "-c", BOMB_CHILD, str(TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    outcome, limit, wire, grown_mb = out.stdout.split()[0], *map(int, out.stdout.split()[1:])
    assert outcome == "ResponseTooLarge"
    assert limit == 4 << 20
    assert wire < 1 << 20
    assert grown_mb < 48, f"peak memory grew by {grown_mb} MB reading a 4 MB-capped answer"


def _media_job(url: str) -> Job:
    clip = Clip(clip=CLIP, title="Night Drive", audio_url=url)
    return Job(jobid=JOBID, email="a@example.com", status="completed", clips=(clip,))


async def test_a_media_file_over_its_cap_is_a_typed_error_and_leaves_no_file(
    tmp_path: Path,
) -> None:
    """A media body that never ends stops at max_download_bytes; nothing is left on disk."""
    server = RawServer(lambda conn, h: behave(conn, h))
    behave = endless_chunked(server)
    with server.running():
        async with client(server.url, max_download_bytes=3 << 20) as fm:
            with anyio.fail_after(20), pytest.raises(ResponseTooLarge) as caught:
                await fm.download(_media_job(f"{server.url}/a.m4a?sig=1"), tmp_path)
    assert caught.value.option == "max_download_bytes"
    assert caught.value.limit == 3 << 20
    assert caught.value.endpoint == f"GET {server.url}/a.m4a"
    assert list(tmp_path.iterdir()) == []  # no half file, no temporary file
    assert len(server.requests) == 1  # not retried


async def test_an_mp3_download_over_its_cap_is_a_typed_error() -> None:
    """GET /music/download streams through the same cap."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"Content-Type": "audio/mpeg"}, stream=_Chunks([b"m" * 4096] * 8)
        )

    async with (
        FlowMusic(
            token=TOKEN, transport=httpx.MockTransport(handler), max_download_bytes=10_000
        ) as fm,
        fm.music.download(CLIP) as stream,
    ):
        with pytest.raises(ResponseTooLarge, match="max_download_bytes=10,000"):
            async for _ in stream.aiter_bytes():
                pass


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "4MB"])
def test_caps_must_be_positive_integers(value: object) -> None:
    """A cap that cannot work is refused when the client is built."""
    from flowmusic_async import ConfigurationError

    for option in ("max_response_bytes", "max_download_bytes"):
        with pytest.raises(ConfigurationError, match=option):
            FlowMusic(token=TOKEN, **{option: value})  # type: ignore[arg-type]


def dripping(server: RawServer, *, content_type: str = "application/json"):  # type: ignore[no-untyped-def]
    """An answer whose body comes one byte a second: never a read timeout, never an end."""

    def behave(conn: socket.socket, _head: bytes) -> None:
        server.send(conn, head(Content_Type=content_type, Content_Length="1000000"))
        while not server.stopping.wait(1.0):
            server.send(conn, b" ")

    return behave


async def test_an_api_request_ends_at_its_overall_deadline_with_a_typed_timeout() -> None:
    """httpx's read timeout restarts with every byte: a drip must still end, typed, in time."""
    server = RawServer(lambda conn, h: behave(conn, h))
    behave = dripping(server)
    with server.running():
        async with client(server.url, http_timeout=1.6) as fm:
            started = anyio.current_time()
            with anyio.fail_after(20), pytest.raises(RequestTimeout) as caught:
                await fm.jobs.get(JOBID)
            took = anyio.current_time() - started
    error = caught.value
    assert error.deadline == pytest.approx(3 * 1.6)  # documented: 3x http_timeout
    assert error.endpoint == "GET /jobs/{jobid}"
    assert error.jobid == JOBID
    assert error.maybe_sent
    assert "GET /jobs/{jobid}" in str(error) and "4.8 s" in str(error)
    assert 4.8 <= took < 10
    assert len(server.requests) == 1  # a bound exceeded is final, not retried


async def test_a_download_ends_at_its_deadline_and_leaves_no_partial_file(
    tmp_path: Path,
) -> None:
    """download(deadline=) bounds the whole call, whatever the server's pace."""
    server = RawServer(lambda conn, h: behave(conn, h))
    behave = dripping(server, content_type="audio/mp4")
    with server.running():
        async with client(server.url, http_timeout=1.6) as fm:
            job = _media_job(f"{server.url}/a.m4a?sig=1")
            with anyio.fail_after(20), pytest.raises(RequestTimeout) as caught:
                await fm.download(job, tmp_path, deadline=2.0)
    assert caught.value.deadline == 2.0
    assert caught.value.jobid == JOBID
    assert f"job {JOBID}" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_download_deadline_is_checked_like_a_job_deadline() -> None:
    """A deadline that cannot work is refused before anything is sent."""
    from flowmusic_async import ValidationError

    async def main() -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise AssertionError("nothing may be sent")

        async with FlowMusic(token=TOKEN, transport=httpx.MockTransport(handler)) as fm:
            with pytest.raises(ValidationError, match="deadline"):
                await fm.download(_media_job("https://cdn.example/a.m4a"), ".", deadline=-1)

    anyio.run(main)


def test_each_deadline_derives_from_the_timeout_it_bounds() -> None:
    """The documented rule: 3x the longest timeout per API attempt, 20x per media file."""
    from flowmusic_async._http import MEDIA_DEADLINE_FACTOR, request_deadline

    assert request_deadline(httpx.Timeout(30.0)) == 90.0
    assert request_deadline(httpx.Timeout(5.0, read=300.0)) == 900.0  # sync-mode POSTs
    assert request_deadline(httpx.Timeout(None)) is None
    assert request_deadline(httpx.Timeout(30.0), MEDIA_DEADLINE_FACTOR) == 600.0


class _DrippingPost(httpx.AsyncBaseTransport):
    """The simulator, except that POST /music's answer (the job is created) drips forever."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.dripped = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method != "POST" or not request.url.path.endswith("/music"):
            return response
        await response.aread()
        outer = self

        class Drip(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                while True:
                    await anyio.sleep(0.05)
                    outer.dripped += 1
                    yield b" "

        return httpx.Response(
            response.status_code, headers={"Content-Type": "application/json"}, stream=Drip()
        )


@pytest.mark.parametrize("time_scale", [0.05, 0.002])
async def test_a_paid_post_past_its_deadline_is_reconciled_not_paid_twice(
    time_scale: float,
) -> None:
    """The answer of a POST that created a job never ends: the deadline ends the wait, and the
    engine looks for the job it paid for instead of sending the POST again. Still running
    (0.05): found and followed to the end. Already finished when looked for (0.002): not in
    the running list, which proves nothing after our own timeout: SubmissionUncertain."""
    from flowmusic_async import SubmissionUncertain
    from flowmusic_async.testing import SimAccount, Simulator

    sim = Simulator(
        accounts=(SimAccount(email="a@example.com", max_jobs=2, credits=1e4),),
        time_scale=time_scale,
        seed=3,
    )
    transport = _DrippingPost(sim.transport())
    async with (
        sim,
        FlowMusic(
            token=sim.token,
            base_url=sim.base_url,
            transport=transport,
            timing=Timing.scaled(time_scale),
            http_timeout=0.3,
        ) as fm,
    ):
        with anyio.fail_after(30):
            try:
                job = await fm.generate("a drip on the answer")
            except SubmissionUncertain:
                assert time_scale == 0.002
            else:
                assert time_scale == 0.05 and job.is_completed
    assert transport.dripped > 0
    assert sim.stats.jobs_created == 1


def _raw_deflate(data: bytes) -> bytes:
    """Deflate without the zlib header (``zlib.compress(wbits=)`` arrived in Python 3.11)."""
    packer = zlib.compressobj(wbits=-15)
    return packer.compress(data) + packer.flush()
