"""An API that cannot be reached fails fast and clearly, never a silent 20-minute hang.

A client that has never had an answer from the API gives up within
`Timing.first_contact_budget` (4 s) with one error naming the URL and the cause, and logs no
warning (the caller has the error); the longer `connect_budget` is for an outage, once the
API has answered. A batch against such an API stops once, with `BatchAborted`.
"""

from __future__ import annotations

import io
import logging
import socket
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from flowmusic_async import BatchAborted, FlowMusic, Timing, TransportError
from flowmusic_async._cli import run
from flowmusic_async.testing import Simulator

# The library's promises hold on both of anyio's backends.
pytestmark = pytest.mark.anyio_backends("asyncio", "trio")

TOKEN = "user:1001-unreachable-secret-token"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def unreachable_client(budget: float, **timing: float) -> FlowMusic:
    scaled = msgspec.structs.replace(Timing.scaled(0.01), connect_budget=budget, **timing)
    return FlowMusic(
        token=TOKEN, base_url=f"http://127.0.0.1:{closed_port()}/v1/flowmusic", timing=scaled
    )


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
    assert f"cannot reach the API at {fm.base_url}" in str(caught.value)
    assert caught.value.maybe_sent is False  # nothing was sent, so nothing was paid
    assert caught.value.never_reached is True
    assert elapsed < 5
    assert TOKEN not in caplog.text and TOKEN not in str(caught.value)


@pytest.mark.anyio
async def test_a_safe_request_gives_up_after_the_connect_budget() -> None:
    """GET /jobs against a dead server: retried for the budget, then a clear error."""
    async with unreachable_client(budget=0.3) as fm:
        started = anyio.current_time()
        with anyio.fail_after(10), pytest.raises(TransportError) as caught:
            await fm.jobs.list()
        assert "cannot reach the API at http://127.0.0.1:" in str(caught.value)
        assert 0.3 <= anyio.current_time() - started < 5


# ----- first contact: a wrong URL, port or host fails in seconds --------------------------------


def test_the_default_first_contact_budget_is_a_few_seconds() -> None:
    """4 s of retries, so a command against a wrong URL is over within 5 s; 30 s once reached."""
    policy = Timing().retry_policy(max_retries=4)
    assert policy.budget() == Timing().first_contact_budget == 4.0
    policy.contact.note()
    assert policy.budget() == Timing().connect_budget == 30.0
    # A simulator's time scale does not make connecting any faster: not scaled.
    assert Timing.scaled(0.01).first_contact_budget == 4.0


@pytest.mark.anyio
async def test_a_never_reached_api_gives_up_on_the_first_contact_budget_with_one_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """connect_budget 30 s, first_contact_budget 0.5 s: the short one applies; no WARNING."""
    caplog.set_level(logging.DEBUG, logger="flowmusic_async")
    started = anyio.current_time()
    async with unreachable_client(budget=30.0, first_contact_budget=0.5) as fm:
        with anyio.fail_after(10), pytest.raises(TransportError) as caught:
            await fm.generate("nobody home")
    assert anyio.current_time() - started < 5
    message = str(caught.value)
    assert message.startswith(f"cannot reach the API at {fm.base_url}: connection refused")
    assert "\n" not in message and caught.value.never_reached
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.anyio
async def test_after_one_request_gave_up_the_next_tries_once() -> None:
    """A wrong URL costs one first-contact budget, not one per request; an answer resets it."""
    attempts: list[str] = []
    up = False

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        if not up:
            raise httpx.ConnectError("All connection attempts failed", request=request)
        return httpx.Response(200, json={})

    timing = msgspec.structs.replace(Timing.scaled(0.01), first_contact_budget=0.3)
    transport = httpx.MockTransport(handler)
    async with FlowMusic(
        token=TOKEN, base_url="http://127.0.0.1:9/v1", transport=transport, timing=timing
    ) as fm:
        with pytest.raises(TransportError):
            await fm.jobs.list()
        first = len(attempts)
        assert first > 1  # retried within the budget
        with pytest.raises(TransportError) as caught:
            await fm.jobs.list()
        assert len(attempts) == first + 1  # one try, no retries
        assert "no answer in 0.3 s" in str(caught.value)
        up = True
        assert await fm.jobs.list() == {}
        assert len(attempts) == first + 2


@pytest.mark.anyio
async def test_a_host_name_that_does_not_resolve_is_named_as_such() -> None:
    """A DNS failure's cause reaches the one error (faked: tests never use the network)."""

    def handler(request: httpx.Request) -> httpx.Response:
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except socket.gaierror as dns:
            raise httpx.ConnectError(str(dns), request=request) from dns

    timing = msgspec.structs.replace(Timing.scaled(0.01), first_contact_budget=0.2)
    async with FlowMusic(
        token=TOKEN,
        base_url="https://api.useapi.nett/v1/flowmusic",
        transport=httpx.MockTransport(handler),
        timing=timing,
    ) as fm:
        with anyio.fail_after(10), pytest.raises(TransportError) as caught:
            await fm.jobs.list()
    assert str(caught.value).startswith(
        "cannot reach the API at https://api.useapi.nett/v1/flowmusic: host name not found "
        "(Name or service not known)"
    )


@pytest.mark.anyio
async def test_an_outage_after_contact_gets_the_longer_budget_and_its_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once the API has answered, a refused connection is an outage: `connect_budget`."""
    sim = Simulator(time_scale=0.01)
    timing = msgspec.structs.replace(
        Timing.scaled(0.01), connect_budget=0.6, first_contact_budget=0.1
    )
    async with sim.serve() as base_url:
        fm = FlowMusic(token=sim.token, base_url=base_url, timing=timing)
        await fm.open()
        assert await fm.jobs.list() == {}  # an answer: contact made
    # The server is gone now (its port closed).
    try:
        started = anyio.current_time()
        with anyio.fail_after(10), pytest.raises(TransportError) as caught:
            await fm.jobs.list()
        assert anyio.current_time() - started >= 0.6  # not the 0.1 s first-contact budget
        assert not caught.value.never_reached
        assert "cannot reach 127.0.0.1" in str(caught.value)
        assert "giving up" in caplog.text
    finally:
        await fm.aclose()


# ----- batches --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_batch_against_a_never_reached_api_stops_once() -> None:
    """16 songs, no server: one BatchAborted, not 16 failed outcomes."""
    got: list[Any] = []
    async with unreachable_client(budget=30.0, first_contact_budget=0.3) as fm:
        with anyio.fail_after(10), pytest.raises(BatchAborted) as caught:
            async with fm.generate_many([f"song {i}" for i in range(16)]) as outcomes:
                async for outcome in outcomes:
                    got.append(outcome)
    assert got == []
    cause = caught.value.cause
    assert isinstance(cause, TransportError) and cause.never_reached


@pytest.mark.anyio
async def test_a_batch_whose_token_is_refused_stops_with_batch_aborted_not_a_group() -> None:
    """A 401 before any request started used to leave the batch as an ExceptionGroup."""
    sim = Simulator(time_scale=0.01)
    async with FlowMusic(
        token="user:1001-refusedtoken",
        base_url=sim.base_url,
        transport=sim.transport(),
        timing=Timing.scaled(0.01),
    ) as fm:
        with anyio.fail_after(10), pytest.raises(BatchAborted) as caught:
            async with fm.generate_many(["a", "b"]) as outcomes:
                async for _ in outcomes:
                    pass
    assert type(caught.value.cause).__name__ == "AuthenticationError"


# ----- the CLI ---------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio")  # the CLI runs on asyncio
async def test_cli_commands_against_a_wrong_port_fail_in_seconds_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The most common first mistake: the default timing, a closed port, under 5 s, no WARNING.

    `generate`, `jobs list` and a 16-song `batch` side by side (each waits its 4 s).
    """
    monkeypatch.delenv("FLOWMUSIC_TIME_SCALE", raising=False)
    monkeypatch.chdir(tmp_path)  # the batch's default journal goes in the current folder
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(f"song {i}\n" for i in range(16))))
    base_url = f"http://127.0.0.1:{closed_port()}/v1/flowmusic"
    results: dict[str, tuple[int, str, str, float]] = {}

    async def command(*argv: str) -> None:
        stdout, stderr = io.StringIO(), io.StringIO()
        started = anyio.current_time()
        code = await run(
            ["--token", TOKEN, "--base-url", base_url, "--progress", "off", *argv],
            stdout=stdout,
            stderr=stderr,
        )
        took = anyio.current_time() - started
        results[argv[0]] = (code, stdout.getvalue(), stderr.getvalue(), took)

    async with anyio.create_task_group() as tg:
        for argv in (("generate", "x"), ("jobs", "list"), ("batch", "-")):
            tg.start_soon(command, *argv)
    for name, (code, stdout, stderr, took) in results.items():
        assert took < 5, name
        assert code == 1, (name, stderr)
        lines = stderr.splitlines()
        if name == "batch":  # a batch names its journal first
            assert lines.pop(0).startswith("journal: ")
        [error] = lines  # one line, no WARNING before it
        assert error.startswith("flowmusic: error: ")
        assert f"cannot reach the API at {base_url}: connection refused" in error
        assert "FAILED" not in stdout
    assert "(16 songs not started)" in results["batch"][2]
