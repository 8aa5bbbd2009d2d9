"""The simulated clock (real time stretched by 1/time_scale, plus jumps) and a wake-up bell."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone

import anyio


class Clock:
    """Simulated unix time; `time_scale` real seconds pass per simulated second.

    Job state is derived from this clock whenever it is read, so nothing has to tick in the
    background. `advance()` jumps forward (expiry tests need days to pass in no time).
    """

    def __init__(self, time_scale: float) -> None:
        if not time_scale > 0 or not math.isfinite(time_scale):
            raise ValueError(f"time_scale must be a positive number, got {time_scale!r}")
        self.time_scale = time_scale
        self._epoch = time.time()
        self._mono0 = time.monotonic()
        self._offset = 0.0

    def now(self) -> float:
        """The current simulated time in unix seconds."""
        return self._epoch + (time.monotonic() - self._mono0) / self.time_scale + self._offset

    def advance(self, seconds: float) -> None:
        """Jump the simulated clock forward by `seconds` simulated seconds."""
        if seconds < 0:
            raise ValueError("the simulated clock only moves forward")
        self._offset += seconds

    def real(self, sim_seconds: float) -> float:
        """Real seconds that `sim_seconds` simulated seconds take."""
        return max(0.0, sim_seconds * self.time_scale)

    def wall_at(self, sim_t: float) -> float:
        """The `time.time()` at which the simulated clock reads `sim_t` (if nobody jumps it)."""
        return time.time() + (sim_t - self.now()) * self.time_scale


def iso(t: float) -> str:
    """ISO-8601 with milliseconds and a Z, as the API writes timestamps."""
    stamp = datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class Bell:
    """Wakes every waiter when something may shorten a wait: a cancel, a clock jump, a new webhook.

    The anyio.Event is created lazily because the simulator may be built outside an event loop.
    """

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    def ring(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self, at_most: float) -> None:
        """Return when rung, or after `at_most` real seconds."""
        if self._event is None:
            self._event = anyio.Event()
        event = self._event
        with anyio.move_on_after(at_most):
            await event.wait()
