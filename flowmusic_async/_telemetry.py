"""The `telemetry=` switch: whether a client reports to OpenTelemetry, decided when it opens.

This module never imports OpenTelemetry. `_otel` does, and it is imported only when telemetry
is on, so without the ``otel`` extra (or with it installed but unused) nothing of OpenTelemetry
is loaded and nothing costs: no event hook is registered, so the engine does not even build
its `Event`s. See docs/observability.md.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Union

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._events import EventHooks
    from ._scheduler import CapacityView


class Telemetry:
    """Where a client's OpenTelemetry spans and metrics go: `FlowMusic(telemetry=Telemetry(...))`.

    Needs the ``otel`` extra (``opentelemetry-api``); the application installs and configures
    the SDK and its exporters. A provider left out is the global one (OpenTelemetry's
    ``get_tracer_provider()`` or ``get_meter_provider()``). See docs/observability.md.

    Args:
        tracer_provider: the provider of the client's tracer.
        meter_provider: the provider of the client's meter.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider

    def __repr__(self) -> str:
        return (
            f"Telemetry(tracer_provider={self.tracer_provider!r}, "
            f"meter_provider={self.meter_provider!r})"
        )


TelemetrySetting = Union[bool, Telemetry, None]  # noqa: UP007 (a runtime alias under 3.10)
"""`FlowMusic(telemetry=...)`: None (on if the application configured a tracer provider),
True (on, the global providers), False (off), or a `Telemetry` naming the providers."""


def check_setting(value: object) -> TelemetrySetting:
    """`value` as a telemetry setting; an explicit request without the extra is refused now.

    Raises:
        ConfigurationError: not None, a bool or a `Telemetry`; or telemetry asked for (True or
            a `Telemetry`) and opentelemetry-api is not installed.
    """
    if value is None or value is False:
        return value
    if value is not True and not isinstance(value, Telemetry):
        raise ConfigurationError(
            f"telemetry must be None, True, False or a flowmusic_async.Telemetry, "
            f"got {type(value).__name__}"
        )
    try:
        from . import _otel  # noqa: F401 (imported now so that a missing extra is named now)
    except ImportError as error:
        raise ConfigurationError(
            f"telemetry needs the OpenTelemetry API: pip install 'flowmusic-async[otel]' ({error})"
        ) from None
    return value


def application_configured_tracing() -> bool:
    """True if the application has set a global tracer provider (an SDK's, a vendor's).

    Looked up without importing anything: an application that configured OpenTelemetry has
    imported `opentelemetry.trace` already. The API's own default (a proxy that does nothing
    until a provider is set) and its no-op provider do not count.
    """
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def attach(
    setting: TelemetrySetting,
    events: EventHooks,
    capacity: Callable[[], CapacityView | None],
) -> bool:
    """Register the OpenTelemetry consumer on `events` if `setting` says so; True if it did.

    Called when the client opens. `capacity` is read by the gauges at each collection (from
    the metric reader's thread, possibly); it returns None once the client has closed.
    """
    if setting is False or (setting is None and not application_configured_tracing()):
        return False
    from ._otel import SongTelemetry

    chosen = setting if isinstance(setting, Telemetry) else Telemetry()
    events.add(
        SongTelemetry(
            tracer_provider=chosen.tracer_provider,
            meter_provider=chosen.meter_provider,
            capacity=capacity,
        )
    )
    return True
