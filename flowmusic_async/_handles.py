"""What a submission hands back and takes: `JobHandle`, `SubmitAttempt`, `SubmitHooks`.

A `JobHandle` is a job the server accepted: await it for the completed record, or cancel it.
`SubmitAttempt` and `SubmitHooks` are how a journal (or any caller) is told about each step of
a submission, so that nothing paid for is ever lost across a crash.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from ._errors import copy_for_waiter
from ._models import Job
from ._poller import Watch
from ._validation import check_seconds  # moved; re-exported for _engine's import

if TYPE_CHECKING:
    from ._engine import JobEngine
    from ._submission import Submission

__all__ = [
    "JobHandle",
    "QueuedJob",
    "QueuedState",
    "OnAccepted",
    "OnSubmitting",
    "SubmitAttempt",
    "SubmitHooks",
    "check_seconds",
    "deadline_of",
    "watch_of",
]


class SubmitAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """What is about to be sent, handed to `on_submitting` before every paid POST.

    A journal writes it down first, so that after a crash the attempt can be reconciled.
    """

    client_ref: str
    email: str | None
    sent_at: float  # time.time()
    attempt: int


OnSubmitting = Callable[[SubmitAttempt], Awaitable[None]]
OnAccepted = Callable[["JobHandle"], Awaitable[None]]


class SubmitHooks(msgspec.Struct, frozen=True, kw_only=True):
    """What a journal (or any caller) needs told about a submission, and how to stop it.

    The callbacks run in the client's own task group, shielded, so they complete even if the
    caller is gone. An exception in `on_submitting` stops the submission before its POST
    leaves (nothing is paid; its slot and place are given back) and is what the caller gets,
    as a `FlowMusicError` (wrapping any other exception); one in the others is logged and never
    loses the job.

    Args:
        on_submitting: before each POST, with what is about to be sent (write it down first).
        on_unsent: a POST announced by `on_submitting` was stopped before it left.
        on_accepted: the server accepted the job (record its jobid).
        cancel_if_abandoned: when the caller leaves while the POST is on its way, cancel the
            job once accepted (True), or leave it running for a journal to collect (False).
    """

    on_submitting: OnSubmitting | None = None
    on_unsent: OnSubmitting | None = None
    on_accepted: OnAccepted | None = None
    cancel_if_abandoned: bool = True


class JobHandle:
    """A job the server accepted. Await it (or `result()`) for the completed record.

    Safe to await from several tasks. `cancel()` cancels the job server-side.
    """

    def __init__(
        self,
        engine: JobEngine,
        watch: Watch,
        *,
        email: str | None,
        client_ref: str | None,
        timeout: float,
    ) -> None:
        self._engine = engine
        self._watch = watch
        self.jobid: str = watch.jobid
        self.email = email
        self.client_ref = client_ref
        self.accepted_at: float = time.monotonic()
        self._deadline = self.accepted_at + timeout

    def __repr__(self) -> str:
        state = "done" if self.done else "pending"
        return f"JobHandle(jobid={self.jobid!r}, email={self.email!r}, {state})"

    @property
    def done(self) -> bool:
        """True once this client knows the outcome (the job ended, or the client closed)."""
        return self._watch.done.is_set()

    @property
    def ended(self) -> bool:
        """True once the job itself is known to have ended (completed, failed, cancelled)."""
        return self._watch.job is not None and self._watch.job.is_terminal

    async def result(self, deadline: float | None = None, *, timeout: float | None = None) -> Job:
        """Wait for the job to end; return the completed record.

        A result already known is returned whatever the deadline: the deadline limits the
        wait, not the answer.

        Raises:
            JobFailed: the job ended failed (including cancelled).
            JobTimeout: the deadline passed; the job is left running.
            NotFoundError, PermissionDeniedError: the job is unknown/expired, or not ours.
            ClientClosedError: the client closed while waiting (``jobid`` says which job).

        Args:
            deadline: seconds from now; default: the deadline set at submission (counted from
                acceptance, `Timing.job_timeout` unless given).
            timeout: deprecated spelling of `deadline`.
        """
        if timeout is not None:
            warnings.warn(
                "result(timeout=) is deprecated; use result(deadline=)",
                DeprecationWarning,
                stacklevel=2,
            )
            field = "timeout" if deadline is None else "deadline"
            deadline = timeout if deadline is None else deadline
        else:
            field = "deadline"
        until = (
            self._deadline
            if deadline is None
            else time.monotonic() + check_seconds(deadline, field)
        )
        return await self._engine.await_watch(self._watch, deadline=until, email=self.email)

    def __await__(self) -> Generator[Any, None, Job]:
        return self.result().__await__()

    async def cancel(self) -> Job | None:
        """Cancel the job server-side (DELETE /jobs/{jobid}) and free its slot.

        The DELETE runs in the client's own task group, so it completes even if this call is
        cancelled. Returns the final record when it could be read (a job that had already
        completed stays completed), else None.

        Raises:
            FlowMusicError: the DELETE failed (the job may still be running).
        """
        done = self._engine.request_cancel(self._watch)
        await done.wait()
        if self._watch.cancel_error is not None:
            raise copy_for_waiter(self._watch.cancel_error)
        job = self._watch.job
        return job if job is not None and job.is_terminal else None


QueuedState = Literal["queued", "submitting", "accepted", "done", "failed", "cancelled"]


def watch_of(handle: JobHandle) -> Watch:
    """The poller's watch behind `handle`: how the engine, a batch and its waiting room reach
    the job's state without reading the handle's private attributes."""
    return handle._watch


def deadline_of(handle: JobHandle) -> float:
    """When `handle`'s default wait ends (`time.monotonic()`), counted from its acceptance."""
    return handle._deadline


class QueuedJob:
    """A submission returned at once, before a slot is free (`fm.submit_nowait`).

    It waits for a slot, is sent once and accepted in the client's own task group, whether or
    not anybody awaits it, so a web route can answer 202 straight away and let a webhook or a
    later request finish the story. Await it for the completed `Job`, or `accepted()` for the
    `JobHandle`. Safe to share between tasks; cancelling a task that awaits it does not cancel
    the submission (call `cancel()` for that).
    """

    def __init__(self, engine: JobEngine, submission: Submission) -> None:
        self._engine = engine
        self._sub = submission
        self.client_ref: str = submission.client_ref

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
        return self._engine.position(self._sub)

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
        return self._engine.accepted(self._sub)

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
            await self._engine.request_cancel(watch_of(sub.handle)).wait()
            return
        await self._engine.abandon(sub).wait()
