"""FlowMusic: the client object; configuration, lifecycle, and the endpoint namespaces.

A `FlowMusic` is configured with keyword arguments only, opened with ``async with`` (which
creates the httpx client and an anyio task group for background work such as the poller),
and unusable after it closes. It may be shared freely between tasks while open.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import httpx

from . import _batch, _download, _logs
from ._engine import JobEngine, JobHandle, OnSubmitting
from ._errors import ClientClosedError, ConfigurationError, FlowMusicError, ValidationError
from ._events import EventHook, EventHooks
from ._http import HttpCore
from ._journal import Journal
from ._models import Clip, Job
from ._resources import Accounts, Files, Jobs, Music, account_of_id
from ._scheduler import SlotUsage
from ._timing import Timing
from ._validation import edit_body, music_body
from ._webhooks import Webhooks

__all__ = ["DEFAULT_BASE_URL", "FlowMusic"]

DEFAULT_BASE_URL = "https://api.useapi.net/v1/flowmusic"
TOKEN_ENV = "USEAPI_TOKEN"
BASE_URL_ENV = "FLOWMUSIC_BASE_URL"


class FlowMusic:
    """Async client for useapi.net's Flow Music API.

    Use as ``async with FlowMusic() as fm:``; endpoints are grouped as ``fm.music``,
    ``fm.jobs``, ``fm.accounts`` and ``fm.files``. The token never appears in ``repr`` or in
    any error, and is sent per API request only, so media downloads through the same httpx
    client never carry it. Safe to share between tasks while open.

    Args:
        token: the useapi.net API token; defaults to the ``USEAPI_TOKEN`` environment variable.
        base_url: the API root; defaults to the ``FLOWMUSIC_BASE_URL`` environment variable,
            else the real API. ``http://`` is allowed only for loopback hosts (simulators).
            A loopback URL with the real API's `timing` logs a warning: a simulator's fast
            songs would still be looked at only on the real schedule.
        timeout: seconds for connect/read/write/pool; sync-mode job calls read for at least
            300 s because the server answers only when the song is rendered.
        transport: an httpx transport (tests: ``httpx.MockTransport`` or the simulator's).
        http_client: an ``httpx.AsyncClient`` to use instead of creating one; never closed here.
        max_retries: retries for requests that are safe to repeat (never for paid POSTs).
        timing: how often to poll and how long jobs take (`Timing`); `Timing.scaled(f)` for a
            simulator running at time scale f.
        event_hooks: callables receiving an `Event` for each step of each job.

    ``FLOWMUSIC_LOG=debug`` (or ``info``) in the environment shows the library's log records
    on stderr; see `flowmusic_async._logs`.

    Raises:
        ConfigurationError: no token, an http:// URL to a remote host, or conflicting options.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        base_url: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        max_retries: int = 4,
        timing: Timing | None = None,
        event_hooks: Iterable[EventHook] = (),
    ) -> None:
        _logs.configure_from_env()
        self._token = _check_token(token if token is not None else os.environ.get(TOKEN_ENV))
        _logs.redact(self._token)
        if base_url is None:
            base_url = os.environ.get(BASE_URL_ENV, "").strip() or DEFAULT_BASE_URL
        self._base_url = _check_base_url(base_url)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigurationError(
                f"timeout must be a positive number of seconds, got {timeout!r}"
            )
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if transport is not None and http_client is not None:
            raise ConfigurationError("pass transport= or http_client=, not both")
        self._timeout = float(timeout)
        self._max_retries = max_retries
        self._transport = transport
        self._user_client = http_client
        self._timing = timing if timing is not None else Timing()
        _warn_if_real_timing_on_loopback(self._base_url, self._timing)
        self._events = EventHooks(event_hooks)
        self._state = "new"  # new -> open -> closed; never reopened
        self._core: HttpCore | None = None
        self._owned_client: httpx.AsyncClient | None = None
        self._task_group: anyio.abc.TaskGroup | None = None

        self.music = Music(self._require_core, self._timeout)
        self.jobs = Jobs(self._require_core, self._timeout)
        self.accounts = Accounts(self._require_core, self._timeout)
        self.files = Files(self._require_core, self._timeout)
        self._engine = JobEngine(self, timing=self._timing, events=self._events)
        self.webhooks = Webhooks(self._engine)

    def __repr__(self) -> str:
        return f"<FlowMusic base_url={self._base_url!r} state={self._state}>"

    @property
    def base_url(self) -> str:
        """The API root requests go to."""
        return self._base_url

    @property
    def closed(self) -> bool:
        """True once the client has been closed (it cannot be reopened)."""
        return self._state == "closed"

    @property
    def _http(self) -> HttpCore:
        """The HttpCore (raises `ClientClosedError` when not open)."""
        return self._require_core()

    def _require_core(self) -> HttpCore:
        if self._state == "new":
            raise ClientClosedError("use `async with FlowMusic(...) as fm:` before calling the API")
        if self._state == "closed" or self._core is None:
            raise ClientClosedError("this FlowMusic client is closed; create a new one")
        return self._core

    async def __aenter__(self) -> FlowMusic:
        if self._state != "new":
            raise (
                ClientClosedError("this FlowMusic client is closed; create a new one")
                if self._state == "closed"
                else FlowMusicError("this FlowMusic client is already open")
            )
        if self._user_client is not None:
            client = self._user_client
        else:
            client = self._owned_client = httpx.AsyncClient(
                transport=self._transport, timeout=self._timeout
            )
        self._core = HttpCore(
            client=client, base_url=self._base_url, token=self._token, max_retries=self._max_retries
        )
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self._state = "open"
        try:
            await self._start_background(task_group)
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state != "open":
            return
        try:
            await self._stop_background()
        finally:
            await self._close()

    async def _close(self) -> None:
        """Cancel background work, leave the task group, close the httpx client we created."""
        self._state = "closed"
        task_group, self._task_group = self._task_group, None
        try:
            if task_group is not None:
                task_group.cancel_scope.cancel()
                # The body's own exception is not handed to the task group: anyio would wrap it
                # in an ExceptionGroup, and callers should see a plain ValidationError et al.
                # The group still raises if a background task crashed.
                await task_group.__aexit__(None, None, None)
        finally:
            self._core = None
            client, self._owned_client = self._owned_client, None
            if client is not None:
                # Shielded: closing must finish even when the caller is being cancelled.
                with anyio.CancelScope(shield=True):
                    await client.aclose()

    async def _start_background(self, task_group: anyio.abc.TaskGroup) -> None:
        """Start the poller in the client's task group (it idles until a job is pending)."""
        await task_group.start(self._engine.poller.run)

    async def _stop_background(self) -> None:
        """Nothing to drain: the poller is cancelled with the group and fails open waits clearly."""

    # ----- the job engine ------------------------------------------------------------------------

    async def submit(
        self,
        prompt: str,
        *,
        instrumental: bool | None = None,
        lyrics: str | None = None,
        ghostwriter: str | None = None,
        ref_images: Sequence[str] = (),
        ref_audios: Sequence[str] = (),
        model: str | None = None,
        email: str | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
        timeout: float | None = None,
        client_ref: str | None = None,
        on_submitting: OnSubmitting | None = None,
    ) -> JobHandle:
        """Submit a song in async mode; return as soon as the server has accepted it.

        Waits for a free slot first (see `capacity()`), so it never overruns an account. The
        returned handle is awaitable (the completed `Job`) and has `.jobid` and `.cancel()`.

        Args:
            prompt, instrumental, lyrics, ghostwriter, ref_images, ref_audios, model, email,
                reply_url, reply_ref: as for `fm.music.create`; `email` pins the account.
            timeout: deadline for the job in seconds from acceptance (default
                `Timing.job_timeout`).
            client_ref: the reference for reconciling this submission (a journal's); default new.
            on_submitting: awaited before each POST with what is about to be sent.

        Raises:
            ValidationError: before anything is sent. Any final API error (400, 401, 422, a
            402/596 with no other account), or `SubmissionUncertain`.
        """
        self._require_core()
        body = music_body(
            prompt,
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
        return await self._engine.submit(
            "/music",
            body,
            account=email,
            client_ref=client_ref,
            on_submitting=on_submitting,
            timeout=timeout,
        )

    async def generate(self, prompt: str, *, timeout: float | None = None, **params: Any) -> Job:
        """Generate a song and return the completed job (its clips).

        Takes the keyword arguments of `submit`. Cancelling the calling task cancels the job
        server-side (DELETE /jobs/{jobid}, shielded) and frees its slot.

        Raises:
            JobFailed: the job ended failed (the record is on the error).
            JobTimeout: `timeout` passed; the job is left running (see `wait`).
        """
        return await self._run_to_end(self.submit(prompt, timeout=timeout, **params))

    async def submit_edit(
        self, operation: str, clip: str, *, timeout: float | None = None, **params: Any
    ) -> JobHandle:
        """Submit an edit (effect, extend, replace, cover, remix) in async mode.

        Runs on the clip's own account, whose slots are counted like a song's. `stems` is
        synchronous and returns four clips rather than a job: use `fm.music.stems(clip)`.

        Args:
            operation: the edit operation.
            clip: the clip id to edit.
            timeout: deadline from acceptance.
            params: the operation's parameters, as for `fm.music.edit`.
        """
        self._require_core()
        if operation == "stems":
            raise ValidationError(
                "operation", "stems is synchronous and returns four clips: use fm.music.stems(clip)"
            )
        body = edit_body(operation, clip, **params)
        return await self._engine.submit(
            "/music/edit", body, account=account_of_id(clip), timeout=timeout
        )

    async def edit(
        self, operation: str, clip: str, *, timeout: float | None = None, **params: Any
    ) -> Job:
        """Run an edit to its end and return the completed job; see `submit_edit`."""
        return await self._run_to_end(self.submit_edit(operation, clip, timeout=timeout, **params))

    async def wait(self, jobid: str, *, timeout: float | None = None) -> Job:
        """Wait for any job by id, including one submitted by an earlier process.

        Raises:
            JobFailed, JobTimeout, NotFoundError (unknown or expired), PermissionDeniedError.
        """
        self._require_core()
        return await self._engine.wait(jobid, timeout=timeout)

    async def _run_to_end(self, submitting: Awaitable[JobHandle]) -> Job:
        # submit/submit_edit return without a checkpoint once their shielded POST has created
        # the job, so a cancellation can only land before (no job) or in the wait below.
        handle = await submitting
        try:
            return await handle.result()
        except anyio.get_cancelled_exc_class():
            if not handle.done:
                await handle.cancel()  # shielded inside
            raise

    def generate_many(
        self,
        requests: Iterable[str | Mapping[str, Any]],
        *,
        journal: str | os.PathLike[str] | Journal | None = None,
        concurrency: int | None = None,
        timeout: float | None = None,
        retry_failed: bool = False,
    ) -> _batch.generate_many:
        """Generate many songs; yields one `Outcome` per request as each finishes.

        Use as ``async with fm.generate_many(prompts) as outcomes: async for o in outcomes``.
        Every slot is kept busy and none overrun; one failure never ends the batch, but a 401
        or running out of funded accounts stops it with `BatchAborted` (after the running jobs
        are collected). With `journal`, a rerun resumes without paying twice.

        Args:
            requests: prompts, or mappings of `fm.music.create` keywords.
            journal: an SQLite file path (or an open `Journal`) recording every step.
            concurrency: at most this many requests in progress at once (default: capacity).
            timeout: per-job deadline from acceptance.
            retry_failed: with a journal, submit again requests that failed in an earlier run.
        """
        self._require_core()
        return _batch.generate_many(
            self,
            requests,
            journal=journal,
            concurrency=concurrency,
            timeout=timeout,
            retry_failed=retry_failed,
        )

    async def download(
        self,
        target: Job | Clip,
        dest: str | os.PathLike[str],
        *,
        formats: Sequence[str] = ("m4a",),
        sidecar: bool = True,
        jobid: str | None = None,
        prompt: str | None = None,
    ) -> list[Path]:
        """Save a job's clips (or one clip) to `dest`; see `flowmusic_async._download.download`.

        Args:
            target: a completed job or one of its clips.
            dest: the folder to write into (created if missing).
            formats: any of "m4a", "wav", "mp3", "image".
            sidecar: also write a JSON sidecar of metadata per clip.
            jobid: for a bare clip, the job it came from (to refresh expired URLs).
            prompt: recorded in the sidecar.
        """
        self._require_core()
        return await _download.download(
            self, target, dest, formats=formats, sidecar=sidecar, jobid=jobid, prompt=prompt
        )

    def add_event_hook(self, hook: EventHook) -> None:
        """Call `hook(event)` for every engine `Event` (quick, synchronous callables only)."""
        self._events.add(hook)

    def capacity(self) -> dict[str, SlotUsage]:
        """Per-account slot usage as the scheduler sees it (empty until the first submission)."""
        return self._engine.scheduler.snapshot()

    @property
    def timing(self) -> Timing:
        return self._timing


def _check_token(token: str | None) -> str:
    if token is None or not token.strip():
        raise ConfigurationError(
            f"no API token: pass token= or set the {TOKEN_ENV} environment variable"
        )
    token = token.strip()
    # A header value with control characters or spaces would be refused by httpx with an error
    # quoting the header; say it here without repeating the token.
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        raise ConfigurationError("the API token contains whitespace or control characters")
    return token


def _check_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(f"base_url must be an https:// URL, got {base_url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"base_url {base_url!r} uses plain http:// to a non-loopback host; the token would "
            "travel unencrypted. Use https://, or http:// only for localhost/127.0.0.1/::1"
        )
    return base_url.rstrip("/")


def _warn_if_real_timing_on_loopback(base_url: str, timing: Timing) -> None:
    # A loopback URL is almost always a simulator, which usually runs at a time scale well
    # below 1; with the real API's schedule its 1-second songs would still take 20 s or more.
    host = urlsplit(base_url).hostname or ""
    if _is_loopback(host) and timing.first_check_after >= Timing().first_check_after:
        _logs.logger.warning(
            "base_url %s is a loopback address (a simulator?) but timing is the real API's: "
            "each job is first looked at %g s after it is accepted, then every %g s, however "
            "fast the simulator runs. Pass timing=Timing.scaled(TIME_SCALE) with the "
            "simulator's time scale (CLI: --time-scale), or use sim.client().",
            base_url,
            timing.first_check_after,
            timing.poll_interval,
        )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
