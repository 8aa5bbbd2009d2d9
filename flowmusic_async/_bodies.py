"""Response bodies read within a byte cap, counted after decompression, while they stream.

A body over its cap stops the read with `ResponseTooLarge` (naming the cap and the option that
sets it) before it is held in memory: an endless chunked body costs at most the cap, and a
gzip bomb is inflated a bounded step at a time, so it never expands past the cap either.
Every failure while reading becomes one of the library's errors (`error_from_httpx`).
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator

import httpx

from ._errors import HTTPX_ERRORS, DecodeError, ResponseTooLarge, error_from_httpx

__all__ = [
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "iter_body",
    "read_body",
    "unlink_body",
]

# A job record is a few KB and GET /jobs a few hundred; 4 MiB leaves room for any real answer
# (a lyrics-timed job with long lyrics is ~50 KB) while a hostile one costs at most that much.
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
# The largest real file is a wav of a long song, ~50-100 MB; 2 GiB is far above it, and still
# stops an endless body before it fills a disk.
DEFAULT_MAX_DOWNLOAD_BYTES = 2 * 1024 * 1024 * 1024
# At most this many decoded bytes come out of one call into zlib: a gzip bomb's 64 KiB chunk
# would otherwise inflate to 64 MiB in one go, whatever the cap.
_INFLATE_STEP = 256 * 1024


class _Inflater:
    """gzip/deflate decoding that never produces more than `_INFLATE_STEP` bytes at once."""

    def __init__(self, encoding: str) -> None:
        self._deflate = encoding == "deflate"
        # gzip (16 + MAX_WBITS); "deflate" is zlib-wrapped by the RFC, raw in some servers.
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | (0 if self._deflate else 16))
        self._started = False

    @classmethod
    def for_encoding(cls, header: str | None) -> _Inflater | None:
        encoding = (header or "").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            return cls("deflate" if encoding == "deflate" else "gzip")
        return None

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decoded pieces of `data`, each at most `_INFLATE_STEP` bytes (zlib.error if broken)."""
        while data:
            try:
                out = self._zlib.decompress(data, _INFLATE_STEP)
            except zlib.error:
                if not (self._deflate and not self._started):
                    raise
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate after all
                out = self._zlib.decompress(data, _INFLATE_STEP)
            self._started = True
            if out:
                yield out
            data = self._zlib.unconsumed_tail
            if self._zlib.eof:
                return  # trailing bytes after the stream: ignored, as httpx does


async def iter_body(
    response: httpx.Response,
    *,
    limit: int,
    option: str,
    endpoint: str,
    jobid: str | None = None,
) -> AsyncIterator[bytes]:
    """The decoded body of a streamed `response`, stopped with an error past `limit` bytes.

    gzip and deflate are decoded here, a bounded step at a time, so a compression bomb never
    inflates past the cap in memory; other encodings (br, zstd, stacked) are httpx's to decode.

    Raises:
        ResponseTooLarge: more than `limit` decoded bytes (or a Content-Length saying so).
        FlowMusicError: what `error_from_httpx` makes of a failure while reading.
    """

    def too_large() -> ResponseTooLarge:
        return ResponseTooLarge(
            endpoint=endpoint,
            limit=limit,
            option=option,
            status=response.status_code,
            jobid=jobid,
        )

    header = response.headers.get("content-encoding")
    inflater = _Inflater.for_encoding(header)
    identity = (header or "identity").strip().lower() == "identity"
    length = response.headers.get("content-length", "")
    if identity and length.isdigit() and int(length) > limit:
        raise too_large()
    size = 0
    try:
        if response.is_stream_consumed:
            # Built with its body already in memory (an httpx.Response(content=...) that a
            # MockTransport returned): only the cap is left to apply.
            if len(response.content) > limit:
                raise too_large()
            yield response.content
        elif identity:
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > limit:
                    raise too_large()
                yield chunk
        elif inflater is not None:
            async for raw in response.aiter_raw():
                for chunk in inflater.feed(raw):
                    size += len(chunk)
                    if size > limit:
                        raise too_large()
                    yield chunk
        else:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise too_large()
                yield chunk
    except zlib.error as exc:
        raise DecodeError(
            f"{endpoint}: the body is not valid {header} ({exc})",
            status=response.status_code,
            endpoint=endpoint,
            jobid=jobid,
        ) from None
    except HTTPX_ERRORS as exc:
        raise error_from_httpx(exc, endpoint=endpoint, jobid=jobid) from exc


async def read_body(
    response: httpx.Response,
    *,
    limit: int,
    option: str,
    endpoint: str,
    jobid: str | None = None,
) -> bytes:
    """`iter_body` joined: the whole decoded body of a streamed response, at most `limit`."""
    chunks = [
        chunk
        async for chunk in iter_body(
            response, limit=limit, option=option, endpoint=endpoint, jobid=jobid
        )
    ]
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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
