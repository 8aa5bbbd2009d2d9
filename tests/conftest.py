"""Shared pytest configuration: anyio on asyncio, and a recording httpx.MockTransport.

Async tests run through anyio's pytest plugin (``@pytest.mark.anyio``). The `api` fixture is
a scripted fake server: queue answers with ``api.reply(...)`` (or exceptions with
``api.fail(...)``), and read what the client sent from ``api.requests``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from mock_api import TOKEN, MockAPI

from flowmusic_async.testing import instant_retries


@pytest.fixture
def anyio_backend() -> str:
    """Every `@pytest.mark.anyio` test runs on asyncio (the library itself only uses anyio)."""
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
