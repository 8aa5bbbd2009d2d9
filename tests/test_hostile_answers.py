"""A broken or hostile server: every call ends completed or with a typed error, nothing is lost.

A transport between the client and the simulator rewrites chosen answers: invalid UTF-8,
JSON nested deeper than any parser's stack, wrong types, out-of-range `maxJobs`, the token
echoed back. The simulator still does the real work, so its counters say what was paid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import httpx
import msgspec
import pytest

from flowmusic_async import DecodeError
from flowmusic_async.testing.pytest_plugin import MakeClient, MakeSim

SCALE = 0.002
pytestmark = [
    # The library's promises hold on both of anyio's backends.
    pytest.mark.anyio_backends("asyncio", "trio"),
    # The simulators this module's tests build (flowmusic_make_sim) start from these.
    pytest.mark.flowmusic_sim(time_scale=SCALE, seed=13, account_email="hostile{i}@example.com"),
]
INVALID_UTF8 = b'{"jobid": "\xff\xfe", "status": "pending"}'
TOO_DEEP = b"[" * 100_000 + b"]" * 100_000

Rewrite = Callable[[httpx.Request, httpx.Response, bytes], bytes | None]


class Rewriting(httpx.AsyncBaseTransport):
    """Passes requests to the simulator; `rewrite` may replace an answer's body (None: keep)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, rewrite: Rewrite) -> None:
        self._inner = inner
        self._rewrite = rewrite
        self.rewritten = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        body = await response.aread()
        replaced = self._rewrite(request, response, body)
        if replaced is None:
            return httpx.Response(response.status_code, headers=response.headers, content=body)
        self.rewritten += 1
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return httpx.Response(response.status_code, headers=headers, content=replaced)


def first_n(n: int, route: str, body: bytes) -> Rewrite:
    """Replace the first `n` answers of `route` ("GET /jobs", "GET /jobs/", ...) with `body`."""
    left = [n]

    def rewrite(request: httpx.Request, response: httpx.Response, _: bytes) -> bytes | None:
        method, path = route.split(" ", 1)
        matches = request.method == method and (
            request.url.path.endswith(path) if not path.endswith("/") else path in request.url.path
        )
        if matches and left[0] > 0:
            left[0] -= 1
            return body
        return None

    return rewrite


@pytest.mark.parametrize("body", [INVALID_UTF8, TOO_DEEP, b'{"a": {"maxJobs": "x"}}', b"\x00"])
@pytest.mark.anyio
async def test_the_poller_survives_broken_sweeps_and_reads_and_every_wait_completes(
    body: bytes, flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Broken GET /jobs and GET /jobs/{jobid} answers are tolerated; the songs still arrive."""
    sim = flowmusic_make_sim(2)
    sweeps = first_n(3, "GET /v1/flowmusic/jobs", body)
    reads = first_n(2, "GET /jobs/", body)

    def both(request: httpx.Request, response: httpx.Response, raw: bytes) -> bytes | None:
        return sweeps(request, response, raw) or reads(request, response, raw)

    transport = Rewriting(sim.transport(), both)
    fm = flowmusic_make_client(sim, transport=transport)
    async with fm:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(fm.generate, f"survivor {i}")
    assert transport.rewritten >= 3
    assert sim.stats.jobs_created == 4 and sim.stats.duplicate_submissions == 0


@pytest.mark.parametrize("body", [INVALID_UTF8, TOO_DEEP])
@pytest.mark.anyio
async def test_an_unreadable_answer_to_the_paid_post_is_reconciled_not_resent(
    body: bytes, flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """The job exists and is charged; its answer is garbage: found by reference, paid once."""
    sim = flowmusic_make_sim(2)
    transport = Rewriting(sim.transport(), first_n(1, "POST /v1/flowmusic/music", body))
    fm = flowmusic_make_client(sim, transport=transport)
    async with fm:
        with anyio.fail_after(20):
            job = await fm.generate("garbled answer")
    assert transport.rewritten == 1
    assert job.is_completed
    assert sim.stats.jobs_created == 1 and sim.stats.accepted_prompts["garbled answer"] == 1


@pytest.mark.parametrize("value", [0, -3, None, 99])
@pytest.mark.anyio
async def test_max_jobs_outside_the_documented_range_never_hangs_a_submission(
    value: int | None,
    caplog: pytest.LogCaptureFixture,
    flowmusic_make_sim: MakeSim,
    flowmusic_make_client: MakeClient,
) -> None:
    """maxJobs 0, negative, missing or huge in GET /accounts: clamped, logged, songs complete."""
    sim = flowmusic_make_sim(2)

    def odd_limits(request: httpx.Request, response: httpx.Response, raw: bytes) -> bytes | None:
        if request.method == "GET" and request.url.path.endswith("/accounts"):
            accounts = msgspec.json.decode(raw)
            for record in accounts.values():
                if value is None:
                    record.pop("maxJobs", None)
                else:
                    record["maxJobs"] = value
            return msgspec.json.encode(accounts)
        return None

    fm = flowmusic_make_client(sim, transport=Rewriting(sim.transport(), odd_limits))
    with caplog.at_level(logging.WARNING, logger="flowmusic_async"):
        async with fm:
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    for i in range(3):
                        tg.start_soon(fm.generate, f"odd limit {i}")
    assert sim.stats.jobs_created == 3
    assert "maxJobs" in caplog.text


@pytest.mark.anyio
async def test_a_server_echoing_the_token_in_a_broken_body_cannot_leak_it(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """The DecodeError quotes what it could not read, with the token blanked out."""
    sim = flowmusic_make_sim(1)

    def echo(request: httpx.Request, response: httpx.Response, raw: bytes) -> bytes | None:
        if request.url.path.endswith("/accounts"):
            return b'{"oops": "' + sim.token.encode() + b'", '  # truncated JSON
        return None

    fm = flowmusic_make_client(sim, transport=Rewriting(sim.transport(), echo))
    async with fm:
        with pytest.raises(DecodeError) as caught:
            await fm.accounts.list()
    assert sim.token not in str(caught.value) and sim.token not in repr(caught.value)
    assert "<redacted>" in str(caught.value) or "oops" not in str(caught.value)


@pytest.mark.parametrize("body", [INVALID_UTF8, TOO_DEEP, b"", b"null", b'{"jobid": 7}'])
@pytest.mark.anyio
async def test_a_broken_webhook_body_is_answered_not_raised(
    body: bytes, flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """fm.webhooks.handle turns any body into a WebhookResult (400 for garbage)."""
    sim = flowmusic_make_sim(1)
    fm = flowmusic_make_client(sim, transport=Rewriting(sim.transport(), lambda *_: None))
    async with fm:
        result = await fm.webhooks.handle(body)
    assert not result.accepted and result.http_status == 400
