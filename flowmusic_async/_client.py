"""FlowMusic: the client object; configuration, lifecycle, and the endpoint namespaces.

A `FlowMusic` is configured with keyword arguments only, opened with ``async with`` (or
``await fm.open()``), and unusable after it closes. Opening creates the httpx client and the
client's own task group (`ServiceHost`), where the poller and every piece of work that must
finish whatever happens to its caller run. That group lives in a task of its own, so the client
may be opened in one task and closed in another (a bot's setup and shutdown hooks), and
``await fm.aclose()`` is safe from any task, any number of times. It may be shared freely
between tasks while open.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import httpx
import msgspec

from . import _download, _logs, _telemetry
from ._balances import Balances, balance_reader
from ._batch import GenerateMany
from ._bodies import DEFAULT_MAX_DOWNLOAD_BYTES, DEFAULT_MAX_RESPONSE_BYTES
from ._config import client_config
from ._download import Format
from ._edits import JobEditHelpers
from ._errors import (
    ClientClosedError,
    FlowMusicError,
    TransportError,
    ValidationError,
    WrongEventLoopError,
)
from ._events import EventHook, EventHooks
from ._handles import JobHandle, run_to_end
from ._host import ServiceHost
from ._http import MEDIA_DEADLINE_FACTOR, HttpCore, request_deadline
from ._journal import Journal
from ._lanes import Clients, HttpBackend, Place, open_clients
from ._models import Account, AccountJobs, Clip, Job, Usage
from ._redact import remember_secret
from ._requests import EditOperation, EditRequest, EffectName, Ghostwriter, Model, SongRequest
from ._resources import Accounts, DownloadStream, Files, Jobs, Music, account_of_id
from ._retry import RetryPolicy
from ._scheduler import CapacitySnapshot, CapacityView, Scheduler
from ._spend import Spending
from ._submission import JobPath, OnSubmitting, QueuedJob, SubmitHooks
from ._submitter import Submitter
from ._telemetry import TelemetrySetting
from ._timing import Timing
from ._tracker import JobTracker
from ._validation import check_id, check_seconds, edit_body, music_body
from ._webhooks import Webhooks

__all__ = ["FlowMusic"]

logger = logging.getLogger("flowmusic_async")


class FlowMusic(JobEditHelpers):
    """Async client for useapi.net's Flow Music API.

    Use as ``async with FlowMusic() as fm:``; endpoints are grouped as ``fm.music``,
    ``fm.jobs``, ``fm.accounts`` and ``fm.files``. The token never appears in ``repr`` or in
    any error, and is sent per API request only, so media downloads through the same httpx
    client never carry it. Safe to share between tasks while open.

    Args:
        token: the useapi.net API token; defaults to the ``USEAPI_TOKEN`` environment variable.
        base_url: the API root; defaults to the ``FLOWMUSIC_BASE_URL`` environment variable,
            else the real API. ``http://`` is allowed only for loopback hosts (simulators).
        http_timeout: seconds for each HTTP connect/read/write/pool, or an ``httpx.Timeout``;
            sync-mode job calls read for at least 300 s because the server answers only when
            the song is rendered. Each attempt of an API request must also end, body
            included, within 3x its longest timeout (`RequestTimeout` otherwise; a media file
            within 20x). (A job's own deadline is `deadline=` on `generate` et al.)
        transport: an httpx transport (tests: ``httpx.MockTransport`` or the simulator's).
        http_client: an ``httpx.AsyncClient`` to use instead of creating our own; never closed
            here, and its transport and limits are yours (keep ``max_connections`` above the
            requests you run at once: a paid POST queued in its pool has left, and is sent even
            if its caller gives up meanwhile). Without it the client sends through a transport
            of small connection pools (see docs/architecture.md, `_lanes.py`).
        max_retries: retries for requests that are safe to repeat (never for paid POSTs).
        timing: how often to poll and how long jobs take (`Timing`); `Timing.scaled(f)` for a
            simulator running at time scale f. Default: `Timing.from_env()`, the real API's,
            scaled by the ``FLOWMUSIC_TIME_SCALE`` environment variable when it is set. When
            jobs end on a much faster clock than the timing's, one warning says so.
        event_hooks: callables receiving an `Event` for each step of each job.
        reply_url: the callback URL for jobs submitted without one (see `fm.webhooks`).
        max_response_bytes: the cap on an API answer's body, decoded size counted while it
            streams (`ResponseTooLarge` beyond it); 4 MiB by default.
        max_download_bytes: the cap on one downloaded media file; 2 GiB by default.
        http_backend: what our own httpx clients send through: ``"httpx"``, small httpcore
            pools ("lanes"); ``"aiohttp"``, aiohttp's pool (asyncio only, needs the extra
            ``aiohttp``: the httpx-aiohttp package); ``"auto"`` (default) picks the lanes (see
            docs/architecture.md, "Connection lanes"). Not with `transport` / `http_client`.
        spend_limit: the most credits this client may spend over its life; a submission that
            would cross it is refused before it is sent (`BudgetExceeded`). Credits of jobs
            on their way count as well as those spent (docs/concepts/spending.md).
        tenant_spend_limit: the same limit for each `tenant=` of its own.
        tenant_spend_limits: tenant key -> its own limit (over `tenant_spend_limit`).
        costs: operation -> credits (``{"song": 12}``), over the defaults.
        min_credits_left: a floor under every account's live balance: an account that would
            drop below it with one more job is taken out of rotation until its balance rises.
            Each account's balance is read the more often the nearer it is to the floor (at
            most every `Timing.poll_interval`), never once per song; being the server's
            figure, the floor holds across processes sharing the accounts.
        telemetry: OpenTelemetry spans and metrics of every submission (the ``otel`` extra;
            docs/observability.md). None (default): on when the application has set a global
            tracer provider by the time the client opens; True: on, with the global
            providers; False: off; a `Telemetry`: on, with the providers it names.
        tenant_weights: a tenant's share of the slots against other tenants' (default 1 each;
            see `tenant=` on `generate`, and docs/concepts/serving-many-users.md).
        tenant_max_jobs: the most jobs a tenant may have in flight (reserved or running) at
            once: one number for every tenant (work without a tenant included), or a mapping
            tenant -> cap for the tenants it names.

    ``FLOWMUSIC_LOG=debug`` (or ``info``) in the environment shows the library's log records
    on stderr; see `flowmusic_async._logs`.

    Raises:
        ConfigurationError: no token, an http:// URL to a remote host, conflicting options, or
            an invalid ``FLOWMUSIC_TIME_SCALE``.
    """

    music: Music
    """POST/GET /music and /music/edit: one method per endpoint."""
    jobs: Jobs
    """GET /jobs, GET and DELETE /jobs/{jobid}."""
    accounts: Accounts
    """GET/POST/DELETE /accounts and usage."""
    files: Files
    """Reference assets: upload and generate."""
    webhooks: Webhooks
    """The receiver for `reply_url` callbacks."""

    def __init__(
        self,
        *,
        token: str | None = None,
        base_url: str | None = None,
        http_timeout: float | httpx.Timeout = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        max_retries: int = 4,
        timing: Timing | None = None,
        event_hooks: Iterable[EventHook] = (),
        reply_url: str | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
        http_backend: HttpBackend = "auto",
        spend_limit: float | None = None,
        tenant_spend_limit: float | None = None,
        tenant_spend_limits: Mapping[str, float] | None = None,
        costs: Mapping[str, float] | None = None,
        min_credits_left: float | None = None,
        telemetry: TelemetrySetting = None,
        tenant_weights: Mapping[str, float] | None = None,
        tenant_max_jobs: int | Mapping[str, int] | None = None,
    ) -> None:
        _logs.configure_from_env()
        config = client_config(
            token=token,
            base_url=base_url,
            http_timeout=http_timeout,
            transport=transport,
            http_client=http_client,
            max_retries=max_retries,
            timing=timing,
            event_hooks=event_hooks,
            reply_url=reply_url,
            max_response_bytes=max_response_bytes,
            max_download_bytes=max_download_bytes,
            http_backend=http_backend,
            tenant_weights=tenant_weights,
            tenant_max_jobs=tenant_max_jobs,
            spend_limit=spend_limit,
            tenant_spend_limit=tenant_spend_limit,
            tenant_spend_limits=tenant_spend_limits,
            costs=costs,
            min_credits_left=min_credits_left,
            telemetry=telemetry,
        )
        self._token = config.token
        self._base_url = config.base_url
        self._http_backend = config.http_backend
        self._max_bytes = (config.max_response_bytes, config.max_download_bytes)
        self._reply_url = config.reply_url
        self._timeout = config.http_timeout
        self._max_retries = config.max_retries
        self._transport = config.transport
        self._user_client = config.http_client
        self._timing = config.timing
        self._telemetry = config.telemetry
        self._spend = config.spend
        floor = config.min_credits_left
        self._policy = self._timing.retry_policy(max_retries=config.max_retries)
        self._events = EventHooks(config.event_hooks)
        self._state = "new"  # new -> open -> closing -> closed; never reopened
        # (pid, event loop token) of the open: the client is used there and nowhere else.
        self._opened_in: tuple[int, object] = (os.getpid(), None)
        self._core: HttpCore | None = None
        self._clients: Clients | None = None  # the API's and the downloads' httpx clients
        self._host = ServiceHost(on_stop=self._release_resources)
        # Only once every argument is accepted: a refused client never sent, nor registered, it.
        remember_secret(self._token)

        self.music = Music(self._require_core, self._timeout)
        self.jobs = Jobs(self._require_core, self._timeout)
        self.accounts = Accounts(self._require_core, self._timeout)
        self.files = Files(self._require_core, self._timeout)
        api = _EngineAPI(self)
        scheduler = Scheduler(
            tenant_weights=config.tenant_weights, tenant_max_jobs=config.tenant_max_jobs
        )
        self._tracker = JobTracker(
            api,
            host=self._host,
            capacity=scheduler,
            timing=self._timing,
            events=self._events,
            # A method of the submitter, created next: the poller only calls it once running.
            refresh_accounts=lambda: self._submitter.refresh_accounts_quietly(),
        )
        self._submitter = Submitter(
            api,
            tracker=self._tracker,
            scheduler=scheduler,
            host=self._host,
            timing=self._timing,
            policy=self._policy,
            events=self._events,
            spend=self._spend,
            balances=None
            if floor is None
            else Balances(
                read=balance_reader(self.accounts),
                ledger=self._spend,
                min_credits_left=floor,
                # How old a balance may be depends on how near the floor it is (`refusal`).
                refresh_every=self._timing.accounts_refresh,
            ),
        )
        self.webhooks = Webhooks(self._tracker)

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
    def left_running(self) -> list[tuple[str, str | None]]:
        """After closing: (jobid, email) of the accepted jobs that were still running and that
        nobody cancelled. They are paid and keep running; ``fm.wait(jobid)`` on a new client
        picks each one up."""
        return self._tracker.left_running

    @property
    def _http(self) -> HttpCore:
        """The HttpCore (raises `ClientClosedError` when not open)."""
        return self._require_core()

    def _require_core(self) -> HttpCore:
        if self._state == "new":
            raise ClientClosedError("use `async with FlowMusic(...) as fm:` before calling the API")
        if self._core is None:
            raise ClientClosedError("this FlowMusic client is closed; create a new one")
        self._check_same_loop()
        return self._core

    def _check_same_loop(self) -> None:
        """Refuse, before anything is sent, a use from another process or event loop.

        The client's connections, task group and poller live in the event loop that opened
        it; from another loop a POST would leave and be paid, then its bookkeeping fail.
        """
        pid, token = self._opened_in
        if os.getpid() != pid:
            raise WrongEventLoopError(
                "this FlowMusic client was opened in process "
                f"{pid} and is used in process {os.getpid()} (after fork()); nothing was sent. "
                "Open a new client in each process"
            )
        if _loop_token() != token:
            raise WrongEventLoopError(
                "this FlowMusic client was opened in another event loop (or thread) than the "
                "one using it; nothing was sent. Open one client per event loop, in the loop "
                "that uses it (e.g. in the same test fixture or worker)"
            )

    async def open(self) -> FlowMusic:
        """Open the client: the httpx client, the background task group, the poller.

        ``async with FlowMusic(...) as fm`` calls this; call it directly when the client must
        outlive one block (a bot's setup hook), and `aclose` it later from any task.

        Raises:
            FlowMusicError: already open; ClientClosedError: closed (clients are not reopened).
        """
        if self._state != "new":
            raise (
                FlowMusicError("this FlowMusic client is already open")
                if self._state == "open"
                else ClientClosedError("this FlowMusic client is closed; create a new one")
            )
        # First: http_backend="aiohttp" under trio is refused before anything opens.
        clients = open_clients(
            user_client=self._user_client,
            transport=self._transport,
            timeout=self._timeout,
            backend=self._http_backend,
        )
        self._state = "open"
        self._opened_in = (os.getpid(), _loop_token())
        self._clients = clients
        self._core = HttpCore(
            client=self._clients.api,
            base_url=self._base_url,
            token=self._token,
            policy=self._policy,
            timeout=self._timeout,
            max_response_bytes=self._max_bytes[0],
            max_download_bytes=self._max_bytes[1],
        )
        try:
            await self._host.start()
            self._host.start_background(self._tracker.run, name="poller")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.aclose()
            raise
        _telemetry.attach(self._telemetry, self._events, self._capacity_view)
        return self

    async def aclose(self) -> None:
        """Close the client; safe from any task, and any number of times.

        In order: no new paid POST leaves (submissions still waiting for a slot end with
        `ClientClosedError`; nothing was paid for them); POSTs already on their way and the
        DELETEs of cancelled waits finish (up to `Timing.close_timeout`); waits still open end
        with `ClientClosedError` carrying their jobid and account, and those jobs are left
        running (listed in `left_running` and in a warning); then the poller and the httpx
        client stop. The work runs in the client's own task group: if the caller is cancelled
        meanwhile, closing still completes.
        """
        if self._state == "new":
            self._state = "closed"
            return
        if self._state != "closed":
            self._check_same_loop()
        if self._state == "open":
            self._state = "closing"
            try:
                self._host.start_background(self._shut_down, name="close")
            except ClientClosedError:
                # The host is not taking work (it never got going, or the event loop is
                # shutting down): nothing to drain, just make sure it ends.
                self._host.request_stop()
        await self._host.wait_stopped()
        self._state = "closed"

    async def __aenter__(self) -> FlowMusic:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _shut_down(self) -> None:
        """Runs in the host: the shutdown order of docs/architecture.md, then the host stops
        (which closes the resources)."""
        try:
            self._submitter.close()  # 1. no new paid POST
            with anyio.CancelScope(shield=True):
                # 2. A task cancelled along with us has been woken but may not have run yet;
                # three turns of the loop let it reach its cancellation handler (its DELETE).
                for _ in range(3):
                    await anyio.lowlevel.checkpoint()
            # ... then POSTs on their way and DELETEs finish, for at most `close_timeout`.
            if not await self._host.drain(self._timing.close_timeout):
                logger.warning(
                    "closing: requests still in flight after %.1f s; stopping them",
                    self._timing.close_timeout,
                )
            self._tracker.close()  # 3. open waits end; their jobs are left running
        finally:
            self._host.request_stop()  # 4. background work stops

    async def _release_resources(self) -> None:
        """The host has stopped: close the httpx clients we created."""
        self._state = "closed"
        self._core = None
        clients, self._clients = self._clients, None
        if clients is not None:
            await clients.aclose()

    # ----- the job engine ------------------------------------------------------------------------

    async def submit(
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
        deadline: float | None = None,
        client_ref: str | None = None,
        on_submitting: OnSubmitting | None = None,
        tenant: str | None = None,
    ) -> JobHandle:
        """Submit a song in async mode; return as soon as the server has accepted it.

        Waits for a free slot first (see `capacity()`), so it never overruns an account. The
        returned handle is awaitable (the completed `Job`) and has `.jobid` and `.cancel()`.

        Args:
            prompt, instrumental, lyrics, ghostwriter, ref_images, ref_audios, model, email,
                reply_url, reply_ref: the fields of `SongRequest`; `email` pins the account;
                `reply_url` defaults to the client's.
            deadline: seconds the job may take from acceptance (default `Timing.job_timeout`).
            client_ref: the reference for reconciling this submission (a journal's); default new.
            on_submitting: awaited before each POST with what is about to be sent; if it
                raises, nothing is sent and the submission fails with a `FlowMusicError`.
            tenant: whose work it is (a Discord guild, a web app's user): free slots are
                shared fairly between tenants (`tenant_weights`, `tenant_max_jobs`),
                `cancel_queued(tenant)` stops its songs not yet sent, and its events carry it.

        Raises:
            ValidationError: before anything is sent. Any final API error (400, 401, 422, a
            402/596 with no other account), or `SubmissionUncertain`.
        """
        self._require_core()
        request = SongRequest(
            prompt=prompt,
            instrumental=instrumental,
            lyrics=lyrics,
            ghostwriter=ghostwriter,
            ref_images=ref_images,
            ref_audios=ref_audios,
            model=model,
            email=email,
            reply_url=reply_url if reply_url is not None else self._reply_url,
            reply_ref=reply_ref,
        )
        submission = self._submitter.enqueue(
            "/music",
            music_body(request),
            account=email,
            client_ref=client_ref,
            hooks=SubmitHooks(on_submitting=on_submitting),
            timeout=_check_deadline(deadline),
            tenant=_check_tenant(tenant),
        )
        return await self._submitter.accepted(submission)

    def submit_nowait(
        self,
        request: SongRequest | str,
        *,
        deadline: float | None = None,
        client_ref: str | None = None,
        tenant: str | None = None,
    ) -> QueuedJob:
        """Queue a song and return at once, before a slot is free: the non-blocking `submit`.

        The returned `QueuedJob` tells its `state` (queued, submitting, accepted, done, ...)
        and its queue `position`, and has `cancel()`; ``await queued`` waits for the completed
        `Job`. The submission goes on in the client's own task group whether or not anybody
        awaits it, so a web route can answer 202 at once.

        Args:
            request: a prompt, or a `SongRequest` with every option of `submit`.
            deadline: seconds the job may take from acceptance (default `Timing.job_timeout`).
            client_ref: the reference for reconciling this submission; default new.
            tenant: whose work it is (see `submit`).

        Raises:
            ValidationError: before anything is queued or sent.
        """
        self._require_core()
        if isinstance(request, str):
            request = SongRequest(prompt=request)
        elif not isinstance(request, SongRequest):
            raise ValidationError(
                "request", f"must be a prompt or a SongRequest, got {type(request).__name__}"
            )
        if request.reply_url is None and self._reply_url is not None:
            request = msgspec.structs.replace(request, reply_url=self._reply_url)
        submission = self._submitter.enqueue(
            "/music",
            music_body(request),
            account=request.email,
            client_ref=client_ref,
            timeout=deadline,
            tenant=_check_tenant(tenant),
        )
        return QueuedJob(self._submitter, submission)

    async def generate(
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
        deadline: float | None = None,
        tenant: str | None = None,
    ) -> Job:
        """Generate a song and return the completed job (its clips).

        Takes the fields of `SongRequest` as keywords, like `submit`. Cancelling the calling
        task (an anyio scope, `Task.cancel()`, `asyncio.wait_for`, `asyncio.timeout`) cancels
        the job server-side and frees its slot: before its POST left nothing is sent; after,
        the client's own task group sends DELETE /jobs/{jobid}, and this call re-raises the
        cancellation once that is done (at most `Timing.cleanup_timeout` later).

        Args:
            deadline: seconds the job may take from acceptance (default `Timing.job_timeout`);
                for a whole-call deadline use ``anyio.fail_after``.
            tenant: whose work it is (see `submit`).

        Raises:
            JobFailed: the job ended failed (the record is on the error).
            JobTimeout: the deadline passed; the job is left running (see `wait`).
        """
        return await self._run_to_end(
            self.submit(
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
                deadline=_check_deadline(deadline),
                tenant=tenant,
            )
        )

    async def submit_edit(
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
        deadline: float | None = None,
        tenant: str | None = None,
    ) -> JobHandle:
        """Submit an edit (effect, extend, replace, cover, remix) in async mode.

        Runs on the clip's own account, whose slots are counted like a song's. `stems` is
        synchronous and returns four clips rather than a job: use `fm.music.stems(clip)`.
        The per-operation helpers (`fm.extend`, `fm.cover`, ...) take only their own fields.

        Args:
            operation: the edit operation.
            clip: the clip id to edit.
            effect ... model: the fields of `EditRequest`; the operation (and effect) decide
                which apply, and any other is refused with `ValidationError`.
            deadline: seconds the job may take from acceptance.
            tenant: whose work it is (see `submit`).
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
        return await self._submit_edit_request(
            request, deadline=_check_deadline(deadline), tenant=_check_tenant(tenant)
        )

    async def _submit_edit_request(
        self, request: EditRequest, *, deadline: float | None, tenant: str | None = None
    ) -> JobHandle:
        self._require_core()
        if request.operation == "stems":
            raise ValidationError(
                "operation", "stems is synchronous and returns four clips: use fm.music.stems(clip)"
            )
        if deadline is not None:  # the per-operation helpers (fm.extend, ...) come straight here
            check_seconds(deadline, "deadline")
        if request.reply_url is None and self._reply_url is not None:
            request = msgspec.structs.replace(request, reply_url=self._reply_url)
        submission = self._submitter.enqueue(
            "/music/edit",
            edit_body(request),
            account=account_of_id(request.clip),
            timeout=deadline,
            tenant=tenant,
        )
        return await self._submitter.accepted(submission)

    async def _run_edit(self, request: EditRequest, *, deadline: float | None) -> Job:
        return await self._run_to_end(self._submit_edit_request(request, deadline=deadline))

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
        deadline: float | None = None,
        tenant: str | None = None,
    ) -> Job:
        """Run an edit to its end and return the completed job; see `submit_edit`."""
        return await self._run_to_end(
            self.submit_edit(
                operation,
                clip,
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
                deadline=_check_deadline(deadline),
                tenant=tenant,
            )
        )

    async def wait(self, jobid: str, *, deadline: float | None = None) -> Job:
        """Wait for any job by id, including one submitted by an earlier process.

        Args:
            jobid: the job to wait for.
            deadline: seconds to wait from now (default `Timing.job_timeout`).

        Raises:
            JobFailed, JobTimeout, NotFoundError (unknown or expired), PermissionDeniedError.
        """
        self._require_core()
        check_id("jobid", jobid)
        limit = _check_deadline(deadline)
        return await self._tracker.wait(
            jobid, timeout=self._timing.job_timeout if limit is None else limit
        )

    async def _run_to_end(self, submitting: Awaitable[JobHandle]) -> Job:
        return await run_to_end(self._tracker, submitting)

    def generate_many(
        self,
        requests: Iterable[str | SongRequest | Mapping[str, Any]]
        | AsyncIterable[str | SongRequest | Mapping[str, Any]],
        *,
        journal: str | os.PathLike[str] | Journal | None = None,
        concurrency: int | None = None,
        deadline: float | None = None,
        retry_failed: bool = False,
        spend_limit: float | None = None,
        tenant: str | None = None,
    ) -> GenerateMany:
        """Generate many songs; yields one `Outcome` per request as each finishes.

        Use as ``async with fm.generate_many(prompts) as outcomes: async for o in outcomes``.
        Every slot is kept busy and none overrun; one failure never ends the batch, but a 401
        or running out of funded accounts stops it with `BatchAborted` (after the running jobs
        are collected). With `journal`, a rerun resumes without paying twice.

        Args:
            requests: prompts, `SongRequest`s, or mappings of `SongRequest` fields; a request
                without `reply_url` gets the client's default.
            journal: an SQLite file path (or an open `Journal`) recording every step.
            concurrency: at most this many requests in progress at once (default: capacity).
            deadline: per-job deadline in seconds from acceptance.
            retry_failed: with a journal, submit again requests that failed in an earlier run.
            spend_limit: the most credits this batch may spend; the songs that would cross it
                end with `BudgetExceeded`, unsent (a journal keeps them for a rerun).
            tenant: whose batch it is: its songs share the slots fairly with other tenants'
                work (see `submit`).
        """
        self._require_core()
        return GenerateMany(
            self._submitter,
            self._tracker,
            self._batch_items(requests),
            journal=journal,
            concurrency=concurrency,
            timeout=_check_deadline(deadline),
            retry_failed=retry_failed,
            spend_limit=spend_limit,
            tenant=_check_tenant(tenant),
        )

    def _batch_items(
        self,
        requests: Iterable[str | SongRequest | Mapping[str, Any]]
        | AsyncIterable[str | SongRequest | Mapping[str, Any]],
    ) -> Iterator[object] | AsyncIterator[object]:
        """Requests as the batch reads them, with the client's `reply_url` where none is named.

        The journal's fingerprint leaves `reply_url` out, so a changed default still resumes.
        An async iterable stays one, read as lazily as a plain one.
        """
        if isinstance(requests, AsyncIterable):

            async def read_async() -> AsyncIterator[object]:
                async for request in requests:
                    yield self._with_reply_url(request)

            return read_async()
        return (self._with_reply_url(request) for request in requests)

    def _with_reply_url(self, request: object) -> object:
        if isinstance(request, SongRequest):
            request = request.to_params()
        if self._reply_url is None or not isinstance(request, (str, Mapping)):
            return request  # anything else becomes that request's failed Outcome
        if isinstance(request, str):
            return {"prompt": request, "reply_url": self._reply_url}
        if request.get("reply_url") is None:
            return {**request, "reply_url": self._reply_url}
        return request

    async def download(
        self,
        target: Job | Clip,
        dest: str | os.PathLike[str],
        *,
        formats: Sequence[Format] = ("m4a",),
        sidecar: bool = True,
        jobid: str | None = None,
        prompt: str | None = None,
        deadline: float | None = None,
    ) -> list[Path]:
        """Save a job's clips (or one clip) to `dest`; see `flowmusic_async._download.download`.

        Args:
            target: a completed job or one of its clips.
            dest: the folder to write into (created if missing).
            formats: any of "m4a", "wav", "mp3", "image".
            sidecar: also write a JSON sidecar of metadata per clip.
            jobid: for a bare clip, the job it came from (to refresh expired URLs).
            prompt: recorded in the sidecar.
            deadline: seconds the whole call may take (`RequestTimeout` after it; files not
                finished are not left behind). Without it each file's attempt is still
                bounded, by 20x ``http_timeout``.
        """
        deadline = _check_deadline(deadline)
        self._require_core()
        return await _download.download(
            _DownloadAPI(self),
            target,
            dest,
            formats=formats,
            sidecar=sidecar,
            jobid=jobid,
            prompt=prompt,
            deadline=deadline,
        )

    def add_event_hook(self, hook: EventHook) -> None:
        """Call `hook(event)` for every engine `Event` (quick, synchronous callables only)."""
        self._events.add(hook)

    def spending(self) -> Spending:
        """Credits spent and reserved so far, for the client, each batch, each tenant and each
        account, with the limits that apply (docs/concepts/spending.md)."""
        return self._spend.spending()

    def capacity(self, tenant: str | None = None) -> CapacitySnapshot:
        """What the slots are doing and when a song queued now would start.

        Per account (`CapacitySnapshot.accounts`, empty until the first submission read
        GET /accounts): maxJobs, our running jobs, other processes' (from the last sweep), our
        POSTs on their way, free slots and health; for the client: songs queued (per tenant
        too) and `estimated_start` for a song of `tenant` queued now. A snapshot, cheap to
        take (it walks the accounts and tenants, not the queue).
        """
        return self._submitter.capacity(_check_tenant(tenant))

    async def refresh_capacity(self, tenant: str | None = None) -> CapacitySnapshot:
        """`capacity()` after reading GET /accounts now; a client's first read also lists
        GET /jobs, to count other processes' jobs (`flowmusic status` uses a fresh client).

        Raises:
            AuthenticationError: the token is refused (other failures keep the last view).
        """
        self._require_core()
        return await self._submitter.read_capacity(_check_tenant(tenant))

    def cancel_queued(self, tenant: str) -> int:
        """Stop every song of `tenant` not yet sent; returns how many were stopped.

        Takes effect at once (no POST of theirs leaves from now on) and costs nothing: each
        ends with `ClientClosedError` saying it was stopped before it was sent. Songs whose
        POST is on its way, and jobs already running, go on (cancel those through their
        handles). New submissions of the tenant are queued as usual.
        """
        checked = _check_tenant(tenant)
        if checked is None:
            raise ValidationError("tenant", "must be a tenant string, got None")
        return self._submitter.cancel_queued(checked)

    # ----- telemetry (flowmusic_async/_telemetry.py, _otel.py) ------------------------------------

    def _capacity_view(self) -> CapacityView | None:
        """What the OpenTelemetry gauges read (maybe from the metric reader's thread)."""
        if self._state != "open":
            return None
        scheduler = self._submitter.scheduler
        return CapacityView(slots=scheduler.snapshot(), queued=scheduler.waiting)

    @property
    def timing(self) -> Timing:
        """The engine's durations (`Timing`)."""
        return self._timing

    @property
    def reply_url(self) -> str | None:
        """The callback URL for jobs submitted without one, if set."""
        return self._reply_url


def _check_tenant(tenant: object) -> str | None:
    if tenant is not None and not isinstance(tenant, str):
        raise ValidationError("tenant", f"must be a string or None, got {type(tenant).__name__}")
    return tenant


def _check_deadline(deadline: float | None) -> float | None:
    """A job's `deadline=`, checked in the caller's frame, before anything is sent.

    `check_seconds`: positive and finite; the error names the parameter.
    """
    return None if deadline is None else check_seconds(deadline, "deadline")


def _loop_token() -> object:
    """The running event loop (asyncio's loop, trio's token); None outside of one."""
    try:
        return anyio.lowlevel.current_token()
    except Exception:  # no async library is running in this thread
        return None


class _EngineAPI:
    """The engine's view of the API (`JobsAPI`): its calls over the client's namespaces."""

    def __init__(self, fm: FlowMusic) -> None:
        self._fm = fm

    async def create_job(
        self, path: JobPath, body: Mapping[str, Any], place: Place | None = None
    ) -> Job:
        # Signed here, as the body leaves: the secret is in no journal, event or record.
        body = dict(self._fm.webhooks.sign(body))
        return await self._fm.music.send_job(path, body, place=place)

    def place_ahead(self) -> Place:
        assert self._fm._clients is not None
        return self._fm._clients.place_ahead()

    async def list_running(self) -> Mapping[str, AccountJobs]:
        return await self._fm.jobs.list()

    async def get_job(self, jobid: str) -> Job:
        return await self._fm.jobs.get(jobid)

    async def cancel_job(self, jobid: str) -> None:
        await self._fm.jobs.cancel(jobid)

    async def account_usage(self, email: str) -> Usage:
        return await self._fm.accounts.usage(email)

    async def list_accounts(self) -> Mapping[str, Account]:
        return await self._fm.accounts.list()

    def unreachable(self, error: FlowMusicError, tries: int) -> TransportError:
        return self._fm._require_core().unreachable(error, tries)


class _DownloadAPI:
    """Downloads' view of the client (`DownloadAPI`): media client, retry policy, two calls."""

    def __init__(self, fm: FlowMusic) -> None:
        self._fm = fm

    def media_client(self) -> contextlib.AbstractAsyncContextManager[httpx.AsyncClient]:
        self._fm._require_core()  # raises once the client is closed
        assert self._fm._clients is not None
        return contextlib.nullcontext(self._fm._clients.media)

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._fm._policy

    @property
    def max_download_bytes(self) -> int:
        return self._fm._max_bytes[1]

    @property
    def media_deadline(self) -> float | None:
        return request_deadline(self._fm._timeout, MEDIA_DEADLINE_FACTOR)

    async def get_job(self, jobid: str) -> Job:
        return await self._fm.jobs.get(jobid)

    def open_mp3(self, clip_id: str) -> contextlib.AbstractAsyncContextManager[DownloadStream]:
        return self._fm.music.download(clip_id)
