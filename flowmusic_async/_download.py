"""Save a job's clips to disk: media files with safe, predictable names, plus a JSON sidecar each.

A file only ever appears under its final name once it is complete: bytes are streamed into a
hidden temporary file in the destination folder, flushed to disk, then ``os.replace``'d into
place; on any failure or cancellation the temporary file is removed.

Names are unique per clip: ``<safe title>-<8 hex of the clip id>``, and when that name is
already another clip's (its sidecar says so, or an earlier clip of the same call took it),
a longer run of the clip id (`_claim_stem`). "Already downloaded" means this clip's sidecar
records the file and the file is a regular file (not a symlink) of the recorded size; then a
rerun skips it without a request. A file at the name that no sidecar of this clip vouches
for is downloaded again and replaced. Bodies are capped (``max_download_bytes``) and each
attempt at a file has a deadline (``media_deadline``).

Media URLs (``audio_url``, ``wav_url``, ``image_url``) are public, signed links: they are fetched
with the client's httpx client but never with the API token. When one answers 403/404/410 (the
signature expired) the job is fetched again for fresh links and the file is tried once more. A
URL that is no fetchable http(s) URL at all is a broken answer: `DecodeError` naming the clip.

Downloads reach the client only through `DownloadAPI` (the media httpx client, the client's
`RetryPolicy`, ``jobs.get`` and the mp3 endpoint), which ``FlowMusic.download`` provides.
Transient failures are retried by that one `RetryPolicy`, like every other safe request.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import httpx
import msgspec

from flowmusic_async._bodies import iter_body, read_body, unlink_body
from flowmusic_async._errors import (
    HTTPX_ERRORS,
    DecodeError,
    FlowMusicError,
    RateLimitError,
    RedirectError,
    RequestTimeout,
    ServerError,
    TransportError,
    ValidationError,
    error_from_httpx,
    error_from_response,
)
from flowmusic_async._models import Clip, Job
from flowmusic_async._names import safe_title
from flowmusic_async._resources import DownloadStream, account_of_id
from flowmusic_async._retry import RetryPolicy, parse_retry_after

__all__ = [
    "FORMATS",
    "DownloadAPI",
    "Sidecar",
    "SidecarFile",
    "download",
    "safe_stem",
    "short_clip_id",
]

Format = Literal["m4a", "wav", "mp3", "image"]
FORMATS: tuple[Format, ...] = ("m4a", "wav", "mp3", "image")


class DownloadAPI(Protocol):
    """What a download needs from a client, and nothing else (``FlowMusic.download`` gives it).

    Attributes:
        media_client: lends the httpx client media URLs are fetched with (never with the
            token) for one download.
        retry_policy: the client's one retry policy; each file's transient failures use it.
        max_download_bytes: the client's cap on one media file.
        media_deadline: the overall deadline of one attempt at one file.
    """

    def media_client(self) -> AbstractAsyncContextManager[httpx.AsyncClient]: ...

    @property
    def retry_policy(self) -> RetryPolicy: ...

    @property
    def max_download_bytes(self) -> int:
        """The cap on one media file's decoded bytes (`ResponseTooLarge` beyond it)."""
        ...

    @property
    def media_deadline(self) -> float | None:
        """Seconds one attempt at one file may take, body included (None: no limit)."""
        ...

    async def get_job(self, jobid: str) -> Job:
        """GET /jobs/{jobid}: the job again, for fresh media links."""
        ...

    def open_mp3(self, clip_id: str) -> AbstractAsyncContextManager[DownloadStream]:
        """GET /music/download of a clip, as a stream (the API's own retries apply)."""
        ...


# URLs longer than this are refused before any request: no CDN signs links this long, and
# httpx would otherwise fail deep in the connection code (or the server with a 414).
_MAX_URL_CHARS = 16_384
# A hidden ``.part`` file this old, for the same target, is left by a download that was killed
# (SIGKILL, power loss: nothing ran its cleanup). A live writer touches its file at least every
# `WRITE_BATCH_BYTES`, so an old modification time means nobody is writing it any more. Two
# processes downloading the same clip into one folder at once stay safe: each one's file is
# young while it writes.
STALE_PART_AGE_S = 15 * 60
# Bytes of a body handed to a worker thread to write at once (see `_write_atomically`).
WRITE_BATCH_BYTES = 1 << 20
# Statuses a signed media URL answers once its signature has expired.
_EXPIRED_STATUSES = frozenset({403, 404, 410})
# An error page of a CDN is a few KB; only its first bytes are read.
_MAX_ERROR_BODY = 64 * 1024
_IMAGE_EXTENSIONS = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp"}
_IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/jpg": "jpg", "image/webp": "webp"}


class SidecarFile(msgspec.Struct, frozen=True, kw_only=True):
    """One media file a sidecar vouches for: its name in the same folder, size and sha256.

    ``sha256`` is None for a file that was already present when the sidecar was first written.
    """

    name: str
    size: int
    sha256: str | None = None


class Sidecar(msgspec.Struct, frozen=True, kw_only=True):
    """``<stem>.json`` next to a clip's files: what the clip is and which files hold it."""

    clip: str
    jobid: str | None = None
    email: str | None = None
    prompt: str | None = None
    title: str | None = None
    lyrics: str | None = None
    lyrics_timing: tuple[tuple[float, float], ...] | None = None
    seed: int | None = None
    duration_s: float | None = None
    files: dict[str, SidecarFile] = {}


_SIDECAR_DECODER = msgspec.json.Decoder(Sidecar)


def short_clip_id(clip_id: str) -> str:
    """The first 8 hex digits of the uuid after ``clip:``; a hash of the id if it has none."""
    _, marker, tail = clip_id.rpartition("clip:")
    digits = re.sub(r"[^0-9a-fA-F]", "", tail)[:8].lower() if marker else ""
    if len(digits) == 8:
        return digits
    return hashlib.sha256(clip_id.encode()).hexdigest()[:8]


def safe_stem(title: str | None, clip_id: str) -> str:
    """The file name (without extension) for a clip: ``<safe title>-<short clip id>``.

    Safe on Windows, macOS and Linux: reserved and control characters removed, whitespace
    collapsed, no trailing dots or spaces, no reserved device names, title capped at 80
    characters. The short clip id keeps two songs with the same title apart.
    """
    return f"{safe_title(title)}-{short_clip_id(clip_id)}"


def _image_ext_from_url(url: str) -> str | None:
    suffix = Path(urlsplit(url).path).suffix.lower().lstrip(".")
    return _IMAGE_EXTENSIONS.get(suffix)


def _image_ext_from_type(content_type: str | None) -> str:
    media_type = (content_type or "").split(";")[0].strip().lower()
    return _IMAGE_TYPES.get(media_type, "img")


def _checked_url(url: str, *, clip_id: str, fmt: Format) -> str:
    """The media URL if httpx can fetch it; else `DecodeError` naming the clip and the field.

    The URL comes from the server's answer, so a broken one is a broken answer: retrying it
    cannot help, and httpx's own errors (`InvalidURL`, `ValueError`, `UnsupportedProtocol`
    retried as if transient) would not say which clip it was.
    """
    field = {"m4a": "audio_url", "wav": "wav_url", "image": "image_url"}.get(fmt, fmt)
    problem: str | None = None
    if len(url) > _MAX_URL_CHARS:
        problem = f"is {len(url):,} characters long"
    else:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError) as error:  # "http://[::1", a surrogate, ...
            problem = f"cannot be parsed ({error})"
        else:
            if parsed.scheme not in ("http", "https"):
                problem = f"is not an http(s) URL (scheme {parsed.scheme!r})"
            elif not parsed.host:
                problem = "has no host"
            elif any(ch.isspace() for ch in url):
                # httpx would percent-encode it, even in the host or before the scheme; a
                # signed link with a raw space is damaged, and a guess could fetch another file.
                problem = "contains whitespace"
    if problem is not None:
        raise DecodeError(f"clip {clip_id}: its {field} {problem}; it cannot be downloaded")
    return url


class _StaleParts:
    """The hidden ``.part`` files killed downloads left, one directory scan per folder.

    Scanning the folder for every clip cost time in proportion to the files already in it (a
    batch of thousands of songs into one folder made that quadratic). A folder is scanned
    again once `STALE_PART_AGE_S` has passed, so parts that go stale later are found too.
    Used from worker threads, hence the lock; a few hundred folders are remembered at most.
    """

    MAX_FOLDERS = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scanned: dict[str, tuple[float, list[str]]] = {}  # folder -> (when, names)

    def needs_scan(self, dest: Path, now: float) -> bool:
        scanned = self._scanned.get(str(dest))
        return scanned is None or now - scanned[0] > STALE_PART_AGE_S

    def scan(self, dest: Path, now: float) -> None:
        """List the stale parts of ``dest`` (blocking: run it in a worker thread)."""
        cutoff = now - STALE_PART_AGE_S
        names: list[str] = []
        with suppress(OSError), os.scandir(dest) as entries:
            for entry in entries:
                if entry.name.startswith(".") and entry.name.endswith(".part"):
                    with suppress(OSError):  # gone already (another rerun)
                        if entry.is_file() and entry.stat().st_mtime < cutoff:
                            names.append(entry.name)
        with self._lock:
            self._scanned.pop(str(dest), None)
            self._scanned[str(dest)] = (now, names)
            while len(self._scanned) > self.MAX_FOLDERS:
                del self._scanned[next(iter(self._scanned))]

    def remove(self, dest: Path, stem: str) -> None:
        """Delete this target's stale parts found by the last scan (usually there are none)."""
        prefix = f".{stem}."
        with self._lock:
            scanned = self._scanned.get(str(dest))
            if scanned is None:
                return
            names = scanned[1]
            mine = [name for name in names if name.startswith(prefix)]
            for name in mine:
                names.remove(name)
        for name in mine:
            with suppress(OSError):  # gone already, or not ours to remove
                os.unlink(os.path.join(dest, name))


_stale_parts = _StaleParts()


async def _remove_stale_parts(dest: Path, stem: str, *, now: float | None = None) -> None:
    """Delete hidden ``.<stem>.*.part`` files left in ``dest`` by a killed download.

    Only this target's (same stem) and only stale ones (see `STALE_PART_AGE_S`), so another
    process writing the same file right now keeps its temporary file.
    """
    now = time.time() if now is None else now
    if _stale_parts.needs_scan(dest, now):
        await anyio.to_thread.run_sync(_stale_parts.scan, dest, now)
    _stale_parts.remove(dest, stem)


def _describe(url: str) -> str:
    # For error messages: the query string holds the URL's signature, which is nobody's business.
    parts = urlsplit(url)
    return f"GET {parts.scheme}://{parts.netloc}{parts.path}"


class _Retryable(Exception):
    """Internal: this attempt failed in a way another attempt may fix.

    Attributes:
        error: what the caller gets if no retry is left.
        retry_after: the server's ``Retry-After`` (429, 503), in seconds.
    """

    def __init__(self, error: FlowMusicError, *, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after

    @property
    def never_sent(self) -> bool:
        """The connection never opened: retried for the connect budget, not max_retries."""
        return isinstance(self.error, TransportError) and not self.error.maybe_sent


class _Expired(Exception):
    """Internal: the signed media URL was refused (403/404/410); fresh links may help."""

    def __init__(self, error: FlowMusicError) -> None:
        super().__init__(str(error))
        self.error = error


class _Written(msgspec.Struct, frozen=True, kw_only=True):
    path: Path
    size: int
    sha256: str


class _Body:
    """What one attempt is streaming: the chunks plus what the headers promised."""

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        endpoint: str,
        content_type: str | None,
        content_length: int | None,
    ) -> None:
        self.chunks = chunks
        self.endpoint = endpoint
        self.content_type = content_type
        self.content_length = content_length


def _create_part(dest: Path, stem: str) -> tuple[int, str]:
    """A new hidden temporary file ``.<stem>.<random>.part`` in ``dest``, open for writing.

    Created with mode 0o666, which the kernel narrows by the umask: these become the user's
    songs, readable by other users and tools exactly when the umask says so (mkstemp's 0o600
    is meant for secrets). O_EXCL makes the name ours alone.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = os.path.join(dest, f".{stem}.{secrets.token_hex(4)}.part")
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name for {stem!r} in {dest}")


async def _write_atomically(dest: Path, stem: str, body: _Body, final_name: str) -> _Written:
    """Stream ``body`` into a temporary file in ``dest`` and rename it to ``final_name``."""
    # Creating a file can take a millisecond or more (a journaling filesystem on a VM): not
    # on the event loop.
    fd, temp_name = await anyio.to_thread.run_sync(_create_part, dest, stem)
    handle: BinaryIO = os.fdopen(fd, "wb")
    digest = hashlib.sha256()
    size = 0
    # Chunks go to a worker thread about a MiB at a time: a thread hop per network chunk
    # (a few KB) cost more CPU than the writing itself.
    pending: list[bytes] = []
    pending_size = 0
    try:
        try:
            async for chunk in body.chunks:
                digest.update(chunk)
                size += len(chunk)
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= WRITE_BATCH_BYTES:
                    await anyio.to_thread.run_sync(handle.writelines, pending)
                    pending, pending_size = [], 0
        except RedirectError:
            raise
        except TransportError as exc:  # the connection was lost mid-body
            raise _Retryable(exc) from exc
        if body.content_length is not None and size != body.content_length:
            raise _Retryable(
                TransportError(
                    f"{body.endpoint}: the body ended after {size} of "
                    f"{body.content_length} announced bytes",
                    maybe_sent=True,
                    endpoint=body.endpoint,
                )
            )
        final = dest / final_name
        await anyio.to_thread.run_sync(_finish_file, handle, pending, temp_name, final)
    except BaseException:
        # Synchronous on purpose: runs to the end even while the task is being cancelled.
        handle.close()
        with suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    return _Written(path=final, size=size, sha256=digest.hexdigest())


def _finish_file(handle: BinaryIO, rest: list[bytes], temp_name: str, final: Path) -> None:
    """Write the last chunks, make the file durable, then give it its final name."""
    handle.writelines(rest)
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    os.replace(temp_name, final)


@asynccontextmanager
async def _open_media_url(api: DownloadAPI, url: str) -> AsyncIterator[_Body]:
    """GET a public media URL without credentials; map failures to _Retryable/_Expired."""
    async with (
        api.media_client() as client,
        _media_body(client, url, limit=api.max_download_bytes) as body,
    ):
        yield body


@asynccontextmanager
async def _media_body(client: httpx.AsyncClient, url: str, *, limit: int) -> AsyncIterator[_Body]:
    request = client.build_request("GET", url)
    # The token is added per API request, never as a client default; this makes sure of it even
    # if a caller passed an httpx client that carries one.
    request.headers.pop("Authorization", None)
    endpoint = _describe(url)
    try:
        response = await client.send(request, stream=True, auth=None, follow_redirects=True)
    except HTTPX_ERRORS as exc:
        error = error_from_httpx(exc, endpoint=endpoint)
        if type(error) is TransportError:  # a lost connection; not a refused redirect
            raise _Retryable(error) from exc
        raise error from exc
    try:
        if response.status_code != 200:
            try:
                # Its status says what happened; a body over the cap or cut off is dropped.
                text = await read_body(
                    response, limit=_MAX_ERROR_BODY, option="max_response_bytes", endpoint=endpoint
                )
            except FlowMusicError:
                text = b""
            answer = (response.status_code, response.headers, text)
            error = error_from_response(answer, endpoint=endpoint)
            if response.status_code in _EXPIRED_STATUSES:
                raise _Expired(error)
            if isinstance(error, (ServerError, RateLimitError)):
                # A CDN's 429 or 503 may say when to come back; the policy caps the wait.
                wait = parse_retry_after(response.headers.get("Retry-After"), cap=math.inf)
                raise _Retryable(error, retry_after=wait)
            raise error
        length = response.headers.get("Content-Length")
        encoded = response.headers.get("Content-Encoding", "identity") != "identity"
        yield _Body(
            iter_body(response, limit=limit, option="max_download_bytes", endpoint=endpoint),
            endpoint=endpoint,
            content_type=response.headers.get("Content-Type"),
            # A compressed body's length says nothing about the decoded bytes we count.
            content_length=int(length) if length and length.isdigit() and not encoded else None,
        )
    finally:
        await response.aclose()
        unlink_body(response)


@asynccontextmanager
async def _open_mp3(api: DownloadAPI, clip_id: str) -> AsyncIterator[_Body]:
    """GET /music/download through the API (with the token, like any endpoint call).

    Failures to start are not wrapped: the API layer already retried them. Only a body cut off
    midway (caught in _write_atomically) is retried here.
    """
    async with api.open_mp3(clip_id) as stream:
        yield _Body(
            stream.aiter_bytes(),
            endpoint="GET /music/download",
            content_type=stream.content_type,
            content_length=stream.content_length,
        )


class _Links:
    """The clips' current media URLs; refreshed at most once per file from GET /jobs/{jobid}."""

    def __init__(self, api: DownloadAPI, clips: Sequence[Clip], jobid: str | None) -> None:
        self._api = api
        self.jobid = jobid
        self.clips = {clip.clip: clip for clip in clips}

    def url(self, clip_id: str, fmt: Format) -> str | None:
        clip = self.clips[clip_id]
        return {"m4a": clip.audio_url, "wav": clip.wav_url, "image": clip.image_url}.get(fmt)

    async def refresh(
        self, clip_id: str, fmt: Format, stale_url: str, error: FlowMusicError
    ) -> str:
        """A fresh URL for the file whose ``stale_url`` was refused, or re-raise ``error``."""
        current = self.url(clip_id, fmt)
        if current is not None and current != stale_url:
            return current  # another file of this job already fetched fresh links
        if self.jobid is None:
            raise error  # nothing to refresh from: pass jobid= when downloading a bare Clip
        job = await self._api.get_job(self.jobid)
        for clip in job.clips:
            if clip.clip in self.clips:
                self.clips[clip.clip] = clip
        fresh = self.url(clip_id, fmt)
        if fresh is None or fresh == stale_url:
            raise error
        return fresh


def _read_sidecar(path: Path) -> Sidecar | None:
    """The sidecar at `path`, or None: absent, unreadable, or not a regular file (a symlink
    could make another folder's sidecar vouch for files here)."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None
        return _SIDECAR_DECODER.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError):
        return None


def _stem_candidates(title: str | None, clip_id: str) -> Iterator[str]:
    """File stems for a clip, shortest first: ``<title>-<8 hex>`` (`safe_stem`), then longer
    runs of the clip's uuid, then the whole uuid with a hash of the whole clip id (unique)."""
    yield safe_stem(title, clip_id)
    base = safe_title(title)
    _, marker, tail = clip_id.rpartition("clip:")
    digits = re.sub(r"[^0-9a-fA-F]", "", tail).lower() if marker else ""
    whole = hashlib.sha256(clip_id.encode()).hexdigest()
    if len(digits) < 32:
        digits = whole
    # Time-ordered uuids (v7) share their first 12 digits for a millisecond, 8 for a minute.
    yield f"{base}-{digits[:16]}"
    yield f"{base}-{digits[:32]}-{whole[:12]}"


def _claim_stem(folder: Path, clip: Clip, taken: set[str]) -> tuple[str, Sidecar | None]:
    """The stem this clip's files get in `folder`, and its sidecar there if one exists.

    The first candidate (`_stem_candidates`) that no earlier clip of this call took and whose
    sidecar is absent or describes this very clip: two clips with the same title and the same
    first 8 hex digits never share a file, and a rerun finds each clip's files again.
    """
    stem = ""
    for stem in _stem_candidates(clip.title, clip.clip):
        if stem in taken:
            continue
        found = _read_sidecar(folder / f"{stem}.json")
        if found is None or found.clip == clip.clip:
            return stem, found
    return stem, None  # the last candidate hashes the whole clip id: no other clip has it


def _is_complete(folder: Path, stem: str, recorded: SidecarFile) -> bool:
    """True when this clip's sidecar vouches for the file and it is there, whole.

    The recorded name must be one of this stem's files, a regular file (a symlink at the name
    is not a download of ours), with the recorded size.
    """
    name = recorded.name
    if Path(name).name != name or not name.startswith(f"{stem}."):
        return False
    try:
        info = (folder / name).lstat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == recorded.size


def _write_sidecar(path: Path, sidecar: Sidecar) -> None:
    data = msgspec.json.format(msgspec.json.encode(sidecar), indent=2) + b"\n"
    with suppress(OSError):
        if path.read_bytes() == data:
            return
    fd, temp_name = _create_part(path.parent, path.stem)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


async def _fetch_file(
    api: DownloadAPI, links: _Links, clip: Clip, fmt: Format, dest: Path, stem: str
) -> _Written | None:
    """Download one format of one clip, retrying transient failures; None if it has no URL.

    A refused (expired) media URL is replaced once by a fresh one from ``jobs.get``; the
    fresh URL is a new request with retries of its own.
    """
    url = None if fmt == "mp3" else links.url(clip.clip, fmt)
    if fmt != "mp3" and url is None:
        return None
    try:
        return await _fetch_with_retries(api, links, clip, fmt, dest, stem, url)
    except _Expired as exc:
        if url is None:
            raise exc.error from None
        fresh = await links.refresh(clip.clip, fmt, url, exc.error)
    try:
        return await _fetch_with_retries(api, links, clip, fmt, dest, stem, fresh)
    except _Expired as exc:
        raise exc.error from None


async def _fetch_with_retries(
    api: DownloadAPI,
    links: _Links,
    clip: Clip,
    fmt: Format,
    dest: Path,
    stem: str,
    url: str | None,
) -> _Written:
    """One file from one URL (None: GET /music/download), in the client's retry loop.

    The body only sorts failures: 5xx, 429 and lost connections are retried (honouring
    ``Retry-After``; a connection that never opened counts against the connect budget, like
    an API request's), an expired URL (`_Expired`) and everything else end the loop.
    """
    async for attempt in api.retry_policy.retrying():
        try:
            if url is None:
                opener = _open_mp3(api, clip.clip)
            else:
                url = _checked_url(url, clip_id=clip.clip, fmt=fmt)
                opener = _open_media_url(api, url)
            limit = api.media_deadline
            with anyio.move_on_after(math.inf if limit is None else limit):
                async with opener as body:
                    ext: str = fmt
                    if fmt == "image":
                        ext = (url and _image_ext_from_url(url)) or _image_ext_from_type(
                            body.content_type
                        )
                    return await _write_atomically(dest, stem, body, f"{stem}.{ext}")
            assert limit is not None  # only the deadline ends the block without a result
            what = "GET /music/download" if url is None else _describe(url)
            raise RequestTimeout(
                f"{what}: clip {clip.clip} ({fmt}) not downloaded within {limit:g} s (one "
                "attempt's deadline, 20x http_timeout)",
                deadline=limit,
                endpoint=what,
                jobid=links.jobid,
            )
        except _Retryable as exc:
            if attempt.retry(retry_after=exc.retry_after, never_sent=exc.never_sent) is None:
                raise exc.error from None
    raise AssertionError("without a stop event the loop ends only by a return or a raise")


async def download(
    api: DownloadAPI,
    target: Job | Clip,
    dest: str | os.PathLike[str],
    *,
    formats: Sequence[str] = ("m4a",),
    sidecar: bool = True,
    jobid: str | None = None,
    prompt: str | None = None,
    deadline: float | None = None,
) -> list[Path]:
    """Save every clip of a completed job (or one clip) into ``dest``; return the paths.

    Each file is named ``<safe title>-<short clip id>.<ext>`` (a longer id when that name is
    another clip's); a file this clip's sidecar records, present whole, is not downloaded
    again (without a sidecar, ``sidecar=False``, files are always fetched). Transient failures
    (5xx, lost connections, short bodies) are retried by the client's `RetryPolicy`; an
    expired media URL is refreshed once through ``jobs.get(jobid)``. Files are fetched one
    after another. Temporary files a killed earlier run left for the same clip are removed
    once stale (`STALE_PART_AGE_S`).

    Args:
        api: what the download needs from an entered client (``FlowMusic.download`` gives it).
        target: a completed ``Job`` (all its clips) or a single ``Clip``.
        dest: the folder to write into; created if missing.
        formats: any of ``"m4a"`` (``audio_url``), ``"wav"`` (``wav_url``), ``"mp3"``
            (GET /music/download) and ``"image"`` (``image_url``; png, jpg or webp). A format a
            clip has no URL for is skipped.
        sidecar: also write ``<stem>.json`` per clip with prompt, title, lyrics, lyrics timing,
            seed, duration, email, jobid, clip id and the files written (name, size, sha256).
        jobid: for a bare ``Clip``, the job it came from, so expired URLs can be refreshed.
        prompt: recorded in the sidecar; defaults to the job's echoed ``request["prompt"]``.
        deadline: seconds the whole call may take; a file not finished by then is not left
            behind (files already finished stay). None: each attempt at each file is still
            bounded by ``api.media_deadline``.

    Returns:
        The media files written or already present, then each clip's sidecar, clip by clip.

    Raises:
        ValidationError: an unknown format, or a job that is not completed.
        DecodeError: a media URL in the job that is no fetchable http(s) URL (names the clip).
        ResponseTooLarge: a file over ``api.max_download_bytes``.
        RequestTimeout: `deadline` passed, or one attempt at a file ran past its deadline.
        RedirectError: a media URL redirects in a loop, or to a URL that is not http(s).
        FlowMusicError: a download that failed for good (the error of its last attempt).
    """
    if deadline is None:
        return await _download_all(api, target, dest, formats, sidecar, jobid, prompt)
    with anyio.move_on_after(deadline):
        return await _download_all(api, target, dest, formats, sidecar, jobid, prompt)
    what = f"job {target.jobid}" if isinstance(target, Job) else f"clip {target.clip}"
    raise RequestTimeout(
        f"download of {what}: not finished within its deadline of {deadline:g} s",
        deadline=deadline,
        endpoint="download",
        jobid=target.jobid if isinstance(target, Job) else jobid,
    )


async def _download_all(
    api: DownloadAPI,
    target: Job | Clip,
    dest: str | os.PathLike[str],
    formats: Sequence[str],
    sidecar: bool,
    jobid: str | None,
    prompt: str | None,
) -> list[Path]:
    """`download` without its overall deadline."""
    wanted: list[Format] = []
    for name in formats:
        if name not in FORMATS:
            raise ValidationError(
                "formats", f"unknown download format {name!r}; choose from {', '.join(FORMATS)}"
            )
        if name not in wanted:
            wanted.append(name)
    email: str | None = None
    if isinstance(target, Job):
        if not target.is_completed:
            raise ValidationError(
                "target", f"job {target.jobid} is {target.status}; only a completed job has clips"
            )
        clips: Sequence[Clip] = target.clips
        jobid = target.jobid
        email = target.email
        if prompt is None:
            echoed: Any = target.request.get("prompt")
            prompt = echoed if isinstance(echoed, str) else None
    else:
        clips = (target,)
        email = account_of_id(target.clip)  # a clip id names its account
    folder = Path(dest)
    await anyio.to_thread.run_sync(lambda: folder.mkdir(parents=True, exist_ok=True))
    links = _Links(api, clips, jobid)
    paths: list[Path] = []
    taken: set[str] = set()  # stems given to earlier clips of this call
    for clip in clips:
        stem, previous = _claim_stem(folder, clip, taken)
        taken.add(stem)
        await _remove_stale_parts(folder, stem)
        sidecar_path = folder / f"{stem}.json"
        recorded: dict[str, SidecarFile] = dict(previous.files) if previous else {}
        for fmt in wanted:
            known = recorded.get(fmt)
            if known is not None and _is_complete(folder, stem, known):
                paths.append(folder / known.name)
                continue
            written = await _fetch_file(api, links, clip, fmt, folder, stem)
            if written is None:
                continue
            recorded[fmt] = SidecarFile(
                name=written.path.name, size=written.size, sha256=written.sha256
            )
            paths.append(written.path)
        if sidecar:
            # Forget files that are gone (deleted by hand) so the sidecar never vouches for them.
            kept = {k: v for k, v in recorded.items() if _is_complete(folder, stem, v)}
            document = Sidecar(
                clip=clip.clip,
                jobid=jobid,
                email=email,
                prompt=prompt,
                title=clip.title,
                lyrics=clip.lyrics,
                lyrics_timing=clip.lyrics_timing,
                seed=clip.seed,
                duration_s=clip.duration_s,
                files=kept,
            )
            await anyio.to_thread.run_sync(_write_sidecar, sidecar_path, document)
            paths.append(sidecar_path)
    return paths
