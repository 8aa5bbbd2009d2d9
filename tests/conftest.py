"""Shared pytest configuration: the event loops tests run on, and a recording MockTransport.

Async tests run through anyio's pytest plugin (``@pytest.mark.anyio``), on asyncio. A test
that proves a promise under trio too says so, in one way for the whole suite: the
``anyio_backends`` marker on the test, its class or its module (``pytestmark``), closest
first, e.g. ``@pytest.mark.anyio_backends("asyncio", "trio")`` or ``("trio")`` alone.
Not every test runs on both: that would double a suite that must stay a few minutes on a
busy two-core machine, and most tests prove behaviour that does not depend on the event
loop. The marked ones are those where it does: cancellation, task groups, the engine's
scheduling, the plugin's fixtures, the environments users run the library in.

The `api` fixture is a scripted fake server: queue answers with ``api.reply(...)`` (or
exceptions with ``api.fail(...)``), and read what the client sent from ``api.requests``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from mock_api import TOKEN, MockAPI

from flowmusic_async.testing import instant_retries

BACKENDS_MARKER = "anyio_backends"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{BACKENDS_MARKER}(*names): run the async tests marked on these anyio backends "
        "(asyncio, trio) instead of asyncio alone",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """An async test under `anyio_backends` runs once per backend named (its id says which)."""
    marker = metafunc.definition.get_closest_marker(BACKENDS_MARKER)
    if marker is None or "anyio_backend" not in metafunc.fixturenames:
        return  # a sync test in a marked module or class: no event loop to choose
    if not marker.args or marker.kwargs:
        raise TypeError(f"@pytest.mark.{BACKENDS_MARKER} takes backend names, e.g. ('trio',)")
    metafunc.parametrize("anyio_backend", list(marker.args))


@pytest.fixture
def anyio_backend() -> str:
    """Every `@pytest.mark.anyio` test runs on asyncio unless marked `anyio_backends`."""
    return "asyncio"


@pytest.fixture
def api() -> MockAPI:
    """A fresh scripted fake server."""
    return MockAPI()


@pytest.fixture
def sleeps() -> Iterator[list[float]]:
    """Record retry sleeps instead of sleeping, so retry tests are instant and can assert delays."""
    with instant_retries() as delays:
        yield delays


@pytest.fixture
async def fm(api: MockAPI, sleeps: list[float]) -> AsyncIterator[Any]:
    """An open FlowMusic talking to `api`, with instant retries."""
    from flowmusic_async._client import FlowMusic

    async with FlowMusic(token=TOKEN, transport=api.transport(), max_retries=2) as client:
        yield client
