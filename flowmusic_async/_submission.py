"""One paid submission: its record (`Submission`), the view its caller holds (`QueuedJob`),
the groups that stop submissions together, and the hooks a journal is told through.

A submission lives in the client's task group, run by the submitter, from its wait for a slot
to the acceptance of its job; its caller only waits for `decided`. `abandon()` is synchronous
(no checkpoint), so that once a caller, a batch or the client has decided to stop, no POST can
leave for it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any, Literal, Protocol

import anyio
import msgspec

from ._errors import FlowMusicError, copy_for_waiter
from ._handles import JobHandle, watch_of
from ._models import Job

__all__ = [
    "JobPath",
    "OnAccepted",
    "OnSubmitting",
    "QueuedJob",
    "QueuedState",
    "SubmitAttempt",
    "SubmitGroup",
    "SubmitHooks",
    "Submission",
]

JobPath = Literal["/music", "/music/edit"]
QueuedState = Literal["queued", "submitting", "accepted", "done", "failed", "cancelled"]


class SubmitAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """What is about to be sent, handed to `on_submitting` before every paid POST.

    A journal writes it down first, so that after a crash the attempt can be reconciled.
    """

    client_ref: str
    email: str | None
    sent_at: float  # time.time()
    attempt: int


OnSubmitting = Callable[[SubmitAttempt], Awaitable[None]]
OnAccepted = Callable[[JobHandle], Awaitable[None]]


class SubmitHooks(msgspec.Struct, frozen=True, kw_only=True):
    """What a journal (or any caller) needs told about a submission, and how to stop it.

    The callbacks run in the client's own task group, shielded, so they complete even if the
    caller is gone. An exception in `on_submitting` stops the submission before its POST
    leaves (nothing is paid; its slot and place are given back) and is what the caller gets,
    as a `FlowMusicError` (wrapping any other exception); one in the others is logged and never
    loses the job.

    Args:
        on_submitting: before each POST, with what is about to be sent (write it down first).
        on_unsent: a POST announced by `on_submitting` created no job (it was stopped before
            it left, or the server refused it for its account).
        on_accepted: the server accepted the job (record its jobid).
        cancel_if_abandoned: when the caller leaves while the POST is on its way, cancel the
            job once accepted (True), or leave it running for a journal to collect (False).
    """

    on_submitting: OnSubmitting | None = None
    on_unsent: OnSubmitting | None = None
    on_accepted: OnAccepted | None = None
    cancel_if_abandoned: bool = True


class SubmitGroup:
    """Submissions that stop together (a batch, or the whole client when it closes).

    Once `stop()` is called no submission of the group sends a POST; a POST already on its way
    finishes, and its job is cancelled (``cancel_jobs=True``) or left running.

    Args:
        spend_key: what its submissions' credits are counted under (a batch's spend limit).
    """

    def __init__(self, *, spend_key: str | None = None) -> None:
        self.spend_key = spend_key
        self.stopped: bool = False
        self._members: set[Submission] = set()

    def stop(self, *, cancel_jobs: bool) -> int:
        """Stop every member; returns how many had not sent their POST (none of them will)."""
        self.stopped = True
        unsent = 0
        for member in list(self._members):
            unsent += not member.sending and not member.decided.is_set()
            member.abandon(cancel_job=cancel_jobs)
        return unsent

    def members(self) -> tuple[Submission, ...]:
        """The submissions in the group now (not yet settled)."""
        return tuple(self._members)

    @property
    def idle(self) -> bool:
        """No submission of the group is under way."""
        return not self._members

    async def wait_settled(self) -> None:
        """Wait until every submission of the group has settled: its POST answered, its
        journal told (`on_accepted` / `on_unsent`), its job cancelled if it had to be."""
        while self._members:
            await next(iter(self._members)).settled.wait()


class Submission:
    """One paid submission's record, from its wait for a slot to the acceptance of its job.

    Only its own methods change it; the submitter calls them as the submission moves on.
    """

    def __init__(
        self,
        client_ref: str,
        groups: tuple[SubmitGroup, ...],
        *,
        path: JobPath,
        request: dict[str, Any],
        account: str | None,
        job_timeout: float,
        hooks: SubmitHooks,
        ticket: int,
        tenant: str | None = None,
    ) -> None:
        self.client_ref: str = client_ref
        self.tenant: str | None = tenant  # whose work it is (fair queues; events carry it)
        self.path: JobPath = path
        self.request: dict[str, Any] = request
        self.account: str | None = account  # the account it must run on, if any
        self.job_timeout: float = job_timeout
        self.hooks: SubmitHooks = hooks
        self.ticket: int = ticket  # its place in the scheduler's line, taken when it was made
        # What it costs is priced by operation: a song, or the edit's operation.
        self.operation: str = "song" if path == "/music" else str(request.get("operation"))
        self.spend_key: str | None = next(
            (group.spend_key for group in groups if group.spend_key is not None), None
        )
        self.abandoned: bool = False
        self.cancel_job: bool = False  # its job, once created, is to be cancelled
        self.stopped: anyio.Event = (
            anyio.Event()
        )  # set with `abandoned`: a backoff under way ends at once
        self.handle: JobHandle | None = None
        self.error: FlowMusicError | None = None
        self.email: str | None = None  # the account of the latest attempt
        self.attempt: int = 0
        self.sent_at: float | None = None  # time.time() of the latest POST (for a journal)
        self.sent_mono: float | None = None  # time.monotonic() of it (for durations)
        self.sending: bool = False  # its POST is on the way
        self.decided: anyio.Event = anyio.Event()  # handle or error known
        self.settled: anyio.Event = anyio.Event()  # ... and the job cancelled, if it had to be
        self._pre_send: anyio.CancelScope | None = None  # cancels the wait before the POST
        self._groups = groups
        for group in groups:
            group._members.add(self)
            if group.stopped:
                self.abandon(cancel_job=False)

    def __repr__(self) -> str:
        return f"<Submission {self.client_ref} attempt={self.attempt}>"

    def abandon(self, *, cancel_job: bool) -> None:
        """No POST may leave for this submission from now on (synchronous, no checkpoint)."""
        self.abandoned = True
        self.cancel_job = self.cancel_job or cancel_job
        self.stopped.set()
        if self._pre_send is not None:
            self._pre_send.cancel()

    @contextmanager
    def before_sending(self) -> Iterator[anyio.CancelScope]:
        """A scope for the waits before the POST leaves; abandoning the submission cancels it."""
        with anyio.CancelScope() as scope:
            self._pre_send = scope
            if self.abandoned:
                scope.cancel()
            try:
                yield scope
            finally:
                self._pre_send = None

    def next_attempt(self) -> int:
        """A new attempt begins (placing, then the POST)."""
        self.attempt += 1
        return self.attempt

    def placed(self, email: str | None) -> None:
        """A slot on `email` is reserved; the POST leaves from now on (the times it was sent)."""
        self.email = email
        self.sent_at = time.time()
        self.sent_mono = time.monotonic()

    def post_leaves(self) -> None:
        self.sending = True

    def post_answered(self) -> None:
        """The POST has its answer (or surely never left)."""
        self.sending = False

    def decide(
        self, *, handle: JobHandle | None = None, error: FlowMusicError | None = None
    ) -> None:
        """The submission's outcome is known: a handle on the accepted job, or an error."""
        if handle is not None:
            self.handle = handle
        if error is not None:
            self.error = error
        self.decided.set()

    def settle(self) -> None:
        """Everything the submission had to do is done; it leaves its groups."""
        self.settled.set()
        for group in self._groups:
            group._members.discard(self)

    def outcome(self) -> JobHandle:
        """The handle of a decided submission, or a fresh copy of the error that ended it."""
        if self.error is not None:
            raise copy_for_waiter(self.error)
        assert self.handle is not None
        return self.handle


class SubmissionOwner(Protocol):
    """What a `QueuedJob` asks of the submitter that runs it."""

    def position(self, sub: Submission) -> int | None:
        """Submissions served before `sub` (None once it is not waiting)."""

    def estimated_start(self, sub: Submission) -> float | None:
        """Seconds until `sub` gets a slot, estimated (None: unknown or not waiting)."""

    def abandon(self, sub: Submission) -> anyio.Event:
        """Stop `sub`; the event is set once its cleanup is done."""

    def cancel_job(self, handle: JobHandle) -> anyio.Event:
        """Cancel an accepted job server-side; the event is set once that is done."""


class QueuedJob:
    """A submission returned at once, before a slot is free (`fm.submit_nowait`).

    It waits for a slot, is sent once and accepted in the client's own task group, whether or
    not anybody awaits it, so a web route can answer 202 straight away and let a webhook or a
    later request finish the story. Await it for the completed `Job`, or `accepted()` for the
    `JobHandle`. Safe to share between tasks; cancelling a task that awaits it does not cancel
    the submission (call `cancel()` for that).
    """

    def __init__(self, owner: SubmissionOwner, submission: Submission) -> None:
        self._owner = owner
        self._sub = submission
        self.client_ref: str = submission.client_ref
        self.tenant: str | None = submission.tenant

    def __repr__(self) -> str:
        return f"QueuedJob(client_ref={self.client_ref!r}, state={self.state!r})"

    @property
    def state(self) -> QueuedState:
        """queued (waiting for a slot), submitting (POST on its way), accepted (the job runs),
        done (it ended), failed (it was refused or could not be sent), cancelled."""
        sub = self._sub
        if sub.handle is not None:
            if watch_of(sub.handle).cancel_requested:
                return "cancelled"
            return "done" if sub.handle.done else "accepted"
        if sub.decided.is_set():
            return "cancelled" if sub.abandoned else "failed"
        return "submitting" if sub.sending else "queued"

    @property
    def position(self) -> int | None:
        """Submissions served before this one (0: next); None once it is not waiting."""
        return self._owner.position(self._sub)

    @property
    def estimated_start(self) -> float | None:
        """Seconds from now until it gets a slot, estimated from its `position`, the slots'
        occupancy and the render durations seen so far (0: now); None when not waiting, or
        before any job of this client has ended."""
        return self._owner.estimated_start(self._sub)

    @property
    def jobid(self) -> str | None:
        """The job's id once the server accepted it."""
        return self._sub.handle.jobid if self._sub.handle is not None else None

    async def accepted(self) -> JobHandle:
        """Wait until the server accepted the job; its `JobHandle`.

        Raises:
            FlowMusicError: the submission failed (e.g. `ModeratedError`), or was cancelled
                (`ClientClosedError`: nothing was sent).
        """
        await self._sub.decided.wait()
        return self._sub.outcome()

    async def result(self, deadline: float | None = None) -> Job:
        """Wait for the completed job (see `JobHandle.result`)."""
        handle = await self.accepted()
        return await handle.result(deadline)

    def __await__(self) -> Generator[Any, None, Job]:
        return self.result().__await__()

    async def cancel(self) -> None:
        """Cancel it: not sent if still queued, else cancelled server-side once accepted.

        Runs in the client's task group; waits for it to be done.
        """
        sub = self._sub
        if sub.decided.is_set() and sub.handle is not None:
            await self._owner.cancel_job(sub.handle).wait()
            return
        await self._owner.abandon(sub).wait()
