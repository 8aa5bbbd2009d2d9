"""`Watch`: one accepted job while this client tracks it: its end, who waits, its cancellation.

The job tracker (`_tracker.py`) makes watches and the poller settles them; both change a
watch only through its methods, so every state change is written here. Not thread-safe: a
watch lives on its client's event loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anyio

from ._errors import FlowMusicError
from ._models import Job

__all__ = ["MODERATION_CODE", "Cancelling", "Watch"]

# The failure code of a prompt refused by moderation (the POST /music page's 422 record).
MODERATION_CODE = "moderation_reject"

logger = logging.getLogger("flowmusic_async")


class Cancelling:
    """One DELETE of a watched job: `answered` once the server answered it, `done` once the
    final record was read after it (or the DELETE failed, `error` then says why)."""

    __slots__ = ("answered", "done", "error")

    def __init__(self) -> None:
        self.answered: anyio.Event = anyio.Event()
        self.done: anyio.Event = anyio.Event()
        self.error: FlowMusicError | None = None


class Watch:
    """One accepted job and whoever waits for it."""

    def __init__(
        self,
        jobid: str,
        email: str | None,
        *,
        owned: bool,
        check_from: float,
        fresh: bool = False,
        client_ref: str | None = None,
        webhook: bool = False,
        credits: float | None = None,
        tenant: str | None = None,
    ) -> None:
        self.jobid: str = jobid
        self.tenant: str | None = tenant  # whose job it is: its events carry it
        self.email: str | None = email
        self.added_at: float = time.monotonic()
        self.fresh: bool = fresh  # accepted just now: `added_at` is (about) when the job began
        self.check_from: float = check_from  # the job cannot have ended before this (monotonic)
        self.done: anyio.Event = anyio.Event()
        self.job: Job | None = None
        self.error: FlowMusicError | None = None
        self.waiters: int = 0
        # Owned by a handle: kept until the job ends even while nobody awaits it, so its
        # result is there when the handle is awaited later.
        self.owned: bool = owned
        # Our replyRef tag, checked by the webhook receiver.
        self.client_ref: str | None = client_ref
        self.webhook: bool = webhook  # the job calls back a replyUrl when it ends
        self.credits: float | None = credits  # what its submission reserved for it (None: nothing)
        self.cancel_requested: bool = False  # a DELETE was sent: a failed end is our cancellation
        self.cancelling: Cancelling | None = None  # the DELETE under way
        self.cancel_error: FlowMusicError | None = None  # why the last DELETE failed
        # Called once when the watch ends, in the task that ends it: how a batch waits for
        # its jobs without a task each (see _waiting.py).
        self._listeners: list[Callable[[Watch], None]] = []

    def __repr__(self) -> str:
        state = "done" if self.done.is_set() else "pending"
        return f"<Watch {self.jobid} {state}>"

    def render_seconds(self) -> float | None:
        """Seconds from acceptance to now, for a job accepted just now (else unknown)."""
        return time.monotonic() - self.added_at if self.fresh else None

    def join(self, *, owned: bool, client_ref: str | None) -> None:
        """Another caller tracks the same job (an attach, a second wait)."""
        self.owned = self.owned or owned
        if client_ref is not None:
            self.client_ref = client_ref

    @contextmanager
    def waiter(self) -> Iterator[None]:
        """Count a task waiting for this job while the block runs."""
        self.waiters += 1
        try:
            yield
        finally:
            self.waiters -= 1

    def add_listener(self, listener: Callable[[Watch], None]) -> None:
        """Call `listener(watch)` once when the watch ends (it must be quick and not raise)."""
        self._listeners.append(listener)

    def spent(self, job: Job | None) -> float | None:
        """What the job counts as having cost, ending with the record `job` (None: unknown):
        its reserved credits, except for a prompt refused by moderation, which the API is
        assumed not to charge (docs/api-notes.md#q32-failed-job-cost). None when nothing was
        reserved for it."""
        if self.credits is None:
            return None
        if job is not None and job.error is not None and job.error.code == MODERATION_CODE:
            return 0.0
        return self.credits

    def resolve(self, *, job: Job | None = None, error: FlowMusicError | None = None) -> None:
        """End the watch with the job's final record or the error that ended the wait."""
        if self.done.is_set():
            return
        self.job, self.error = job, error
        self.done.set()
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            try:
                listener(self)
            except Exception:  # one listener's bug must not keep the others from hearing
                logger.exception("a listener of job %s failed", self.jobid)

    # ----- cancelling ----------------------------------------------------------------------------

    def start_cancel(self) -> tuple[Cancelling, bool]:
        """The DELETE to wait for, and whether it is new (False: one is already under way)."""
        if self.cancelling is not None:
            return self.cancelling, False
        self.cancelling = Cancelling()
        self.cancel_error = None
        return self.cancelling, True

    def cancel_sent(self) -> None:
        """The DELETE leaves: a failed end from now on is our cancellation."""
        self.cancel_requested = True

    def cancel_answered(self) -> None:
        """The server answered the DELETE; the final record is read next."""
        if self.cancelling is not None:
            self.cancelling.answered.set()

    def cancel_ended(self, error: FlowMusicError | None = None) -> None:
        """The DELETE is done; with `error` it failed (the job may run on, and a later
        cancellation tries again)."""
        cancelling, self.cancelling = self.cancelling, None
        if error is not None:
            self.cancel_requested = False
            self.cancel_error = error
        else:
            self.cancelling = cancelling  # a second request waits for the same end
        if cancelling is not None:
            cancelling.error = error
            cancelling.answered.set()
            cancelling.done.set()
