"""One paid submission's state, the groups that stop submissions together, and work in flight.

A `Submission` lives in the client's task group from its wait for a slot to the acceptance of
its job; its caller only waits for `decided`. `abandon()` is synchronous (no checkpoint), so
that once a caller, a batch or the client has decided to stop, no POST can leave for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import anyio

from ._errors import FlowMusicError

if TYPE_CHECKING:
    from ._handles import JobHandle, SubmitAttempt, SubmitHooks

__all__ = ["InFlight", "JobPath", "NotSent", "Submission", "SubmitGroup"]

JobPath = Literal["/music", "/music/edit"]


class SubmitGroup:
    """Submissions that stop together (a batch, or the whole client when it closes).

    Once `stop()` is called no submission of the group sends a POST; a POST already on its way
    finishes, and its job is cancelled (``cancel_jobs=True``) or left running.
    """

    def __init__(self) -> None:
        self.stopped: bool = False
        self._members: set[Submission] = set()
        self._emptied: anyio.Event | None = None

    def stop(self, *, cancel_jobs: bool) -> None:
        self.stopped = True
        for member in list(self._members):
            member.abandon(cancel_job=cancel_jobs)

    async def wait_settled(self) -> None:
        """Wait until every submission of the group has settled: its POST answered, its
        journal told (`on_accepted` / `on_unsent`), its job cancelled if it had to be."""
        while self._members:
            self._emptied = anyio.Event()
            await self._emptied.wait()

    def _add(self, member: Submission) -> None:
        self._members.add(member)
        if self.stopped:
            member.abandon(cancel_job=False)

    def _discard(self, member: Submission) -> None:
        self._members.discard(member)
        if not self._members and self._emptied is not None:
            self._emptied.set()


class NotSent(Exception):
    """Internal: the submission was abandoned before its POST left; nothing was created."""


class Submission:
    """One paid submission, from its wait for a slot to the acceptance of its job."""

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
    ) -> None:
        self.client_ref: str = client_ref
        self.groups: tuple[SubmitGroup, ...] = groups
        self.path: JobPath = path
        self.request: dict[str, Any] = request
        self.account: str | None = account
        self.job_timeout: float = job_timeout
        self.hooks: SubmitHooks = hooks
        self.ticket: int = ticket  # its place in the scheduler's line, taken when it was made
        self.abandoned: bool = False
        self.cancel_job: bool = False  # its job, once created, is to be cancelled
        self.pre_send: anyio.CancelScope | None = None  # cancels the wait before the POST
        self.handle: JobHandle | None = None
        self.error: FlowMusicError | None = None
        self.email: str | None = None  # the account of the latest attempt
        self.attempt: int = 0
        self.sent_at: float | None = None  # time.time() of the latest POST (for a journal)
        self.sent_mono: float | None = None  # time.monotonic() of it (for durations)
        self.sending: bool = False  # its POST is on the way
        # The latest write-ahead (`on_submitting`) no answer has settled yet.
        self.announced: SubmitAttempt | None = None
        self.decided: anyio.Event = anyio.Event()  # handle or error known
        self.settled: anyio.Event = anyio.Event()  # ... and the job cancelled, if it had to be

    def abandon(self, *, cancel_job: bool) -> None:
        """No POST may leave for this submission from now on (synchronous, no checkpoint)."""
        self.abandoned = True
        self.cancel_job = self.cancel_job or cancel_job
        if self.pre_send is not None:
            self.pre_send.cancel()


class InFlight:
    """A count of work under way, and a wait until it is back to zero: closing the client waits
    for POSTs on their way and DELETEs, a batch for its requests' outcomes."""

    def __init__(self) -> None:
        self.count = 0
        self._idle: anyio.Event | None = None

    def enter(self) -> None:
        self.count += 1

    def exit(self) -> None:
        self.count -= 1
        if self.count == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self) -> None:
        while self.count:
            self._idle = anyio.Event()
            await self._idle.wait()
