"""Tiny but real media bytes (WAV, PNG, JPEG, m4a-ish, mp3-ish) and signed media URLs."""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import struct
import zlib
from urllib.parse import urlencode

from ._clock import Clock

MEDIA_PATH = "/_sim/media/"
CONTENT_TYPES = {
    "wav": "audio/wav",
    "m4a": "audio/mp4",
    "mp3": "audio/mpeg",
    "png": "image/png",
    "jpg": "image/jpeg",
}


@functools.lru_cache(maxsize=64)
def wav(freq_hz: int = 440, *, seconds: float = 0.25, rate: int = 8000) -> bytes:
    """A valid 8-bit mono PCM WAV with a sine tone: a few KB."""
    n = int(seconds * rate)
    samples = bytes(int(128 + 100 * math.sin(2 * math.pi * freq_hz * i / rate)) for i in range(n))
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, rate, rate, 1, 8)
    data = struct.pack("<4sI", b"data", len(samples)) + samples
    return struct.pack("<4sI4s", b"RIFF", 4 + len(fmt) + len(data), b"WAVE") + fmt + data


@functools.lru_cache(maxsize=1)
def png() -> bytes:
    """A valid 8x8 RGB PNG (cover art)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + bytes((200, 80, 160)) * 8 for _ in range(8))
    header = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@functools.lru_cache(maxsize=1)
def jpeg() -> bytes:
    """A valid baseline JPEG: one 8x8 grey block (cover art, as the real API's `.jpg`).

    The smallest complete file: one quantisation table, one one-code Huffman table each for
    DC and AC, and a scan of two bits (DC difference 0, end of block), padded with ones.
    """

    def segment(marker: int, payload: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload

    quant = b"\x00" + bytes([1] * 64)
    frame = struct.pack(">BHHB", 8, 8, 8, 1) + b"\x01\x11\x00"  # 8-bit, 8x8, one component
    one_code = bytes([1] + [0] * 15) + b"\x00"  # one code of length 1, for symbol 0
    huffman = b"\x00" + one_code + b"\x10" + one_code  # DC table 0, AC table 0
    scan = b"\x01\x01\x00\x00\x3f\x00"  # one component, tables 0/0, full spectrum
    return (
        b"\xff\xd8"
        + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + segment(0xDB, quant)
        + segment(0xC0, frame)
        + segment(0xC4, huffman)
        + segment(0xDA, scan)
        + b"\x3f"
        + b"\xff\xd9"
    )


@functools.lru_cache(maxsize=1)
def m4a() -> bytes:
    """Bytes that start like an MPEG-4 audio file (an ftyp box), not a playable one."""
    ftyp = struct.pack(">I4s4sI", 24, b"ftyp", b"M4A ", 0) + b"M4A mp42"
    mdat = struct.pack(">I4s", 8 + 2048, b"mdat") + bytes(2048)
    return ftyp + mdat


@functools.lru_cache(maxsize=1)
def mp3() -> bytes:
    """An ID3v2 header followed by MPEG-1 Layer III frame headers: mp3-ish bytes."""
    id3 = b"ID3\x04\x00\x00\x00\x00\x00\x00"
    frame = b"\xff\xfb\x90\x64" + bytes(413)  # 128 kbps, 44.1 kHz: 417-byte frames
    return id3 + frame * 8


def media_bytes(ext: str, seed: int) -> bytes:
    if ext == "wav":
        return wav(220 + seed % 660)
    if ext == "png":
        return png()
    if ext == "jpg":
        return jpeg()
    if ext == "mp3":
        return mp3()
    return m4a()


class MediaSigner:
    """Builds `<origin>/_sim/media/<name>.<ext>` URLs, signed with an expiry when a TTL is set."""

    def __init__(self, clock: Clock, ttl_s: float | None, secret: bytes) -> None:
        self._clock = clock
        self._ttl = ttl_s
        self._secret = secret

    def url(self, origin: str, name: str, ext: str) -> str:
        url = f"{origin}{MEDIA_PATH}{name}.{ext}"
        if self._ttl is None:
            return url
        expires = int(self._clock.now() + self._ttl)
        return f"{url}?{urlencode({'exp': expires, 'sig': self._sign(name, ext, expires)})}"

    def valid(self, name: str, ext: str, exp: str | None, sig: str | None) -> bool:
        """Whether a media request may be served (always, when URLs are not signed)."""
        if self._ttl is None:
            return True
        if exp is None or sig is None or not exp.isdigit():
            return False
        if not hmac.compare_digest(sig, self._sign(name, ext, int(exp))):
            return False
        return self._clock.now() <= int(exp)

    def _sign(self, name: str, ext: str, expires: int) -> str:
        msg = f"{name}.{ext}:{expires}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()[:32]
