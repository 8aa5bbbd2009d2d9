"""Batches: many songs, one outcome each, every slot busy, and (with a journal) crash-proof.

`fm.generate_many(requests)` opens a context that runs every request through the engine and
yields an `Outcome` as each one finishes, in completion order. Requests queue in the
scheduler's FIFO, so every free slot on every account is used and none is overrun. One
failure never ends the batch; only a 401 (nothing can work) or running out of funded accounts
stops it, after the jobs already running have been collected, with `BatchAborted`.

With a journal, every step is written down before it is taken, so running the same batch
again resumes it: completed requests are not redone, submitted ones are awaited by jobid,
and a POST interrupted mid-flight is reconciled by its client reference before anything is
paid again. Leaving the context early cancels the jobs still running server-side, except
with a journal, where they are left running for the next run to collect.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from os import PathLike
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import anyio
import anyio.abc
import msgspec

from ._engine import JobHandle, SubmitAttempt
from ._errors import (
    AuthenticationError,
    BatchAborted,
    FlowMusicError,
    InsufficientCreditsError,
    JobFailed,
    JobTimeout,
    NoAccountAvailable,
    ValidationError,
)
from ._journal import Entry, Journal
from ._models import Job
from ._reconcile import new_client_ref
from ._requests import SongRequest, song_request
from ._validation import music_body

if TYPE_CHECKING:
    from ._client import FlowMusic


class Completed(msgspec.Struct, frozen=True, kw_only=True):
    """A request that ended with a completed job.

    `index` is the request's position in the input; `key` its journal key; `resumed` is True
    when the result was already known from an earlier run's journal.
    """

    index: int
    key: str
    request: dict[str, Any]
    job: Job
    resumed: bool = False
    ok: ClassVar[Literal[True]] = True
    error: ClassVar[None] = None


class Failed(msgspec.Struct, frozen=True, kw_only=True):
    """A request that ended without a job: `error` says what happened (fields as `Completed`)."""

    index: int
    key: str
    request: dict[str, Any]
    error: FlowMusicError
    resumed: bool = False
    ok: ClassVar[Literal[False]] = False
    job: ClassVar[None] = None


Outcome = Completed | Failed
"""The end of one request of a batch; narrow it with ``isinstance`` (or, under mypy, ``ok``)."""


def normalize_request(request: str | SongRequest | Mapping[str, Any]) -> dict[str, Any]:
    """A request as a dict of `SongRequest` fields (None left out); a bare string is a prompt.

    Raises:
        ValidationError: an unknown field, or a field the API would refuse.
    """
    song = song_request(request)
    music_body(song)  # validate now: a bad request costs nothing and stops nothing else
    return song.to_params()


class BatchRun:
    """The async iterator of outcomes; raises `BatchAborted` at the end if the batch stopped."""

    def __init__(self, receive: anyio.abc.ObjectReceiveStream[Outcome]) -> None:
        self._receive = receive
        self.aborted: BatchAborted | None = None

    def __aiter__(self) -> BatchRun:
        return self

    async def __anext__(self) -> Outcome:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            if self.aborted is not None:
                raise self.aborted from self.aborted.cause
            raise StopAsyncIteration from None


class _Batch:
    def __init__(
        self,
        fm: FlowMusic,
        journal: Journal | None,
        send: anyio.abc.ObjectSendStream[Outcome],
        *,
        timeout: float | None,
        retry_failed: bool,
    ) -> None:
        self._fm = fm
        self._engine = fm._engine
        self._journal = journal
        self._send = send
        self._timeout = timeout
        self._retry_failed = retry_failed
        # One cancel scope per submission still under way, all cancelled on abort; a job
        # already accepted is past its scope and is still collected.
        self._submission_scopes: set[anyio.CancelScope] = set()
        self.abort_cause: FlowMusicError | None = None
        self.not_started = 0

    async def run_one(
        self,
        index: int,
        params: dict[str, Any],
        entry: Entry | None,
        invalid: ValidationError | None,
        limiter: anyio.CapacityLimiter | None,
    ) -> None:
        key = entry.key if entry is not None else str(index)
        if invalid is not None:
            await self._emit(Failed(index=index, key=key, request=params, error=invalid))
            return
        if entry is not None and entry.state == "completed" and entry.job is not None:
            await self._emit(
                Completed(index=index, key=key, request=params, job=entry.job, resumed=True)
            )
            return
        if entry is not None and entry.state == "failed" and not self._retry_failed:
            error: FlowMusicError
            if entry.job is not None and entry.job.is_failed:
                error = JobFailed(entry.job)
            else:
                error = FlowMusicError(
                    f"failed in an earlier run: {entry.error_type}: {entry.error_message}",
                    jobid=entry.jobid,
                    email=entry.email,
                )
            await self._emit(
                Failed(index=index, key=key, request=params, error=error, resumed=True)
            )
            return
        if limiter is not None:
            await limiter.acquire()
        try:
            await self._run_job(index, key, params, entry)
        finally:
            if limiter is not None:
                limiter.release()

    async def _run_job(
        self, index: int, key: str, params: dict[str, Any], entry: Entry | None
    ) -> None:
        handle: JobHandle | None = None
        scope = anyio.CancelScope()
        if self.abort_cause is not None:
            scope.cancel()
        self._submission_scopes.add(scope)
        try:
            try:
                with scope:
                    handle = await self._start(key, params, entry)
            finally:
                self._submission_scopes.discard(scope)
            if handle is None:
                assert scope.cancelled_caught
                self.not_started += 1
                return
            job = await handle.result()
        except FlowMusicError as error:
            if not isinstance(error, JobTimeout):
                # A timed-out job keeps running: left "submitted", a rerun awaits it again.
                await self._record_failure(key, error)
            await self._emit(Failed(index=index, key=key, request=params, error=error))
            self._maybe_abort(error)
            return
        except anyio.get_cancelled_exc_class():
            if handle is not None and self._journal is None and not handle.done:
                await handle.cancel()  # nobody could ever collect it: stop it server-side
            raise
        if self._journal is not None:
            with anyio.CancelScope(shield=True):
                await self._journal.mark_completed(key, job=job)
        await self._emit(Completed(index=index, key=key, request=params, job=job))

    async def _start(
        self, key: str, params: dict[str, Any], entry: Entry | None
    ) -> JobHandle | None:
        """Submit, or pick up where an earlier run stopped; returns the accepted job's handle."""
        engine = self._engine
        journal = self._journal
        account = params.get("email")
        if entry is not None and entry.state == "submitted" and entry.jobid:
            return engine.attach(
                entry.jobid, entry.email, client_ref=entry.client_ref, timeout=self._timeout
            )
        client_ref = new_client_ref()
        if entry is not None and entry.state == "submitting" and entry.client_ref:
            client_ref = entry.client_ref
            recovered = await engine.recover(
                entry.client_ref,
                email=entry.email,
                sent_at=entry.sent_at or 0.0,
                timeout=self._timeout,
            )
            if recovered is not None:
                await self._mark_submitted(key, recovered)
                return recovered

        async def write_ahead(attempt: SubmitAttempt) -> None:
            if journal is not None:
                await journal.mark_submitting(
                    key, client_ref=attempt.client_ref, email=attempt.email, sent_at=attempt.sent_at
                )

        body = music_body(**params)
        handle = await engine.submit(
            "/music",
            body,
            account=account,
            client_ref=client_ref,
            on_submitting=write_ahead,
            timeout=self._timeout,
        )
        await self._mark_submitted(key, handle)
        return handle

    async def _mark_submitted(self, key: str, handle: JobHandle) -> None:
        if self._journal is not None:
            with anyio.CancelScope(shield=True):
                await self._journal.mark_submitted(
                    key, jobid=handle.jobid, email=handle.email or ""
                )

    async def _record_failure(self, key: str, error: FlowMusicError) -> None:
        if self._journal is not None:
            with anyio.CancelScope(shield=True):
                await self._journal.mark_failed(key, error=error)

    def _maybe_abort(self, error: FlowMusicError) -> None:
        if self.abort_cause is not None:
            return
        no_funded_account = isinstance(
            error, (InsufficientCreditsError, NoAccountAvailable)
        ) and not any(usage.healthy for usage in self._fm.capacity().values())
        if isinstance(error, AuthenticationError) or no_funded_account:
            self.abort_cause = error
            for scope in self._submission_scopes:
                scope.cancel()

    async def _emit(self, outcome: Outcome) -> None:
        with anyio.CancelScope(shield=True):
            await self._send.send(outcome)


class Batch:
    """What `fm.generate_many` returns: use as ``async with ... as outcomes``; see the module.

    A class rather than an `@asynccontextmanager` so that an exception raised in the caller's
    block (such as `BatchAborted` from the iterator) reaches the caller as itself, not
    wrapped in an ExceptionGroup by the task group that drives the batch.
    """

    def __init__(
        self,
        fm: FlowMusic,
        requests: Iterable[str | Mapping[str, Any]],
        *,
        journal: str | PathLike[str] | Journal | None = None,
        concurrency: int | None = None,
        timeout: float | None = None,
        retry_failed: bool = False,
    ) -> None:
        if concurrency is not None and concurrency < 1:
            raise ValidationError("concurrency", f"must be >= 1, got {concurrency!r}")
        self._fm = fm
        self._items: list[tuple[dict[str, Any], ValidationError | None]] = []
        for request in requests:
            try:
                self._items.append((normalize_request(request), None))
            except ValidationError as error:
                raw = {"prompt": request} if isinstance(request, str) else dict(request)
                self._items.append((raw, error))
        self._journal_arg = journal
        self._journal: Journal | None = None
        self._limiter = anyio.CapacityLimiter(concurrency) if concurrency else None
        self._timeout = timeout
        self._retry_failed = retry_failed
        self._task_group: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> BatchRun:
        if isinstance(self._journal_arg, Journal):
            self._journal = self._journal_arg
        elif self._journal_arg is not None:
            self._journal = await Journal.open(self._journal_arg)
        entries: list[Entry | None] = [None] * len(self._items)
        if self._journal is not None:
            valid = [i for i, (_, error) in enumerate(self._items) if error is None]
            registered = await self._journal.register([self._items[i][0] for i in valid])
            for i, entry in zip(valid, registered, strict=True):
                entries[i] = entry

        send, receive = anyio.create_memory_object_stream[Outcome](max_buffer_size=math.inf)
        run = BatchRun(receive)
        batch = _Batch(
            self._fm,
            self._journal,
            send,
            timeout=self._timeout,
            retry_failed=self._retry_failed,
        )

        async def drive() -> None:
            async with send, anyio.create_task_group() as tg:
                for index, ((params, error), entry) in enumerate(
                    zip(self._items, entries, strict=True)
                ):
                    tg.start_soon(batch.run_one, index, params, entry, error, self._limiter)
            if batch.abort_cause is not None:
                run.aborted = BatchAborted(batch.abort_cause, not_started=batch.not_started)

        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(drive)
        return run

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if self._task_group is not None:
                # Leaving early stops the batch (see the module docstring); after a full
                # iteration the driver has already finished and this is a no-op.
                self._task_group.cancel_scope.cancel()
                await self._task_group.__aexit__(None, None, None)
        finally:
            if self._journal is not None and not isinstance(self._journal_arg, Journal):
                with anyio.CancelScope(shield=True):
                    await self._journal.close()
