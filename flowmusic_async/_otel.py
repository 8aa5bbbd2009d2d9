"""OpenTelemetry traces and metrics of each submission, built from the engine's events.

`SongTelemetry` is an event hook (`_events.py`): it sees what every observer sees and nothing
else, so it does not depend on how the engine is cut. It uses the OpenTelemetry API only (the
application picks the SDK and the exporters) and is imported only when telemetry is on
(`_telemetry.py`). Spans carry the times of the events themselves, so a span built after
the fact is as exact as one opened inline. docs/observability.md lists what is reported.

One trace per submission (keyed by its `client_ref`)::

    flowmusic.song            queued -> its terminal event (completed / failed / cancelled)
    ├── flowmusic.slot_wait   queued (or retrying) -> placed: waiting for a free slot
    ├── flowmusic.post        submitting -> submitted / retrying / failed: one paid POST;
    │                         a lost answer's reconciliation is its "flowmusic.reconciled" event
    └── flowmusic.render      submitted -> the terminal event: the job renders on the server

A submission's state is dropped at its terminal event, so memory does not grow with a batch.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ._errors import FlowMusicError, RateLimitError

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Span, TracerProvider
    from opentelemetry.util.types import AttributeValue

    from ._events import Event
    from ._scheduler import CapacityView

SCOPE = "flowmusic_async"
# Attribute names, one place: the docs and the tests read the same ones.
CLIENT_REF = "flowmusic.client_ref"
JOBID = "flowmusic.jobid"
ACCOUNT = "flowmusic.account"
ATTEMPT = "flowmusic.attempt"
ATTEMPTS = "flowmusic.attempts"
RATE_LIMITED = "flowmusic.rate_limited"
OUTCOME = "flowmusic.outcome"
FAILURE_CODE = "flowmusic.failure_code"
DETAIL = "flowmusic.detail"
ERROR_TYPE = "error.type"  # OpenTelemetry's semantic convention for a failure's class
# Hooks for fields the engine's `Event` does not carry yet: read with getattr when present.
TENANT = "flowmusic.tenant"
CREDITS_RESERVED = "flowmusic.credits.reserved"
CREDITS_SETTLED = "flowmusic.credits.settled"

_TERMINAL = frozenset({"completed", "failed", "cancelled"})
# Seconds: a song renders 40-150 s on the real API; a slot may take up to a song to free up.
_RENDER_BUCKETS = (5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 75.0, 90.0, 105.0, 120.0, 150.0, 180.0,
                   240.0, 300.0, 600.0)  # fmt: skip
_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                 1800.0)  # fmt: skip


def _ns(at: float) -> int:
    """An event's `time.time()` as OpenTelemetry's nanoseconds since the epoch."""
    return int(at * 1e9)


class _Song:
    """One submission's open spans and counts, from "queued" to its terminal event."""

    __slots__ = (
        "account",
        "attempts",
        "context",
        "jobid",
        "post",
        "rate_limited",
        "render",
        "render_from",
        "root",
        "waited_from",
        "waiting",
    )

    def __init__(self, root: Span, at: float) -> None:
        self.root = root
        # Its children's parent; built on an empty context, so a song is always a trace of its
        # own (the events run in the client's task group, not in the caller's context).
        self.context = trace.set_span_in_context(root, otel_context.Context())
        self.waiting: Span | None = None
        self.waited_from = at
        self.post: Span | None = None
        self.render: Span | None = None
        self.render_from = 0.0
        self.jobid: str | None = None
        self.account: str | None = None
        self.attempts = 0
        self.rate_limited = 0


class _Instruments:
    """One meter's instruments, shared by every client reporting to it.

    Instruments cannot be unregistered, and a second one of the same name is refused (with a
    warning) by the SDK, so they are made once per meter provider; the gauges read every
    client still alive.
    """

    def __init__(self, meter: metrics.Meter) -> None:
        self.completed = meter.create_counter(
            "flowmusic.songs.completed", unit="{song}", description="Songs that completed"
        )
        self.failed = meter.create_counter(
            "flowmusic.songs.failed",
            unit="{song}",
            description="Submissions that ended failed (refused, moderated, or an error)",
        )
        self.cancelled = meter.create_counter(
            "flowmusic.songs.cancelled", unit="{song}", description="Submissions cancelled"
        )
        self.rate_limited = meter.create_counter(
            "flowmusic.rate_limited",
            unit="{response}",
            description="429 answers to paid POSTs (each retried after a backoff)",
        )
        self.credits = meter.create_counter(
            "flowmusic.credits.spent", unit="{credit}", description="Credits settled by songs"
        )
        self.render = meter.create_histogram(
            "flowmusic.render.duration",
            unit="s",
            description="From the job's acceptance to its end",
            explicit_bucket_boundaries_advisory=_RENDER_BUCKETS,
        )
        self.slot_wait = meter.create_histogram(
            "flowmusic.slot_wait.duration",
            unit="s",
            description="From queued (or a retry) to a slot reserved",
            explicit_bucket_boundaries_advisory=_WAIT_BUCKETS,
        )
        self.sources: weakref.WeakSet[SongTelemetry] = weakref.WeakSet()
        meter.create_observable_gauge(
            "flowmusic.slots.in_use",
            callbacks=[self._in_use],
            unit="{slot}",
            description="Slots taken per account (ours, POSTs under way, other processes')",
        )
        meter.create_observable_gauge(
            "flowmusic.slots.free", callbacks=[self._free], unit="{slot}", description="Free slots"
        )
        meter.create_observable_gauge(
            "flowmusic.queue.length",
            callbacks=[self._queued],
            unit="{song}",
            description="Submissions waiting for a slot",
        )

    def _views(self) -> list[CapacityView]:
        views = []
        for source in list(self.sources):
            try:
                view = source.capacity()
            except RuntimeError:  # the engine's dict changed under this (reader) thread
                continue
            if view is not None:
                views.append(view)
        return views

    def _in_use(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            metrics.Observation(usage.in_flight, {ACCOUNT: email})
            for view in self._views()
            for email, usage in view.slots.items()
        ]

    def _free(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            metrics.Observation(max(0, usage.max_jobs - usage.in_flight), {ACCOUNT: email})
            for view in self._views()
            for email, usage in view.slots.items()
        ]

    def _queued(self, options: CallbackOptions) -> Iterable[Observation]:
        views = self._views()
        return [metrics.Observation(sum(view.queued for view in views))] if views else []


_instruments: weakref.WeakKeyDictionary[object, _Instruments] = weakref.WeakKeyDictionary()
_instruments_lock = threading.Lock()


def _instruments_of(provider: MeterProvider) -> _Instruments:
    with _instruments_lock:
        try:
            found = _instruments.get(provider)
        except TypeError:  # a provider that cannot be weakly referenced: not cached
            return _Instruments(provider.get_meter(SCOPE, _version()))
        if found is None:
            found = _instruments[provider] = _Instruments(provider.get_meter(SCOPE, _version()))
        return found


def _version() -> str:
    from ._version import __version__

    return __version__


class SongTelemetry:
    """The event hook that turns a client's events into spans and metric points.

    Runs inline on the event loop for each event, like every hook, so each call does a few
    dictionary operations and span calls; it never raises into the engine (`EventHooks` logs
    and drops an exception, and an observer must not break the work it observes).

    Args:
        tracer_provider: the tracer's provider; None for the global one.
        meter_provider: the meter's provider; None for the global one.
        capacity: read by the gauges at each collection; None once the client has closed.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        capacity: Callable[[], CapacityView | None],
    ) -> None:
        self._tracer = trace.get_tracer(SCOPE, _version(), tracer_provider=tracer_provider)
        self._metrics = _instruments_of(meter_provider or metrics.get_meter_provider())
        self._metrics.sources.add(self)
        self.capacity = capacity
        self._songs: dict[str, _Song] = {}

    @property
    def open_submissions(self) -> int:
        """Submissions whose terminal event has not come yet (the state this hook holds)."""
        return len(self._songs)

    def __call__(self, event: Event) -> None:
        kind = event.kind
        if kind == "queued":
            self._queued(event)
            return
        ref = event.client_ref
        if kind in _TERMINAL:  # the submission's last event: its state goes
            song = self._songs.pop(ref, None) if ref is not None else None
            self._count_end(event, song)
            if song is not None:
                self._end(event, song)
            return
        song = self._songs.get(ref) if ref is not None else None
        if song is not None:
            self._step(event, song)
        elif kind == "retrying":  # outside a traced submission, the 429 still counts
            self._count_429(event)

    # ----- the steps ---------------------------------------------------------------------------

    def _queued(self, event: Event) -> None:
        if event.client_ref is None:
            return
        at = _ns(event.at)
        attributes: dict[str, AttributeValue] = {CLIENT_REF: event.client_ref}
        if event.email is not None:  # pinned to an account
            attributes[ACCOUNT] = event.email
        attributes.update(_extra_attributes(event))
        root = self._tracer.start_span(
            "flowmusic.song", context=otel_context.Context(), start_time=at, attributes=attributes
        )
        song = _Song(root, event.at)
        song.waiting = self._tracer.start_span(
            "flowmusic.slot_wait", context=song.context, start_time=at, attributes={ATTEMPT: 1}
        )
        self._songs[event.client_ref] = song

    def _step(self, event: Event, song: _Song) -> None:
        kind = event.kind
        at = _ns(event.at)
        if kind == "placed":
            if song.waiting is not None:
                if event.email is not None:
                    song.waiting.set_attribute(ACCOUNT, event.email)
                song.waiting.end(end_time=at)
                song.waiting = None
                self._metrics.slot_wait.record(max(0.0, event.at - song.waited_from))
        elif kind == "submitting":
            song.attempts = max(song.attempts, event.attempt)
            attributes: dict[str, AttributeValue] = {ATTEMPT: event.attempt}
            if event.email is not None:
                attributes[ACCOUNT] = event.email
                song.account = event.email
            attributes.update(_extra_attributes(event))
            song.post = self._tracer.start_span(
                "flowmusic.post",
                context=song.context,
                kind=SpanKind.CLIENT,
                start_time=at,
                attributes=attributes,
            )
        elif kind == "reconciled":
            attributes = {DETAIL: event.detail or ""}
            if event.jobid is not None:
                attributes[JOBID] = event.jobid
            (song.post or song.root).add_event("flowmusic.reconciled", attributes, timestamp=at)
        elif kind == "submitted":
            song.jobid = event.jobid
            song.account = event.email or song.account
            self._end_post(song, at, event)
            attributes = {}
            if event.jobid is not None:
                attributes[JOBID] = event.jobid
                song.root.set_attribute(JOBID, event.jobid)
            if song.account is not None:
                attributes[ACCOUNT] = song.account
            song.render_from = event.at
            song.render = self._tracer.start_span(
                "flowmusic.render", context=song.context, start_time=at, attributes=attributes
            )
        elif kind == "retrying":
            self._count_429(event)
            if isinstance(event.error, RateLimitError):
                song.rate_limited += 1
            self._end_post(song, at, event, error=event.error)
            # The wait for the next attempt: the backoff, then the queue for a slot.
            song.waited_from = event.at
            song.waiting = self._tracer.start_span(
                "flowmusic.slot_wait",
                context=song.context,
                start_time=at,
                attributes={ATTEMPT: event.attempt + 1},
            )
        elif kind in ("timeout", "cancel_failed"):
            span = song.render or song.root
            if event.error is not None:
                _record(span, event.error, at)
            span.add_event(f"flowmusic.{kind}", timestamp=at)

    def _end_post(
        self, song: _Song, at: int, event: Event, *, error: FlowMusicError | None = None
    ) -> None:
        if song.post is None:
            return
        if event.jobid is not None:
            song.post.set_attribute(JOBID, event.jobid)
        if error is not None:
            _fail(song.post, error, at)
        song.post.end(end_time=at)
        song.post = None

    def _end(self, event: Event, song: _Song) -> None:
        """The terminal event: end every span still open, the root last, with the outcome."""
        at = _ns(event.at)
        kind = event.kind
        root = song.root
        failed = kind == "failed"
        code = event.detail if failed and event.error is None else None
        for span in (song.waiting, song.post, song.render):
            if span is None:
                continue
            if failed and span is not song.waiting:
                if event.error is not None:
                    _fail(span, event.error, at)
                else:
                    _fail_job(span, code, event.jobid, at)
            span.end(end_time=at)
        if failed:
            if event.error is not None:
                _fail(root, event.error, at)
            else:
                _fail_job(root, code, event.jobid, at)
        if song.render is not None and kind != "cancelled":
            self._metrics.render.record(
                max(0.0, event.at - song.render_from), {OUTCOME: kind, **self._account(song)}
            )
        attributes: dict[str, AttributeValue] = {
            OUTCOME: kind,
            ATTEMPTS: song.attempts,
            RATE_LIMITED: song.rate_limited,
        }
        if event.jobid is not None:
            attributes[JOBID] = event.jobid
        account = event.email or song.account
        if account is not None:
            attributes[ACCOUNT] = account
        attributes.update(_extra_attributes(event))
        root.set_attributes(attributes)
        root.end(end_time=at)

    # ----- metrics -----------------------------------------------------------------------------

    @staticmethod
    def _account(song: _Song) -> dict[str, AttributeValue]:
        return {ACCOUNT: song.account} if song.account is not None else {}

    def _count_429(self, event: Event) -> None:
        if isinstance(event.error, RateLimitError):
            self._metrics.rate_limited.add(1, {ACCOUNT: event.email} if event.email else {})

    def _count_end(self, event: Event, song: _Song | None) -> None:
        account = event.email or (song.account if song is not None else None)
        attributes: dict[str, AttributeValue] = {ACCOUNT: account} if account else {}
        if event.kind == "completed":
            self._metrics.completed.add(1, attributes)
            credits = _number(getattr(event, "credits", None)) if _EVENTS_HAVE_EXTRAS else None
            if credits is not None:
                self._metrics.credits.add(credits, attributes)
        elif event.kind == "failed":
            reason = type(event.error).__name__ if event.error is not None else event.detail
            self._metrics.failed.add(1, {**attributes, ERROR_TYPE: reason or "JobFailed"})
        else:
            self._metrics.cancelled.add(1, attributes)


def _fail(span: Span, error: BaseException, at: int) -> None:
    """ERROR status and the exception, as OpenTelemetry records one (type, message, stack).

    The message is the library's own, redacted when the error was made (`FlowMusicError`).
    """
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.set_attribute(ERROR_TYPE, type(error).__name__)
    _record(span, error, at)


def _record(span: Span, error: BaseException, at: int) -> None:
    span.record_exception(error, timestamp=at)


def _fail_job(span: Span, code: str | None, jobid: str | None, at: int) -> None:
    """A job that ended failed on the server: no exception object travels with the event, so
    the one the waiter receives (`JobFailed`) is described from the record's code."""
    code = code or "failed"
    span.set_status(Status(StatusCode.ERROR, f"JobFailed: {code}"))
    span.set_attributes({ERROR_TYPE: "JobFailed", FAILURE_CODE: code})
    span.add_event(
        "exception",
        {
            "exception.type": "flowmusic_async.JobFailed",
            "exception.message": f"job {jobid} ended failed: {code}",
        },
        timestamp=at,
    )


def _extra_attributes(event: Event) -> dict[str, AttributeValue]:
    """Tenant and credits, for when `Event` carries them (read with getattr until it does).

    Credits on a terminal event are what was settled; on an earlier one, what was reserved.
    """
    found: dict[str, AttributeValue] = {}
    if not _EVENTS_HAVE_EXTRAS:  # three calls per song: skip the look-ups while they cannot hit
        return found
    tenant = getattr(event, "tenant", None)
    if isinstance(tenant, str):
        found[TENANT] = tenant
    credits = _number(getattr(event, "credits", None))
    if credits is not None:
        found[CREDITS_SETTLED if event.kind in _TERMINAL else CREDITS_RESERVED] = credits
    return found


def _events_have_extras() -> bool:
    from ._events import Event

    return bool({"tenant", "credits"} & set(Event.__struct_fields__))


_EVENTS_HAVE_EXTRAS = _events_have_extras()


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None
