"""A pytest plugin: a running simulator and a client bound to it, and factories for more.

Installing flowmusic-async registers it (entry point ``pytest11``, name ``flowmusic``), so a
user's suite gets, with no conftest code:

- ``flowmusic_sim``: a `Simulator`, entered (webhooks are delivered) for the test's duration;
- ``flowmusic_client``: an open `FlowMusic` on that simulator, in-process (no sockets), with
  `Timing.scaled` matching the simulator's time scale, so a song takes milliseconds;
- ``flowmusic_make_sim``: a factory, ``flowmusic_make_sim(2, 3, seed=1)``, for a test that
  needs several simulators, or one built mid-test (accounts' maxJobs first, then options);
- ``flowmusic_make_client``: a factory, ``flowmusic_make_client(sim, event_hooks=[...])``, for
  a test that opens (``async with``) and closes clients itself, several on one simulator, or
  one over ``sim.serve()``'s socket (``base_url=url``). Every client it made is closed when the
  test ends, whatever the test did with it.

Both are async fixtures run by anyio's pytest plugin, so they work on the asyncio and trio
backends alike (the ``anyio_backend`` fixture picks). Configure the simulator, closest wins:

1. the ``flowmusic_sim_options`` fixture (override it in a conftest for a whole directory);
2. ``@pytest.mark.parametrize("flowmusic_sim", [{...}], indirect=True)``;
3. ``@pytest.mark.flowmusic_sim(accounts=[2, 3], time_scale=0.001, faults={...})`` on a
   module (``pytestmark``), a class or a test.

The factories start from the same options (the fixture, then the module's, class's and test's
markers) and take more as keyword arguments, which win. Options are the `Simulator` keyword
arguments, with conveniences: an ``accounts`` entry may be an int (the maxJobs of a generated,
well-funded account, its address ``account_email`` formatted with its index ``i``, default
``account{i}@example.com``), ``faults`` may be a dict of `Faults` fields, and ``latency`` sets
``Faults.latency_s`` (real seconds the server waits before handling any request). One more
key, ``timing``, replaces the client's `Timing`. The anchors are
pytest-httpx (a fixture plus a configuring marker) and stamina's testing switch (the library
ships the thing that makes your tests fast and honest).
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import pytest

from .. import FlowMusic, Timing
from ._faults import Faults
from ._simulator import Simulator
from ._state import SimAccount

__all__ = [
    "DEFAULT_TIME_SCALE",
    "MakeClient",
    "MakeSim",
    "flowmusic_client",
    "flowmusic_make_client",
    "flowmusic_make_sim",
    "flowmusic_sim",
    "flowmusic_sim_options",
]

#: Real seconds per simulated second unless configured: a 40-150 s song takes 80-300 ms.
DEFAULT_TIME_SCALE = 0.002

_MARKER = "flowmusic_sim"
_ACCOUNT_EMAIL = "account{i}@example.com"

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
    async with _new_client(flowmusic_sim, {}) as fm:
        yield fm


class MakeSim(Protocol):
    """The type of ``flowmusic_make_sim``, for annotating a test's argument."""

    def __call__(self, *max_jobs: int, **options: Any) -> Simulator: ...


class MakeClient(Protocol):
    """The type of ``flowmusic_make_client``, for annotating a test's argument."""

    def __call__(self, sim: Simulator, **options: Any) -> FlowMusic: ...


@pytest.fixture
def flowmusic_make_sim(
    request: pytest.FixtureRequest, flowmusic_sim_options: Mapping[str, Any]
) -> MakeSim:
    """Build simulators: ``flowmusic_make_sim(2, 3, time_scale=0.01, job_failure_rate=1.0)``.

    Positional ints are the maxJobs of generated accounts (like ``accounts=[2, 3]``); keyword
    options win over the marker's and `flowmusic_sim_options`. A simulator is returned as
    built, not entered: a test that needs webhooks delivered, or a socket, enters it
    (``async with sim:``, ``sim.serve()``), and that block owns its background task. A
    simulator holds nothing else, so there is nothing left to close after the test. A sync
    test may use it too.
    """
    base = _options(request, flowmusic_sim_options)

    def make(*max_jobs: int, **options: Any) -> Simulator:
        merged = {**base, **options}
        if max_jobs:
            if "accounts" in options:
                raise TypeError("give accounts either as maxJobs ints or as accounts=, not both")
            merged["accounts"] = list(max_jobs)
        timing = merged.pop("timing", None)
        sim = _build(merged)
        if timing is not None:
            _TIMINGS[sim] = timing
        return sim

    return make


@pytest.fixture
async def flowmusic_make_client(anyio_backend: Any) -> AsyncIterator[MakeClient]:
    """Build unopened clients: ``async with flowmusic_make_client(sim, max_retries=0) as fm:``.

    In-process on `sim` and timed like it (``Timing.scaled(time_scale)``, or the marker's
    ``timing``) unless `options`, `FlowMusic` keyword arguments, say otherwise: with
    ``base_url`` (e.g. ``sim.serve()``'s URL) or ``http_client`` it goes over that instead of
    the in-process transport. When the test ends every client made is closed, from the
    fixture's task (a client may be closed from any task), whether the test closed it, left it
    open or never opened it.
    """
    made: list[FlowMusic] = []

    def make(sim: Simulator, **options: Any) -> FlowMusic:
        fm = _new_client(sim, options)
        made.append(fm)
        return fm

    try:
        yield make
    finally:
        for fm in made:
            await fm.aclose()


def _new_client(sim: Simulator, options: dict[str, Any]) -> FlowMusic:
    options.setdefault("token", sim.token)
    options.setdefault("timing", _TIMINGS.get(sim) or Timing.scaled(sim.clock.time_scale))
    if "base_url" not in options and "http_client" not in options:
        options["base_url"] = sim.base_url
        options.setdefault("transport", sim.transport())
    return FlowMusic(**options)


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
    email = options.pop("account_email", _ACCOUNT_EMAIL)
    accounts = options.get("accounts")
    if accounts is not None:
        options["accounts"] = [
            SimAccount(email=email.format(i=i), max_jobs=item, credits=1_000_000.0)
            if isinstance(item, int)
            else item
            for i, item in enumerate(accounts)
        ]
    faults = options.get("faults")
    if isinstance(faults, Mapping):
        built = Faults()
        built.update(faults)
        options["faults"] = built
    latency = options.pop("latency", None)
    if latency is not None:
        # A copy: a marker's Faults object is shared by every simulator built from it.
        options["faults"] = dataclasses.replace(
            options.get("faults") or Faults(), latency_s=latency
        )
    return Simulator(**options)
