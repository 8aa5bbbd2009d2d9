"""A broken or hostile server: every call ends completed or with a typed error, nothing is lost.

A transport between the client and the simulator rewrites chosen answers: invalid UTF-8,
JSON nested deeper than any parser's stack, wrong types, out-of-range `maxJobs`, the token
echoed back. The simulator still does the real work, so its counters say what was paid.
"""

from __future__ import annotations

import logging

import anyio
import httpx
import msgspec
import pytest
from sim_helpers import Rewriting

from flowmusic_async import DecodeError
from flowmusic_async.testing.pytest_plugin import MakeClient, MakeSim

SCALE = 0.002
pytestmark = [
    # The library's promises hold on both of anyio's backends.
    pytest.mark.anyio_backends("asyncio", "trio"),
    # The simulators this module's tests build (flowmusic_make_sim) start from these.
    pytest.mark.flowmusic_sim(time_scale=SCALE, seed=13, account_email="hostile{i}@example.com"),
]


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
