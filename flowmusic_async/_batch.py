"""Batches: many songs, one outcome each, every slot busy, and (with a journal) crash-proof.

`fm.generate_many(requests)` opens a context that runs every request through the submitter and
yields an `Outcome` as each one finishes, in completion order. Requests queue in the
scheduler's FIFO, so every free slot on every account is used and none is overrun. One
failure, including a request that is not valid, never ends the batch: it becomes that
request's failed `Outcome`. Only what no request can get past stops it, after the jobs
already running have been collected, with `BatchAborted`: a 401, an API never reached (a
wrong URL), no account left that can take jobs (402 or 596 on every one), or a journal that
cannot be written (a full disk).

Requests are read as the batch goes (any iterable or async iterable: a generator over a file
of a million lines works), and at most about as many are in progress as there are slots, so
memory and start-up time do not grow with the size of the batch.

With a journal, every step is written down before it is taken, so running the same batch
again resumes it: completed requests are not redone, submitted ones are awaited by jobid,
and a POST interrupted mid-flight is reconciled by its client reference before anything is
paid again. A request that ends without a job and without being paid for (refused for its
account, never sent) is not recorded as failed: a rerun sends it. One batch at a time may use
a journal (`Journal.run`): a second one is refused with `JournalInUse` before it sends
anything. Leaving the context early stops the batch at once: no new POST leaves from that
moment, and the jobs still running are cancelled server-side (which frees their slots but
does not refund them), except with a journal, where they are left running for the next run to
collect.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from os import PathLike, fspath
from typing import Any, ClassVar, Literal

import anyio
import anyio.abc
import anyio.lowlevel
import msgspec
from anyio.streams.memory import MemoryObjectSendStream

from ._errors import (
    AccountError,
    AuthenticationError,
    BatchAborted,
    BudgetExceeded,
    ClientClosedError,
    FlowMusicError,
    InsufficientCreditsError,
    JobFailed,
    JobTimeout,
    JournalError,
    NoAccountAvailable,
    NotFoundError,
    RateLimitError,
    TransportError,
    ValidationError,
)
from ._handles import JobHandle, watch_of
from ._journal import Entry, Journal
from ._models import Job
from ._reconcile import new_client_ref
from ._requests import SongRequest, song_request
from ._submission import SubmitAttempt, SubmitGroup, SubmitHooks
from ._submitter import Submitter
from ._tracker import JobTracker, wait_bounded
from ._validation import check_seconds, music_body
from ._waiting import Waiting, WaitingRoom

# Requests in progress beyond the slots there are: enough that a slot freed is refilled at once
# while the next request is read and registered, few enough that memory stays flat.
SPARE_TASKS = 16
# In progress while the accounts are still unknown (the server places the jobs).
UNKNOWN_CAPACITY_TASKS = 32
# Requests registered in the journal per transaction as the input streams in.
JOURNAL_CHUNK = 64
# Jobs of a batch left early whose DELETE is asked for per turn of the event loop: each DELETE
# is a task step, and 800 of them in one turn froze the loop for 0.1-0.2 s
# (`python -m benchmarks.bench_scale --only leave`).
CANCEL_CHUNK = 64

# Anything iterable: each item is checked on its own (`check_request`), a bad one becomes its
# own failed Outcome.
Requests = Iterable[object] | AsyncIterable[object]


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data: the fields, ``ok`` and the job as `Job.to_dict` gives it."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        return {"ok": True, **data}


class Failed(msgspec.Struct, frozen=True, kw_only=True):
    """A request that ended without a job: `error` says what happened (fields as `Completed`)."""

    index: int
    key: str
    request: dict[str, Any]
    error: FlowMusicError
    resumed: bool = False
    ok: ClassVar[Literal[False]] = False
    job: ClassVar[None] = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data: the fields and ``ok``; `error` becomes its message and type name."""
        return {
            "ok": False,
            "index": self.index,
            "key": self.key,
            "request": msgspec.to_builtins(self.request),
            "error": str(self.error),
            "error_type": type(self.error).__name__,
            "resumed": self.resumed,
        }


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


def check_request(request: object) -> tuple[dict[str, Any], ValidationError | None]:
    """The request as `fm.music.create` keywords, or what it could be shown as and why it is bad.

    Never raises: a request of any type or shape becomes either valid parameters or a
    `ValidationError` naming the problem, which is that request's outcome.
    """
    if isinstance(request, str):
        shown: dict[str, Any] = {"prompt": request}
    elif isinstance(request, Mapping):
        shown = {str(key): value for key, value in request.items()}
    else:
        kind = type(request).__name__
        problem = f"must be a prompt string or a mapping of song fields, got {kind}"
        return {"request": repr(request)[:200]}, ValidationError("request", problem)
    try:
        return normalize_request(shown), None
    except ValidationError as error:
        return shown, error
    except (TypeError, ValueError) as error:  # a value of the wrong type deep in a field
        return shown, ValidationError("request", str(error))


class _Batch:
    """One run of a batch: its tasks, its journal writes, and how it stops."""

    def __init__(
        self,
        submitter: Submitter,
        tracker: JobTracker,
        journal: Journal | None,
        send: MemoryObjectSendStream[Outcome],
        *,
        timeout: float | None,
        retry_failed: bool,
        spend_key: str,
        tenant: str | None = None,
    ) -> None:
        self._submitter = submitter
        self._tenant = tenant
        self._tracker = tracker
        self._journal = journal
        self._send = send
        self._timeout = timeout
        self._retry_failed = retry_failed
        # Every submission of this batch: stopped together when the batch is left or aborted.
        self.group = SubmitGroup(spend_key=spend_key)
        self.abort_cause: FlowMusicError | None = None
        self.not_started = 0
        # Accepted jobs whose jobid the journal could not write down (a full disk): reported
        # with BatchAborted, since no rerun can find them.
        self.unrecorded: dict[str, str | None] = {}
        # Requests being submitted, a task each; once accepted they wait in `room`, task-less.
        self.in_progress: set[anyio.CancelScope] = set()
        self.room = WaitingRoom(tracker, self._ended)
        self.limiter = anyio.CapacityLimiter(1)  # places for requests in progress (`_feed`)
        self.tasks: anyio.abc.TaskGroup | None = None  # the feed's, while it runs

    def stop(self) -> None:
        """No new POST leaves for this batch from now on (synchronous: no checkpoint)."""
        self.group.stop(cancel_jobs=self._journal is None)

    def cancel_in_progress(self) -> None:
        """Cancel the requests still being submitted (call `stop` first: nothing of the batch
        is sent any more). Synchronous: a few hundred at most, the rest wait in `room`."""
        for scope in list(self.in_progress):
            scope.cancel()

    def cancel_waiting(self) -> anyio.Event | None:
        """The batch is left: have the client cancel, server-side, the jobs its accepted
        requests wait for (`CANCEL_CHUNK` DELETEs per turn of the loop); returns the event
        set when they are done. With a journal the jobs are left running instead, for the
        next run to collect (None). Synchronous: a second cancellation of the caller cannot
        stop it before every job is handed over."""
        left = self.room.leave()
        if self._journal is not None:
            return None
        running = [watch_of(waiting.handle) for waiting in left if not waiting.handle.ended]
        return self._tracker.cancel_all(running, per_turn=CANCEL_CHUNK) if running else None

    def release(self, token: object) -> None:
        """A request's outcome is out (or it never needed one): give its place back."""
        self.limiter.release_on_behalf_of(token)

    async def run_request(
        self, index: int, params: dict[str, Any], entry: Entry | None, token: object
    ) -> None:
        """One request's task: it ends once the job is accepted (or the request has its
        outcome); the room then holds the request until its job ends."""
        waits = False
        try:
            with anyio.CancelScope() as scope:
                self.in_progress.add(scope)
                waits = await self.run_one(index, params, entry, token)
        finally:
            self.in_progress.discard(scope)
            if not waits:
                self.release(token)

    async def run_one(
        self, index: int, params: dict[str, Any], entry: Entry | None, token: object
    ) -> bool:
        """Run one request up to its job's acceptance; True when it then waits in `room`
        (which ends it), False when it has its outcome already."""
        key = entry.key if entry is not None else str(index)
        if entry is not None and entry.state == "completed" and entry.job is not None:
            await self._emit(
                Completed(index=index, key=key, request=params, job=entry.job, resumed=True)
            )
            return False
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
            return False
        if self.group.stopped:
            self.not_started += 1
            return False
        handle: JobHandle | None = None
        try:
            handle = await self._start(key, params, entry)
        except FlowMusicError as error:
            if self.group.stopped and isinstance(error, ClientClosedError):
                self.not_started += 1  # stopped before its POST left: nothing to report
                return False
            await self._conclude(_outcome(index, key, params, None, error))
            return False
        if self.room.park(Waiting(index, key, params, handle, token)):
            return True
        if self._journal is None and not handle.ended:
            # Accepted as the batch was left: nobody could ever collect it.
            await self._tracker.cancel_for_departed(watch_of(handle))
        return False

    def _ended(self, waiting: Waiting, job: Job | None, error: FlowMusicError | None) -> None:
        """The room hands over a request whose job ended (or whose deadline passed)."""
        outcome = _outcome(waiting.index, waiting.key, waiting.params, job, error)
        if self._journal is None:
            # Nothing to write down: the outcome goes out now, in the task that ended the job.
            if isinstance(outcome, Failed):
                self._maybe_abort(outcome.error)
            self._send_now(outcome)
            self.release(waiting.token)
        elif self.tasks is not None:
            self.tasks.start_soon(self._conclude_and_release, outcome, waiting.token)
        # else: the batch's tasks are gone (it is being torn down); the journal still says
        # "submitted", so the next run collects the job.

    async def _conclude_and_release(self, outcome: Outcome, token: object) -> None:
        try:
            await self._conclude(outcome)
        finally:
            self.release(token)

    async def _conclude(self, outcome: Outcome) -> None:
        """Write a request's end down, then send out its outcome.

        A request that ended unpaid for a reason of the moment (its account, the API, the
        batch stopping) goes back to pending, not failed, so that a rerun sends it; once the
        batch is aborted it counts among those not started instead of having an outcome.
        """
        if isinstance(outcome, Failed):
            self._maybe_abort(outcome.error)
            if _unpaid_for_now(outcome.error):
                if not isinstance(outcome.error, JournalError):  # else the entry is unchanged
                    await self._journal_write(self._mark_unsent, outcome.key)
                if self.abort_cause is not None:
                    self.not_started += 1
                    return
            elif not isinstance(outcome.error, (JobTimeout, ClientClosedError)):
                # A job that timed out, or whose client closed, keeps running: left
                # "submitted" (or "submitting"), a rerun awaits it again.
                await self._journal_write(self._record_failure, outcome.key, outcome.error)
        elif self._journal is not None:
            await self._journal_write(self._journal.mark_completed, outcome.key, job=outcome.job)
        await self._emit(outcome)

    async def _journal_write(
        self, write: Callable[..., Awaitable[None]], *args: Any, **kwargs: Any
    ) -> bool:
        """One journal write; a `JournalError` stops the batch (nothing new is placed) instead
        of ending it untyped. False when the write failed."""
        try:
            await write(*args, **kwargs)
        except JournalError as error:
            self._abort(error)
            return False
        return True

    async def _mark_unsent(self, key: str) -> None:
        if self._journal is not None:
            await self._journal.mark_unsent(key)

    async def _start(self, key: str, params: dict[str, Any], entry: Entry | None) -> JobHandle:
        """Submit, or pick up where an earlier run stopped; returns the accepted job's handle."""
        submitter = self._submitter
        journal = self._journal
        if entry is not None and entry.state == "submitted" and entry.jobid:
            return submitter.attach(
                entry.jobid,
                entry.email,
                client_ref=entry.client_ref,
                timeout=self._timeout,
                tenant=self._tenant,
            )
        client_ref = new_client_ref()
        if entry is not None and entry.state == "submitting" and entry.client_ref:
            client_ref = entry.client_ref
            recovered = await submitter.recover(
                entry.client_ref,
                email=entry.email,
                sent_at=entry.sent_at or 0.0,
                timeout=self._timeout,
                tenant=self._tenant,
            )
            if recovered is not None:
                if not await self._journal_write(self._mark_submitted, key, recovered):
                    self.unrecorded[recovered.jobid] = recovered.email
                return recovered

        async def write_ahead(attempt: SubmitAttempt) -> None:
            if journal is not None:
                if journal.problem is not None:
                    # The disk filled: the reserve went to the jobs already paid for; pay
                    # for nothing more that could not be written down.
                    raise JournalError(str(journal.problem), path=journal.path, disk_full=True)
                try:
                    await journal.mark_submitting(
                        key,
                        client_ref=attempt.client_ref,
                        email=attempt.email,
                        sent_at=attempt.sent_at,
                    )
                except JournalError as error:
                    self._abort(error)  # at once: no other request may try to write ahead
                    raise

        async def unsent(attempt: SubmitAttempt) -> None:
            if journal is not None:
                await journal.mark_unsent(key)

        async def accepted(handle: JobHandle) -> None:
            if not await self._journal_write(self._mark_submitted, key, handle):
                self.unrecorded[handle.jobid] = handle.email

        submission = submitter.enqueue(
            "/music",
            music_body(**params),
            account=params.get("email"),
            client_ref=client_ref,
            hooks=SubmitHooks(
                on_submitting=write_ahead,
                on_unsent=unsent,
                on_accepted=accepted,
                # With a journal, a job accepted as the batch is left is collected next run.
                cancel_if_abandoned=journal is None,
            ),
            timeout=self._timeout,
            group=self.group,
            tenant=self._tenant,
        )
        return await submitter.accepted(submission)

    async def _mark_submitted(self, key: str, handle: JobHandle) -> None:
        if self._journal is not None:
            await self._journal.mark_submitted(key, jobid=handle.jobid, email=handle.email or "")

    async def _record_failure(self, key: str, error: FlowMusicError) -> None:
        if self._journal is not None:
            await self._journal.mark_failed(key, error=error)

    def _maybe_abort(self, error: FlowMusicError) -> None:
        """Stop the batch on an error no other request can get past."""
        no_account_left = isinstance(
            error, (InsufficientCreditsError, AccountError, NoAccountAvailable)
        ) and not any(usage.healthy for usage in self._submitter.scheduler.snapshot().values())
        # An API this client has never reached (a wrong URL) fails every request alike.
        never_reached = isinstance(error, TransportError) and error.never_reached
        if (
            isinstance(error, (AuthenticationError, JournalError))
            or no_account_left
            or never_reached
        ):
            self._abort(error)

    def _abort(self, cause: FlowMusicError) -> None:
        if self.abort_cause is None:
            self.abort_cause = cause
            # Jobs already running are still collected; nothing new is sent.
            self.group.stop(cancel_jobs=False)

    async def _emit(self, outcome: Outcome) -> None:
        with anyio.CancelScope(shield=True):
            await self._send.send(outcome)

    def _send_now(self, outcome: Outcome) -> None:
        """`_emit` without a checkpoint (the stream has no bound, so it never blocks)."""
        # The caller stopped reading: the batch is being left.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._send.send_nowait(outcome)

    def capacity(self, concurrency: int | None) -> int:
        """How many requests may be in progress now."""
        if concurrency is not None:
            return concurrency
        slots = self._submitter.scheduler.total_slots()
        return slots + SPARE_TASKS if slots else UNKNOWN_CAPACITY_TASKS


_BATCH_NUMBERS = itertools.count(1)


class GenerateMany:
    """What `fm.generate_many` returns: use as ``async with ... as outcomes``; see the module.

    A class rather than an `@asynccontextmanager` so that an exception raised in the caller's
    block (such as `BatchAborted` from the iterator) reaches the caller as itself, not
    wrapped in an ExceptionGroup by the task group that drives the batch.
    """

    def __init__(
        self,
        submitter: Submitter,
        tracker: JobTracker,
        requests: Requests,
        *,
        journal: str | PathLike[str] | Journal | None = None,
        concurrency: int | None = None,
        timeout: float | None = None,
        retry_failed: bool = False,
        spend_limit: float | None = None,
        tenant: str | None = None,
    ) -> None:
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ValidationError("concurrency", f"must be an integer >= 1, got {concurrency!r}")
        if timeout is not None:
            check_seconds(timeout)
        if journal is not None and not isinstance(journal, (str, PathLike, Journal)):
            raise ValidationError(
                "journal",
                f"must be a path or a Journal, got {type(journal).__name__}",
            )
        if isinstance(journal, (str, PathLike)) and not str(fspath(journal)).strip():
            raise ValidationError("journal", "must be a path to a file, got an empty one")
        is_iterable = isinstance(requests, (Iterable, AsyncIterable))
        if not is_iterable or isinstance(requests, (str, bytes)):
            raise ValidationError(
                "requests", f"must be an iterable of requests, got {type(requests).__name__}"
            )
        # What the batch's credits are counted under (`fm.spending().batches[spend_key]`).
        self.spend_key: str = f"batch-{next(_BATCH_NUMBERS)}"
        if spend_limit is not None:  # refused now, naming the field, if not a credit figure
            submitter.spend.set_batch_limit(self.spend_key, spend_limit)
        self._submitter = submitter
        self._tracker = tracker
        self._requests = requests
        self._journal_arg = journal
        self._journal: Journal | None = None
        self._concurrency = concurrency
        self._timeout = timeout
        self._retry_failed = retry_failed
        self._tenant = tenant
        self._task_group: anyio.abc.TaskGroup | None = None
        self._batch: _Batch | None = None
        self._journal_run = contextlib.AsyncExitStack()  # holds `Journal.run` while running

    async def __aenter__(self) -> BatchRun:
        if isinstance(self._journal_arg, Journal):
            self._journal = self._journal_arg
        elif self._journal_arg is not None:
            self._journal = await Journal.open(self._journal_arg)
        if self._journal is not None:
            # One batch at a time on a journal (two would pay twice for its pending entries).
            try:
                await self._journal_run.enter_async_context(self._journal.run())
            except BaseException:
                await self._close_journal()
                raise
        send, receive = anyio.create_memory_object_stream[Outcome](max_buffer_size=math.inf)
        run = BatchRun(receive)
        batch = self._batch = _Batch(
            self._submitter,
            self._tracker,
            self._journal,
            send,
            timeout=self._timeout,
            retry_failed=self._retry_failed,
            spend_key=self.spend_key,
            tenant=self._tenant,
        )

        async def drive() -> None:
            async with send:
                try:
                    await self._feed(batch)
                except FlowMusicError as error:
                    # Met before any request started (a 401, an API never reached): the same
                    # stop as mid-batch, not an exception group out of the task group.
                    batch._maybe_abort(error)
                    if batch.abort_cause is not error:
                        raise
            if batch.abort_cause is not None:
                run.aborted = BatchAborted(
                    batch.abort_cause,
                    not_started=batch.not_started,
                    unrecorded=tuple(batch.unrecorded.items()),
                )

        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(drive)
        return run

    async def _feed(self, batch: _Batch) -> None:
        """Run the batch: its requests in the feed's task group, its deadlines beside them."""
        await self._submitter.refresh_accounts()
        try:
            async with anyio.create_task_group() as tg:
                batch.tasks = tg  # where the journal writes of outcomes run
                tg.start_soon(batch.room.run_deadlines)
                async with anyio.create_task_group() as requests:
                    await self._start_requests(batch, requests)
                # Every request is accepted (the room holds it) or has its outcome out. The
                # room's timer returns once the last job it holds has ended, and leaving `tg`
                # waits for it and for the last journal writes.
                batch.room.stop()
        finally:
            batch.tasks = None

    async def _start_requests(self, batch: _Batch, tg: anyio.abc.TaskGroup) -> None:
        """Read requests as slots free up, at most `capacity` of them in progress at once."""
        limiter = batch.limiter
        seen: dict[str, int] = {}  # occurrences per fingerprint, for the journal's keys
        index = 0
        async for chunk in _chunks(self._requests, JOURNAL_CHUNK):
            checked = [check_request(request) for request in chunk]
            entries: list[Entry | None] = [None] * len(checked)
            if self._journal is not None:
                valid = [i for i, (_, error) in enumerate(checked) if error is None]
                registered = await self._journal.register(
                    [checked[i][0] for i in valid], seen=seen, first_index=index
                )
                for i, known in zip(valid, registered, strict=True):
                    entries[i] = known
            for (params, invalid), entry in zip(checked, entries, strict=True):
                if invalid is not None:
                    await batch._emit(
                        Failed(index=index, key=str(index), request=params, error=invalid)
                    )
                elif batch.group.stopped:
                    batch.not_started += 1
                else:
                    limiter.total_tokens = max(1, batch.capacity(self._concurrency))
                    token = object()
                    await limiter.acquire_on_behalf_of(token)
                    tg.start_soon(batch.run_request, index, params, entry, token)
                index += 1

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            cancelling: anyio.Event | None = None
            if self._batch is not None:
                # First, synchronously (a second Task.cancel() may come at any checkpoint): no
                # POST of this batch leaves from here on, the running jobs are handed to the
                # client to cancel, and the requests being submitted are cancelled.
                self._batch.stop()
                cancelling = self._batch.cancel_waiting()
                self._batch.cancel_in_progress()
            if self._task_group is not None:
                # Leaving early stops the batch (see the module docstring); after a full
                # iteration the driver has already finished and this is a no-op.
                self._task_group.cancel_scope.cancel()
                await self._task_group.__aexit__(None, None, None)
            if self._batch is not None:
                # POSTs already on their way finish in the client's task group and tell the
                # journal their jobid: it must still be open when they do.
                timing = self._submitter.timing
                with anyio.move_on_after(timing.close_timeout, shield=True):
                    await self._batch.group.wait_settled()
            if cancelling is not None:
                await wait_bounded(cancelling, self._submitter.timing.cleanup_timeout)
        finally:
            with anyio.CancelScope(shield=True):
                await self._journal_run.aclose()
            await self._close_journal()

    async def _close_journal(self) -> None:
        """Close the journal if this batch opened it (a `Journal` given is the caller's)."""
        if self._journal is not None and not isinstance(self._journal_arg, Journal):
            with anyio.CancelScope(shield=True):
                await self._journal.close()


def _unpaid_for_now(error: FlowMusicError) -> bool:
    """The request ended without a job, and so unpaid, for a reason of the moment rather than
    of its own (which a rerun would meet again: a 400, a 422): its account, the API, the
    journal, the batch or client stopping before its POST left."""
    if isinstance(error, TransportError):
        return not error.maybe_sent
    if isinstance(error, ClientClosedError):
        return error.jobid is None
    return (
        isinstance(
            error,
            (
                RateLimitError,
                InsufficientCreditsError,
                AccountError,
                AuthenticationError,
                NoAccountAvailable,
                NotFoundError,
                JournalError,
                BudgetExceeded,
            ),
        )
        and error.jobid is None
    )


def _outcome(
    index: int, key: str, params: dict[str, Any], job: Job | None, error: FlowMusicError | None
) -> Outcome:
    if error is not None:
        return Failed(index=index, key=key, request=params, error=error)
    assert job is not None
    return Completed(index=index, key=key, request=params, job=job)


# The name `fm.generate_many` returns; kept for code that referred to the class by it.
generate_many = GenerateMany


async def _chunks(requests: Requests, size: int) -> AsyncIterator[list[Any]]:
    """The requests in lists of at most `size`, from a plain or an async iterable."""
    chunk: list[Any] = []
    if isinstance(requests, AsyncIterable):
        async for request in requests:
            chunk.append(request)
            if len(chunk) >= size:
                yield chunk
                chunk = []
    else:
        for request in requests:
            chunk.append(request)
            if len(chunk) >= size:
                yield chunk
                chunk = []
                await anyio.lowlevel.checkpoint()  # a long input must not hog the loop
    if chunk:
        yield chunk
