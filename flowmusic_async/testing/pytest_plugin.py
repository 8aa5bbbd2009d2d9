"""A pytest plugin: a running simulator and a client bound to it, as two fixtures.

Installing flowmusic-async registers it (entry point ``pytest11``, name ``flowmusic``), so a
user's suite gets, with no conftest code:

- ``flowmusic_sim``: a `Simulator`, entered (webhooks are delivered) for the test's duration;
- ``flowmusic_client``: an open `FlowMusic` on that simulator, in-process (no sockets), with
  `Timing.scaled` matching the simulator's time scale, so a song takes milliseconds.

Both are async fixtures run by anyio's pytest plugin, so they work on the asyncio and trio
backends alike (the ``anyio_backend`` fixture picks). Configure the simulator, closest wins:

1. the ``flowmusic_sim_options`` fixture (override it in a conftest for a whole directory);
2. ``@pytest.mark.parametrize("flowmusic_sim", [{...}], indirect=True)``;
3. ``@pytest.mark.flowmusic_sim(accounts=[2, 3], time_scale=0.001, faults={...})`` on a
   module (``pytestmark``), a class or a test.

Options are the `Simulator` keyword arguments, with two conveniences: an ``accounts`` entry may
be an int (the maxJobs of a generated, well-funded account) and ``faults`` may be a dict of
`Faults` fields. One more key, ``timing``, replaces the client's `Timing`. The anchors are
pytest-httpx (a fixture plus a configuring marker) and stamina's testing switch (the library
ships the thing that makes your tests fast and honest).
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from .. import FlowMusic, Timing
from ._faults import Faults
from ._simulator import Simulator
from ._state import SimAccount

__all__ = ["DEFAULT_TIME_SCALE", "flowmusic_client", "flowmusic_sim", "flowmusic_sim_options"]

#: Real seconds per simulated second unless configured: a 40-150 s song takes 80-300 ms.
DEFAULT_TIME_SCALE = 0.002

_MARKER = "flowmusic_sim"

# The client's timing for each simulator the fixture built (from the same options).
_TIMINGS: weakref.WeakKeyDictionary[Simulator, Timing] = weakref.WeakKeyDictionary()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(**options): configure the flowmusic_sim fixture (Simulator keyword "
        "arguments; accounts may be ints, faults a dict, timing the client's Timing)",
    )


@pytest.fixture
def flowmusic_sim_options() -> dict[str, Any]:
    """The base options of ``flowmusic_sim``; override this fixture to change them suite-wide."""
    return {}


@pytest.fixture
async def flowmusic_sim(
    request: pytest.FixtureRequest, anyio_backend: Any, flowmusic_sim_options: Mapping[str, Any]
) -> AsyncIterator[Simulator]:
    """A simulator configured by `flowmusic_sim_options`, an indirect parameter and the marker.

    It is entered for the test's duration, so webhooks to a ``reply_url`` are delivered
    (through ``webhook_transport`` when given, e.g. ``httpx.ASGITransport(app)``).
    """
    options = _options(request, flowmusic_sim_options)
    timing = options.pop("timing", None)
    sim = _build(options)
    _TIMINGS[sim] = timing if timing is not None else Timing.scaled(sim.clock.time_scale)
    async with sim:
        yield sim


@pytest.fixture
async def flowmusic_client(flowmusic_sim: Simulator) -> AsyncIterator[FlowMusic]:
    """An open `FlowMusic` on ``flowmusic_sim``, in-process, timed like the simulator."""
    async with FlowMusic(
        token=flowmusic_sim.token,
        base_url=flowmusic_sim.base_url,
        transport=flowmusic_sim.transport(),
        timing=_TIMINGS.get(flowmusic_sim) or Timing.scaled(flowmusic_sim.clock.time_scale),
    ) as fm:
        yield fm


def _options(request: pytest.FixtureRequest, base: Mapping[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {"time_scale": DEFAULT_TIME_SCALE, **base}
    param = getattr(request, "param", None)
    if param is not None:
        if not isinstance(param, Mapping):
            raise TypeError(f"an indirect flowmusic_sim parameter must be a dict, got {param!r}")
        options.update(param)
    # iter_markers yields the closest marker first; apply the farthest first so the closest wins.
    for marker in reversed(list(request.node.iter_markers(_MARKER))):
        if marker.args:
            raise TypeError("@pytest.mark.flowmusic_sim takes keyword arguments only")
        options.update(marker.kwargs)
    return options


def _build(options: dict[str, Any]) -> Simulator:
    accounts = options.get("accounts")
    if accounts is not None:
        options["accounts"] = [
            SimAccount(email=f"account{i}@example.com", max_jobs=item, credits=1_000_000.0)
            if isinstance(item, int)
            else item
            for i, item in enumerate(accounts)
        ]
    faults = options.get("faults")
    if isinstance(faults, Mapping):
        built = Faults()
        built.update(faults)
        options["faults"] = built
    return Simulator(**options)
