"""The service host: one task of the client's own that holds its task groups.

Two groups, nested. The inner one holds the work that must finish whatever happens to its
caller: the paid POST and the bookkeeping of its answer, the DELETE of a cancelled job.
Closing leaves it the structured way: the host's body stops waiting and the group's exit waits
for that work, bounded by a deadline (`drain`). The outer one holds the background work
that runs until the client stops: the poller, the closing itself. The caller only awaits
results, so cancelling it (by anyio, or by a plain asyncio ``Task.cancel()``, which goes
through any shield inside the caller's task) cannot cut that work short. See
docs/architecture.md, "Task ownership" and "Shutdown order".

anyio's task groups must be left by the task that entered them. A group entered in the task
that opens the client would tie the client's life to that task: a bot that opens the client
in its setup hook and closes it in its shutdown hook would crash. So the group lives in a task
of its own, which does nothing but hold it open until the client closes: trio's "service
nursery" pattern. anyio has no way to start such a task outside a task group, so the host is
started with the running loop's own primitive (an asyncio task, or a trio system task); that
is the only backend-specific code in the library.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from ._errors import ClientClosedError

__all__ = ["ServiceHost"]

logger = logging.getLogger("flowmusic_async")


class ServiceHost:
    """Runs one client's own work; `start_soon` and `start_background` from any task while open.

    Args:
        on_stop: awaited (shielded) once the task group has ended, e.g. to close the httpx
            client that the background work was using.
    """

    def __init__(self, *, on_stop: Callable[[], Awaitable[None]] | None = None) -> None:
        self._on_stop = on_stop
        self._task_group: anyio.abc.TaskGroup | None = None  # the must-finish work
        self._background: anyio.abc.TaskGroup | None = None
        self._draining: anyio.Event | None = None
        self._drained: anyio.Event | None = None
        self._drain_cut_short = False
        self._stop: anyio.Event | None = None
        self._finished: anyio.Event | None = None
        self._native_task: asyncio.Task[None] | None = None  # kept so asyncio cannot drop it

    @property
    def running(self) -> bool:
        return self._task_group is not None

    async def start(self) -> None:
        """Start the host task and return once its task group accepts work."""
        ready = anyio.Event()
        self._draining = anyio.Event()
        self._drained = anyio.Event()
        self._stop = anyio.Event()
        self._finished = anyio.Event()
        try:
            self._native_task = _spawn(lambda: self._main(ready))
        except BaseException:
            self._finished.set()  # nothing to wait for: closing must not hang
            raise
        await ready.wait()

    def start_soon(self, func: Callable[..., Awaitable[Any]], *args: Any, name: str) -> None:
        """Run ``func(*args)`` as work that must finish (closing waits for it, bounded).

        Accepted until the drain has ended, so a cleanup asked for while closing still runs.
        An exception escaping ``func`` is logged and dropped: one failed piece of work must
        never stop the others (or the poller every waiter relies on).

        Raises:
            ClientClosedError: the host has stopped taking such work.
        """
        if self._task_group is None:
            raise ClientClosedError("this FlowMusic client is closed; create a new one")
        self._task_group.start_soon(_guarded, func, args, name, name=name)

    def start_background(self, func: Callable[..., Awaitable[Any]], *args: Any, name: str) -> None:
        """Run ``func(*args)`` until the host stops (cancelled then, not waited for).

        Raises:
            ClientClosedError: the host has stopped.
        """
        if self._background is None:
            raise ClientClosedError("this FlowMusic client is closed; create a new one")
        self._background.start_soon(_guarded, func, args, name, name=name)

    async def drain(self, timeout: float) -> bool:
        """Leave the must-finish group: wait for its work, at most `timeout` seconds, then
        cancel what is left. False when work had to be cancelled. Call from background work."""
        if self._draining is None or self._drained is None:
            return True
        if self._task_group is not None:
            self._task_group.cancel_scope.deadline = anyio.current_time() + timeout
        self._draining.set()
        with anyio.CancelScope(shield=True):
            await self._drained.wait()
        return not self._drain_cut_short

    def request_stop(self) -> None:
        """Cancel everything still running and end the host (from any task, even its own)."""
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()
        if self._draining is not None:
            self._draining.set()
        if self._stop is not None:
            self._stop.set()

    async def wait_stopped(self) -> None:
        """Wait until the host has ended and `on_stop` has run.

        Shielded from anyio cancellation; a plain asyncio ``Task.cancel()`` still interrupts
        the wait, but not the host, which finishes stopping on its own.
        """
        if self._finished is None:
            return
        with anyio.CancelScope(shield=True):
            await self._finished.wait()
        self._native_task = None

    async def _main(self, ready: anyio.Event) -> None:
        assert self._draining is not None and self._drained is not None
        assert self._stop is not None and self._finished is not None
        try:
            async with anyio.create_task_group() as background:
                self._background = background
                async with anyio.create_task_group() as must_finish:
                    self._task_group = must_finish
                    ready.set()
                    await self._draining.wait()
                    # Leaving the block waits for the work in the group: draining, bounded by
                    # the deadline `drain` set on the group's scope.
                self._drain_cut_short = must_finish.cancel_scope.cancel_called
                self._task_group = None
                self._drained.set()
                await self._stop.wait()
                background.cancel_scope.cancel()
        except BaseException as exc:  # a host task must never raise (trio: TrioInternalError)
            if not isinstance(exc, anyio.get_cancelled_exc_class()):
                logger.error("the client's background task group failed: %r", exc)
        finally:
            self._task_group = self._background = None
            ready.set()
            self._drained.set()
            try:
                if self._on_stop is not None:
                    with anyio.CancelScope(shield=True):
                        await self._on_stop()
            except Exception as exc:
                logger.error("closing the client's resources failed: %r", exc)
            finally:
                self._finished.set()


async def _guarded(func: Callable[..., Awaitable[Any]], args: tuple[Any, ...], name: str) -> None:
    try:
        await func(*args)
    except Exception:
        logger.exception("background task %s failed; the client carries on", name)


def _spawn(main: Callable[[], Awaitable[None]]) -> asyncio.Task[None] | None:
    """Start ``main()`` as a task of its own on the running event loop (asyncio or trio)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        return loop.create_task(_as_coroutine(main), name="flowmusic-async service host")
    import trio  # anyio runs on asyncio or trio; not asyncio, so trio

    trio.lowlevel.spawn_system_task(main, name="flowmusic-async service host")
    return None


async def _as_coroutine(main: Callable[[], Awaitable[None]]) -> None:
    await main()
