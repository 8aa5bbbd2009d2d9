"""An API that cannot be reached fails fast and clearly, never a silent 20-minute hang."""

from __future__ import annotations

import socket

import anyio
import msgspec
import pytest

from flowmusic_async import FlowMusic, Timing, TransportError

TOKEN = "user:1001-unreachable-secret-token"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def unreachable_client(budget: float) -> FlowMusic:
    timing = msgspec.structs.replace(Timing.scaled(0.01), connect_budget=budget)
    return FlowMusic(
        token=TOKEN, base_url=f"http://127.0.0.1:{closed_port()}/v1/flowmusic", timing=timing
    )


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The library's promises hold on both of anyio's backends."""
    return str(request.param)


@pytest.mark.anyio
async def test_generate_against_a_server_that_is_down_raises_a_transport_error_naming_the_host(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Connection refused on every try: a clear TransportError within the connect budget."""
    started = anyio.current_time()
    async with unreachable_client(budget=0.5) as fm:
        with anyio.fail_after(10), pytest.raises(TransportError) as caught:
            await fm.generate("nobody home")
    elapsed = anyio.current_time() - started
    assert "cannot reach 127.0.0.1" in str(caught.value)
    assert caught.value.maybe_sent is False  # nothing was sent, so nothing was paid
    assert elapsed < 5
    assert TOKEN not in caplog.text and "giving up" in caplog.text


@pytest.mark.anyio
async def test_a_safe_request_gives_up_after_the_connect_budget() -> None:
    """GET /jobs against a dead server: retried for the budget, then a clear error."""
    async with unreachable_client(budget=0.3) as fm:
        started = anyio.current_time()
        with anyio.fail_after(10), pytest.raises(TransportError) as caught:
            await fm.jobs.list()
        assert "cannot reach 127.0.0.1" in str(caught.value)
        assert 0.3 <= anyio.current_time() - started < 5
