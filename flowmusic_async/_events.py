"""Events: what the engine tells observers (progress bars, metrics, logs) as jobs move along.

Hooks are plain callables run inline on the event loop, so they must be quick; a hook that
raises is logged and ignored, because an observer must never break the work it observes. An
``async def`` hook is refused when it is registered: called inline it would only make a
coroutine that nobody awaits, and the observer would silently see nothing.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._errors import FlowMusicError

logger = logging.getLogger("flowmusic_async")

EventKind = Literal[
    "queued",  # waiting for a free slot
    "placed",  # a slot was reserved on `email`
    "submitting",  # the paid POST is about to be sent
    "submitted",  # the server accepted the job (`jobid` known)
    "retrying",  # an attempt ended without a job; another follows after a delay
    "reconciled",  # a POST whose answer was lost was matched to its job (or proved absent)
    "completed",
    "failed",
    "cancelled",
    "cancel_failed",  # the DELETE of a cancelled job failed; it may still be running
    "timeout",  # a deadline passed while waiting; the job runs on (not an end of the job)
]


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One step in a job's life, as seen by this client.

    Every submission ends in exactly one terminal event: "completed", "failed" or "cancelled"
    (the typed error the caller receives, if any, is in `error`). `client_ref` and `tenant`
    (the caller's `tenant=`, None without one) are on every event of a submission, and
    `jobid` on every event after the server accepted it.
    `error` is also set on "retrying", "cancel_failed" and "timeout" events. `credits` is
    what the submission reserved (on "queued" up to "submitted") and, on a job's terminal
    event, what it is counted as having spent (docs/concepts/spending.md).
    """

    kind: EventKind
    at: float
    client_ref: str | None = None
    jobid: str | None = None
    email: str | None = None
    attempt: int = 0
    error: FlowMusicError | None = None
    detail: str | None = None
    credits: float | None = None
    tenant: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (for a log line or a web socket); `error` becomes its message."""
        data: dict[str, Any] = msgspec.to_builtins(msgspec.structs.replace(self, error=None))
        data["error"] = None if self.error is None else str(self.error)
        data["error_type"] = None if self.error is None else type(self.error).__name__
        return data


EventHook = Callable[[Event], object]
"""A callable receiving each `Event`; its return value is ignored."""


class EventHooks:
    """The registered hooks; `emit` builds the Event once and hands it to each."""

    def __init__(self, hooks: Iterable[EventHook] = ()) -> None:
        self._hooks: list[EventHook] = []
        for hook in hooks:
            self.add(hook)

    def add(self, hook: EventHook) -> None:
        """Register `hook`.

        Raises:
            ConfigurationError: `hook` is not callable, or is an ``async def`` function.
        """
        if not callable(hook):
            raise ConfigurationError(f"an event hook must be callable, got {type(hook).__name__}")
        if inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(
            getattr(hook, "__call__", None)  # noqa: B004 (an object whose __call__ is async)
        ):
            raise ConfigurationError(
                f"event hook {getattr(hook, '__qualname__', hook)!r} is an async function; "
                "event hooks are called inline and must be plain functions. To do async work "
                "per event, hand the event to a task of yours, e.g. through "
                "anyio.create_memory_object_stream and send_nowait"
            )
        self._hooks.append(hook)

    def emit(self, kind: EventKind, **fields: Any) -> None:
        if not self._hooks:
            return
        event = Event(kind=kind, at=time.time(), **fields)
        for hook in self._hooks:
            try:
                hook(event)
            except Exception:  # an observer must never break the work it observes
                logger.exception("event hook %r raised on %s; ignored", hook, kind)
