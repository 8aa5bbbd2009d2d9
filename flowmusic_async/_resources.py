"""The endpoint namespaces of `FlowMusic`: music, jobs, accounts, files; one method per endpoint.

Each method validates its arguments (via `_validation`) before anything is sent, calls
`HttpCore` once, and returns a decoded model. Nothing clever happens here: waiting for jobs,
capacity and resubmission live in the engine. Paid POSTs (/music, /music/edit) are never
retried; reads, DELETE /jobs/{jobid} and the maxJobs-only POST /accounts are.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import quote, unquote

import anyio
import httpx

from ._bodies import iter_body
from ._edits import EditHelpers
from ._errors import ValidationError
from ._http import HttpCore
from ._lanes import Place
from ._models import (
    ACCOUNT_DECODER,
    ACCOUNTS_DECODER,
    ASSET_DECODER,
    CLIP_PAGE_DECODER,
    JOB_DECODER,
    JOBS_DECODER,
    LYRICS_DECODER,
    STEMS_DECODER,
    USAGE_DECODER,
    Account,
    AccountJobs,
    Asset,
    ClipPage,
    Job,
    LibraryClip,
    Lyrics,
    Stems,
    Usage,
)
from ._names import safe_file_name
from ._requests import EditOperation, EditRequest, EffectName, Ghostwriter, Mode, Model, SongRequest
from ._validation import (
    account_add_body,
    account_limit_body,
    check_email,
    check_id,
    download_params,
    edit_body,
    guess_content_type,
    image_body,
    list_params,
    lyrics_body,
    music_body,
    upload_params,
)

__all__ = ["Accounts", "DownloadStream", "Files", "Jobs", "Music", "account_of_id"]

CoreGetter = Callable[[], HttpCore]
# Sync mode holds the connection until the song is rendered (40-150 s, stems up to 2 min).
LONG_READ_TIMEOUT = 300.0
_ID_ACCOUNT = re.compile(r"^user:\d+-(?P<email>[^\s]+@[^\s]+?)-(?:clip|job):")


def _segment(value: str) -> str:
    """A path segment: ids contain ':' and '@', so percent-encode everything."""
    return quote(value, safe="")


def account_of_id(resource_id: str) -> str | None:
    """The account email embedded in a clip id (``user:<uid>-<email>-clip:<uuid>``), if any.

    Edits run on the clip's own account, so a 429 on POST /music/edit means that account is
    full, not every account. Ids are otherwise treated as opaque.
    """
    match = _ID_ACCOUNT.match(resource_id)
    return match.group("email") if match else None


class _Namespace:
    def __init__(self, core: CoreGetter, timeout: httpx.Timeout) -> None:
        self._core = core
        self._timeout = timeout

    def _long_timeout(self) -> httpx.Timeout:
        """Timeouts for calls the server answers only when the work is done (sync jobs, lyrics).

        Read and write wait at least `LONG_READ_TIMEOUT`; None (no limit) stays None.
        """
        t = self._timeout

        def slow(value: float | None) -> float | None:
            return None if value is None else max(LONG_READ_TIMEOUT, value)

        return httpx.Timeout(connect=t.connect, read=slow(t.read), write=slow(t.write), pool=t.pool)


class DownloadStream:
    """An open download: metadata from the headers and the body as an async byte stream.

    Obtained from ``async with fm.music.download(id) as stream``; valid inside that block only.
    """

    def __init__(self, response: httpx.Response, *, endpoint: str, max_bytes: int) -> None:
        self._response = response
        self._endpoint = endpoint
        self._max_bytes = max_bytes

    def __repr__(self) -> str:
        return f"<DownloadStream filename={self.filename!r} content_type={self.content_type!r}>"

    @property
    def filename(self) -> str | None:
        """The file name from ``Content-Disposition`` (``<clip>.mp3``), if the server sent one.

        Reduced to a safe base name (`safe_file_name`): a server's ``../../x.mp3`` comes back
        as ``x.mp3``, so joining it to a folder stays in that folder.
        """
        header = self._response.headers.get("content-disposition", "")
        return safe_file_name(_disposition_filename(header))

    @property
    def content_type(self) -> str | None:
        """The ``Content-Type`` of the body (``audio/mpeg``)."""
        value: str | None = self._response.headers.get("content-type")
        return value

    @property
    def content_length(self) -> int | None:
        """The size of the decoded body in bytes, or None when it cannot be known in advance.

        A compressed body's Content-Length counts the compressed bytes, not what
        `aiter_bytes` yields, so it is not reported then.
        """
        if self._response.headers.get("content-encoding", "identity") != "identity":
            return None
        value = self._response.headers.get("content-length")
        return int(value) if value and value.isdigit() else None

    async def aiter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """Yield the body in chunks (of `chunk_size` bytes, the last one shorter, if given).

        Raises:
            TransportError: a network failure mid-body.
            ResponseTooLarge: the body is over the client's ``max_download_bytes``.
        """
        body = iter_body(
            self._response,
            limit=self._max_bytes,
            option="max_download_bytes",
            endpoint=self._endpoint,
        )
        if chunk_size is None:
            async for chunk in body:
                yield chunk
            return
        pending = bytearray()
        async for chunk in body:
            pending += chunk
            while len(pending) >= chunk_size:
                yield bytes(pending[:chunk_size])
                del pending[:chunk_size]
        if pending:
            yield bytes(pending)


class Music(EditHelpers, _Namespace):
    """Songs: generate, edit, lyrics, list and download. Reached as ``fm.music``."""

    async def create(
        self,
        prompt: str,
        *,
        instrumental: bool | None = None,
        lyrics: str | None = None,
        ghostwriter: Ghostwriter | None = None,
        ref_images: Sequence[str] = (),
        ref_audios: Sequence[str] = (),
        model: Model | None = None,
        email: str | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
        mode: Mode | None = None,
    ) -> Job:
        """POST /music: generate a song (up to two clips); spends credits; never retried.

        Takes the fields of `SongRequest`, and `mode`. With ``mode="async"`` the answer is the
        pending record (poll it with ``fm.jobs.get``); otherwise the call waits for the
        finished record (read timeout of at least 300 s).
        """
        request = SongRequest(
            prompt=prompt,
            instrumental=instrumental,
            lyrics=lyrics,
            ghostwriter=ghostwriter,
            ref_images=ref_images,
            ref_audios=ref_audios,
            model=model,
            email=email,
            reply_url=reply_url,
            reply_ref=reply_ref,
        )
        return await self.send_job("/music", music_body(request, mode=mode))

    async def edit(
        self,
        operation: EditOperation,
        clip: str,
        *,
        effect: EffectName | None = None,
        start_s: float | None = None,
        end_s: float | None = None,
        fade_in_s: float | None = None,
        fade_out_s: float | None = None,
        gain_db: float | None = None,
        mix: float | None = None,
        room_size: float | None = None,
        pan: float | None = None,
        bass_db: float | None = None,
        mid_db: float | None = None,
        treble_db: float | None = None,
        instruction: str | None = None,
        extend_s: float | None = None,
        extend_from_s: float | None = None,
        mask_start_s: float | None = None,
        mask_end_s: float | None = None,
        strength: float | None = None,
        lyrics: str | None = None,
        prompt: str | None = None,
        seed: int | None = None,
        title: str | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
        model: Model | None = None,
        mode: Mode | None = None,
    ) -> Job:
        """POST /music/edit: effect, extend, replace, cover or remix a clip; never retried.

        Takes the fields of `EditRequest` (contract 8.8), and `mode`; the operation decides
        which apply. For stems use `stems`, whose answer is not a job.
        """
        request = EditRequest(
            operation=operation,
            clip=clip,
            effect=effect,
            start_s=start_s,
            end_s=end_s,
            fade_in_s=fade_in_s,
            fade_out_s=fade_out_s,
            gain_db=gain_db,
            mix=mix,
            room_size=room_size,
            pan=pan,
            bass_db=bass_db,
            mid_db=mid_db,
            treble_db=treble_db,
            instruction=instruction,
            extend_s=extend_s,
            extend_from_s=extend_from_s,
            mask_start_s=mask_start_s,
            mask_end_s=mask_end_s,
            strength=strength,
            lyrics=lyrics,
            prompt=prompt,
            seed=seed,
            title=title,
            reply_url=reply_url,
            reply_ref=reply_ref,
            model=model,
        )
        return await self._run_edit(request, mode=mode)

    async def _run_edit(self, request: EditRequest, *, mode: Mode | None) -> Job:
        if request.operation == "stems":
            raise ValidationError("operation", "use fm.music.stems(clip); it returns Stems")
        return await self.send_job("/music/edit", edit_body(request, mode=mode))

    async def stems(self, clip: str) -> Stems:
        """Split a clip into drums, bass, vocals and other; always synchronous; never retried."""
        body = edit_body("stems", clip)
        core = self._core()
        return await core.request(
            "POST",
            "/music/edit",
            endpoint="POST /music/edit",
            decoder=STEMS_DECODER,
            safe=False,
            json=body,
            timeout=self._long_timeout(),
            named_email=account_of_id(clip),
        )

    async def send_job(self, path: str, body: dict[str, Any], *, place: Place | None = None) -> Job:
        """POST an already validated job body to /music or /music/edit; sent exactly once.

        For the engine: the body comes from `music_body` or `edit_body`, and `place` is the
        place among the requests in flight taken for this POST (`Submitter._reserved`). A 429
        names the account when the request did (``email``) or when the clip id reveals it.
        """
        if path not in ("/music", "/music/edit"):
            raise ValueError(f"not a job endpoint: {path!r}")
        named = body.get("email")
        if named is None and isinstance(body.get("clip"), str):
            named = account_of_id(body["clip"])
        core = self._core()
        return await core.request(
            "POST",
            path,
            endpoint=f"POST {path}",
            decoder=JOB_DECODER,
            safe=False,
            json=body,
            timeout=None if body.get("mode") == "async" else self._long_timeout(),
            named_email=named,
            extensions=place.extensions if place is not None else None,
        )

    async def lyrics(
        self, prompt: str, *, structure: str | None = None, email: str | None = None
    ) -> Lyrics:
        """POST /music/lyrics: lyrics and a sound prompt for a concept (about 30 s, no audio)."""
        body = lyrics_body(prompt, structure=structure, email=email)
        return await self._core().request(
            "POST",
            "/music/lyrics",
            endpoint="POST /music/lyrics",
            decoder=LYRICS_DECODER,
            safe=False,
            json=body,
            timeout=self._long_timeout(),
            named_email=email,
        )

    async def list(
        self, *, email: str | None = None, limit: int | None = None, offset: int | None = None
    ) -> ClipPage:
        """GET /music: one page of an account's clips, newest first."""
        params = list_params(email=email, limit=limit, offset=offset)
        return await self._core().request(
            "GET",
            "/music",
            endpoint="GET /music",
            decoder=CLIP_PAGE_DECODER,
            safe=True,
            params=params,
            named_email=email,
        )

    async def iter_all(
        self, *, email: str | None = None, page_size: int = 100
    ) -> AsyncIterator[LibraryClip]:
        """Yield every clip of the library page by page, following ``next`` until it is None."""
        list_params(email=email, limit=page_size)  # fail before the first request, not during
        offset: int | None = None
        while True:
            page = await self.list(email=email, limit=page_size, offset=offset)
            for clip in page.clips:
                yield clip
            # A server that repeats an offset would loop forever; stop instead.
            if page.next is None or not page.clips or page.next <= page.offset:
                return
            offset = page.next
            if email is None:
                email = page.email  # keep paging the same account, not whichever is picked next

    def download(
        self, id: str, *, format: str = "mp3"
    ) -> AbstractAsyncContextManager[DownloadStream]:
        """GET /music/download: the mp3 of a clip id or a completed jobid, as a stream.

        Use as ``async with fm.music.download(clip_id) as stream``; a jobid whose job is
        still running raises `NotReadyError` (409).
        """
        params = download_params(id, format=format)
        return self._download(params)

    @asynccontextmanager
    async def _download(self, params: dict[str, Any]) -> AsyncIterator[DownloadStream]:
        endpoint = "GET /music/download"
        ident = params["id"]
        jobid = ident if ident.startswith("job:") else None
        core = self._core()
        async with core.stream(
            "GET", "/music/download", endpoint=endpoint, params=params, jobid=jobid
        ) as response:
            yield DownloadStream(response, endpoint=endpoint, max_bytes=core.max_download_bytes)

    async def download_bytes(self, id: str, *, format: str = "mp3") -> bytes:
        """GET /music/download, read whole into memory."""
        async with self.download(id, format=format) as stream:
            return b"".join([chunk async for chunk in stream.aiter_bytes()])


class Jobs(_Namespace):
    """Jobs: poll, list running, cancel. Reached as ``fm.jobs``."""

    async def get(self, jobid: str) -> Job:
        """GET /jobs/{jobid}: the current record; 404 once unknown or expired."""
        check_id("jobid", jobid)
        return await self._core().request(
            "GET",
            f"/jobs/{_segment(jobid)}",
            endpoint="GET /jobs/{jobid}",
            decoder=JOB_DECODER,
            safe=True,
            jobid=jobid,
        )

    async def list(self) -> dict[str, AccountJobs]:
        """GET /jobs: running jobs per account email, with ``running`` vs ``max_jobs``."""
        return await self._core().request(
            "GET", "/jobs", endpoint="GET /jobs", decoder=JOBS_DECODER, safe=True
        )

    async def cancel(self, jobid: str) -> None:
        """DELETE /jobs/{jobid}: free the slot; the record turns failed/user_cancelled.

        Idempotent (also for finished jobs), so retried; credits are not refunded.
        """
        check_id("jobid", jobid)
        await self._core().request_empty(
            "DELETE",
            f"/jobs/{_segment(jobid)}",
            endpoint="DELETE /jobs/{jobid}",
            safe=True,
            jobid=jobid,
        )


class Accounts(_Namespace):
    """Flow Music accounts configured on useapi.net. Reached as ``fm.accounts``."""

    async def list(self) -> dict[str, Account]:
        """GET /accounts: every configured account by email (no balances)."""
        return await self._core().request(
            "GET", "/accounts", endpoint="GET /accounts", decoder=ACCOUNTS_DECODER, safe=True
        )

    async def get(self, email: str) -> Account:
        """GET /accounts/{email}: one account with live credit balances."""
        check_email("email", email)
        return await self._core().request(
            "GET",
            f"/accounts/{_segment(email)}",
            endpoint="GET /accounts/{email}",
            decoder=ACCOUNT_DECODER,
            safe=True,
            named_email=email,
        )

    async def add(self, refresh_token: str, *, max_jobs: int | None = None) -> Account:
        """POST /accounts: add or refresh the account a flowmusic.app refresh token belongs to."""
        body = account_add_body(refresh_token, max_jobs=max_jobs)
        return await self._core().request(
            "POST",
            "/accounts",
            endpoint="POST /accounts",
            decoder=ACCOUNT_DECODER,
            safe=False,
            json=body,
            timeout=self._long_timeout(),  # the server refreshes with Flow Music first
        )

    async def set_max_jobs(self, email: str, max_jobs: int) -> Account:
        """POST /accounts (maxJobs only): change an account's concurrency (1-16); retried."""
        body = account_limit_body(email, max_jobs)
        return await self._core().request(
            "POST",
            "/accounts",
            endpoint="POST /accounts",
            decoder=ACCOUNT_DECODER,
            safe=True,
            json=body,
            named_email=email,
        )

    async def delete(self, email: str) -> None:
        """DELETE /accounts/{email}: remove an account (a repeat would 404, so not retried)."""
        check_email("email", email)
        await self._core().request_empty(
            "DELETE",
            f"/accounts/{_segment(email)}",
            endpoint="DELETE /accounts/{email}",
            safe=False,
            email=email,
        )

    async def usage(self, email: str) -> Usage:
        """GET /accounts/usage: token and credit usage of one account."""
        check_email("email", email)
        return await self._core().request(
            "GET",
            "/accounts/usage",
            endpoint="GET /accounts/usage",
            decoder=USAGE_DECODER,
            safe=True,
            params={"email": email},
            named_email=email,
        )


class Files(_Namespace):
    """Reference assets for ``ref_images``/``ref_audios``. Reached as ``fm.files``."""

    async def upload(
        self,
        data_or_path: bytes | bytearray | memoryview | str | os.PathLike[str],
        *,
        content_type: str | None = None,
        email: str | None = None,
        strip_metadata: bool | None = None,
    ) -> Asset:
        """POST /files: upload an image (jpeg/png/webp, 20 MB) or audio (mp3/wav/m4a, 40 MB).

        A path's type is guessed from its extension unless ``content_type`` is given; bytes
        need ``content_type``. Size and type are checked before the file is read or sent.
        """
        if isinstance(data_or_path, (bytes, bytearray, memoryview)):
            if content_type is None:
                raise ValidationError("content_type", "required when uploading bytes")
            data = bytes(data_or_path)
            kind, params = upload_params(
                content_type, len(data), email=email, strip_metadata=strip_metadata
            )
        elif isinstance(data_or_path, (str, os.PathLike)):
            path = anyio.Path(data_or_path)
            kind = content_type or guess_content_type(data_or_path)
            try:
                size = (await path.stat()).st_size
            except (OSError, ValueError) as exc:  # ValueError: a NUL or lone surrogate in it
                raise ValidationError("data_or_path", f"cannot read {str(path)!r}: {exc}") from exc
            kind, params = upload_params(kind, size, email=email, strip_metadata=strip_metadata)
            data = await path.read_bytes()
        else:
            raise ValidationError(
                "data_or_path",
                f"must be bytes or a file path, got {type(data_or_path).__name__}",
            )
        return await self._core().request(
            "POST",
            "/files",
            endpoint="POST /files",
            decoder=ASSET_DECODER,
            safe=False,
            params=params,
            content=data,
            headers={"Content-Type": kind},
            timeout=self._long_timeout(),
            named_email=email,
        )

    async def generate(self, prompt: str, *, email: str | None = None) -> Asset:
        """POST /files/generate: an AI image to use as a reference (about 10-20 s)."""
        body = image_body(prompt, email=email)
        return await self._core().request(
            "POST",
            "/files/generate",
            endpoint="POST /files/generate",
            decoder=ASSET_DECODER,
            safe=False,
            json=body,
            timeout=self._long_timeout(),
            named_email=email,
        )


def _disposition_filename(header: str) -> str | None:
    """The file name of a Content-Disposition header (RFC 6266 ``filename*`` preferred)."""
    extended = re.search(r"filename\*\s*=\s*[^']*'[^']*'([^;]+)", header, re.I)
    if extended:
        return unquote(extended.group(1).strip())
    plain = re.search(r'filename\s*=\s*(?:"([^"]*)"|([^;]+))', header, re.I)
    if plain:
        return (plain.group(1) if plain.group(1) is not None else plain.group(2)).strip()
    return None
