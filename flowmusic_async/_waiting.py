"""The waiting room: a batch's accepted requests wait for their jobs as records, not tasks.

A song runs 40-150 s, and a batch keeps every slot busy, so at any moment about 800 of its
requests wait for a job. With a task each, a waiting request was dozens of objects for the
garbage collector (the task, its coroutines, cancel scopes, events and timer), and its full
collections stalled the event loop (docs/benchmarks.md). Here a waiting request is one small record:
its job's watch calls it back when the job ends (in the task that ends it, usually the poller),
and one timer task serves the deadlines of them all.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio

from ._errors import FlowMusicError
from ._handles import JobHandle, deadline_of, watch_of
from ._models import Job
from ._tracker import JobTracker
from ._watch import Watch

logger = logging.getLogger("flowmusic_async")


class Waiting:
    """One request of a batch whose job the server accepted and is running."""

    __slots__ = ("handle", "index", "key", "params", "room", "seq", "token")

    def __init__(
        self, index: int, key: str, params: dict[str, Any], handle: JobHandle, token: object
    ) -> None:
        self.index = index
        self.key = key
        self.params = params
        self.handle = handle
        self.token = token  # the batch's place for it, given back when it ends
        self.room: WaitingRoom | None = None
        self.seq = 0

    def __call__(self, watch: Watch) -> None:
        """Its job's watch ended (the request is its own listener: no closure to allocate)."""
        if self.room is not None:
            self.room._ended(self, watch)


# How the room hands over a request that ended: exactly one of the job (completed) and the
# error (failed, cancelled, timed out, client closed) is set.
OnEnd = Callable[[Waiting, Job | None, FlowMusicError | None], None]


class WaitingRoom:
    """The accepted requests of one batch; `run_deadlines` must run in the batch's task group."""

    def __init__(self, tracker: JobTracker, on_end: OnEnd) -> None:
        self._tracker = tracker
        self._on_end = on_end
        self._members: dict[int, Waiting] = {}  # seq -> request, while it waits
        self._deadlines: list[tuple[float, int]] = []  # heap of (monotonic deadline, seq)
        self._seqs = itertools.count(1)
        self._wake = anyio.Event()
        self._stopped = False
        self._left = False

    def __len__(self) -> int:
        return len(self._members)

    def park(self, waiting: Waiting) -> bool:
        """Hold `waiting` until its job ends or its deadline passes, then hand it to `on_end`.

        False once the room was left: nothing will ever hand it over (the caller decides).
        """
        if self._left:
            return False
        watch = watch_of(waiting.handle)
        if watch.done.is_set():  # ended before it could be parked (a sync answer, say)
            self._end(waiting, watch)
            return True
        waiting.seq = next(self._seqs)
        waiting.room = self
        self._members[waiting.seq] = waiting
        watch.add_listener(waiting)
        deadline = deadline_of(waiting.handle)
        if not self._deadlines or deadline < self._deadlines[0][0]:
            self._wake.set()  # the timer sleeps for a later one
        heapq.heappush(self._deadlines, (deadline, waiting.seq))
        return True

    def leave(self) -> list[Waiting]:
        """Stop handing anything over: returns the requests still waiting (the batch is left)."""
        self._left = True
        left = list(self._members.values())
        self._members.clear()
        self._deadlines.clear()
        self.stop()
        return left

    def stop(self) -> None:
        """Let `run_deadlines` return: nothing will be parked any more."""
        self._stopped = True
        self._wake.set()

    async def run_deadlines(self) -> None:
        """End each request whose deadline passes first with `JobTimeout` (the job runs on)."""
        while True:
            self._wake = anyio.Event()
            now = time.monotonic()
            while self._deadlines and (
                self._deadlines[0][1] not in self._members or self._deadlines[0][0] <= now
            ):
                deadline, seq = heapq.heappop(self._deadlines)
                waiting = self._members.pop(seq, None)
                if waiting is not None:
                    watch = watch_of(waiting.handle)
                    error = self._tracker.deadline_passed(
                        watch, deadline=deadline, email=waiting.handle.email
                    )
                    self._on_end(waiting, None, error)
            self._compact()
            if self._stopped and not self._members:
                return
            if self._deadlines:
                with anyio.move_on_after(self._deadlines[0][0] - now):
                    await self._wake.wait()
            else:
                await self._wake.wait()

    def _ended(self, waiting: Waiting, watch: Watch) -> None:
        if self._members.pop(waiting.seq, None) is not None:
            self._end(waiting, watch)
            if self._stopped and not self._members:
                self._wake.set()

    def _end(self, waiting: Waiting, watch: Watch) -> None:
        try:
            job = self._tracker.result_of(watch)
        except FlowMusicError as error:
            self._on_end(waiting, None, error)
        else:
            self._on_end(waiting, job, None)

    def _compact(self) -> None:
        """Drop the deadlines of requests that ended, once they are most of the heap: with
        a long job timeout they would pile up for its whole span."""
        if len(self._deadlines) > 2 * len(self._members) + 64:
            self._deadlines = [entry for entry in self._deadlines if entry[1] in self._members]
            heapq.heapify(self._deadlines)
