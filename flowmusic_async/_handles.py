"""`JobHandle`: a job the server accepted, as its caller holds it.

Await it for the completed record, or cancel it. It reads the job's record from the job
tracker, which outlives any handle; several handles (and tasks) may hold the same job.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Generator
from typing import Any

from ._errors import copy_for_waiter
from ._models import Job
from ._tracker import JobTracker
from ._validation import check_seconds
from ._watch import Watch

__all__ = ["JobHandle", "deadline_of", "run_to_end", "watch_of"]


class JobHandle:
    """A job the server accepted. Await it (or `result()`) for the completed record.

    Safe to await from several tasks. `cancel()` cancels the job server-side.
    """

    def __init__(
        self,
        tracker: JobTracker,
        watch: Watch,
        *,
        email: str | None,
        client_ref: str | None,
        timeout: float,
    ) -> None:
        self._tracker = tracker
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

    async def result(self, deadline: float | None = None) -> Job:
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
        """
        until = (
            self._deadline
            if deadline is None
            else time.monotonic() + check_seconds(deadline, "deadline")
        )
        return await self._tracker.await_watch(self._watch, deadline=until, email=self.email)

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
        await self._tracker.request_cancel(self._watch).wait()
        if self._watch.cancel_error is not None:
            raise copy_for_waiter(self._watch.cancel_error)
        job = self._watch.job
        return job if job is not None and job.is_terminal else None


def watch_of(handle: JobHandle) -> Watch:
    """The tracker's watch behind `handle`: how the submitter, a batch and its waiting room
    reach the job's state without reading the handle's private attributes."""
    return handle._watch


def deadline_of(handle: JobHandle) -> float:
    """When `handle`'s default wait ends (`time.monotonic()`), counted from its acceptance."""
    return handle._deadline


async def run_to_end(tracker: JobTracker, submitting: Awaitable[JobHandle]) -> Job:
    """Submit and wait; cancelling the caller cancels the job server-side (bounded).

    `generate` and `edit` are this. A job that ends, fails or outlives its deadline is
    reported as such; only a cancellation of the caller (or Ctrl-C) cancels the job.
    """
    handle = await submitting
    try:
        return await handle.result()
    except BaseException as exc:
        if isinstance(exc, Exception) or handle.ended:
            raise
        await tracker.cancel_for_departed(handle._watch)
        raise
