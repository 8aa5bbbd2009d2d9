"""HttpCore: auth per request, error mapping, and retries for safe requests only."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from mock_api import BASE, TOKEN, MockAPI

from flowmusic_async._errors import (
    AllAccountsBusyError,
    APIStatusError,
    AuthenticationError,
    DecodeError,
    NotFoundError,
    ServerError,
    TransportError,
)
from flowmusic_async._http import HttpCore
from flowmusic_async._models import JOB_DECODER, JOBS_DECODER
from flowmusic_async._retry import RetryPolicy

PENDING = {"jobid": "job:1", "email": "a@example.com", "status": "pending"}
pytestmark = pytest.mark.anyio


def _core(api: MockAPI, client: httpx.AsyncClient, **kwargs: Any) -> HttpCore:
    return HttpCore(client=client, base_url=BASE + "/", token=TOKEN, policy=RetryPolicy(**kwargs))


@pytest.fixture
async def client(api: MockAPI) -> Any:
    async with httpx.AsyncClient(transport=api.transport()) as http_client:
        yield http_client


async def _get_jobs(core: HttpCore) -> Any:
    return await core.request("GET", "/jobs", endpoint="GET /jobs", decoder=JOBS_DECODER, safe=True)


async def _post_music(core: HttpCore) -> Any:
    return await core.request(
        "POST",
        "/music",
        endpoint="POST /music",
        decoder=JOB_DECODER,
        safe=False,
        json={"prompt": "x"},
    )


async def test_authorization_is_per_request_not_a_client_default(
    api: MockAPI, client: httpx.AsyncClient
) -> None:
    """Media downloads share the client; a client-wide header would send them the token."""
    api.reply(200, {})
    await _get_jobs(_core(api, client))
    assert api.last.headers["Authorization"] == f"Bearer {TOKEN}"
    assert str(api.last.url) == f"{BASE}/jobs"
    assert "authorization" not in client.headers


async def test_safe_request_retried_on_5xx_then_succeeds(
    api: MockAPI, client: httpx.AsyncClient, sleeps: list[float]
) -> None:
    """A transient 500 on a read should not surface when a retry succeeds."""
    api.reply(500, {"error": "boom", "code": 500}).reply(
        200, {"a@example.com": {"running": 0, "maxJobs": 2}}
    )
    result = await _get_jobs(_core(api, client, max_retries=3))
    assert result["a@example.com"].max_jobs == 2
    assert len(api.requests) == 2 and len(sleeps) == 1


async def test_safe_request_gives_up_after_max_retries(
    api: MockAPI, client: httpx.AsyncClient, sleeps: list[float]
) -> None:
    """Retries are bounded: max_retries=2 means three attempts, then the error."""
    api.reply(503, {"error": "down"}, times=3)
    with pytest.raises(ServerError):
        await _get_jobs(_core(api, client, max_retries=2))
    assert len(api.requests) == 3 and len(sleeps) == 2


async def test_429_retry_honours_retry_after_with_a_cap(
    api: MockAPI, client: httpx.AsyncClient, sleeps: list[float]
) -> None:
    """The server says when to come back; waiting less earns another 429, more is capped."""
    api.reply(429, {"error": "busy"}, headers={"Retry-After": "0.3"})
    api.reply(429, {"error": "busy"}, headers={"Retry-After": "500"})
    api.reply(200, {})
    await _get_jobs(_core(api, client, max_retries=3, retry_after_cap=7))
    assert sleeps == [pytest.approx(0.3), 7]


@pytest.mark.parametrize("status", [400, 401, 404, 596])
async def test_non_transient_errors_are_not_retried(
    api: MockAPI, client: httpx.AsyncClient, sleeps: list[float], status: int
) -> None:
    """Repeating a 4xx or an account error (596) only wastes time; it fails at once."""
    api.reply(status, {"error": "Account a@example.com in error state: x", "code": status})
    with pytest.raises(APIStatusError) as info:
        await _get_jobs(_core(api, client, max_retries=3))
    assert info.value.status == status
    assert len(api.requests) == 1 and sleeps == []


async def test_paid_post_is_never_retried_on_5xx(
    api: MockAPI, client: httpx.AsyncClient, sleeps: list[float]
) -> None:
    """A repeated POST /music may create a second charged job, so a 500 surfaces as is."""
    api.reply(500, {"error": "boom"}).reply(201, PENDING)
    with pytest.raises(ServerError):
        await _post_music(_core(api, client, max_retries=3))
    assert len(api.requests) == 1 and sleeps == []


async def test_paid_post_429_is_not_retried_here(
    api: MockAPI, client: httpx.AsyncClient, sleeps: list[float]
) -> None:
    """Capacity waiting on job POSTs belongs to the engine's scheduler, not HttpCore."""
    api.reply(429, {"error": "busy"}, headers={"Retry-After": "1"})
    with pytest.raises(AllAccountsBusyError) as info:
        await _post_music(_core(api, client, max_retries=3))
    assert info.value.retry_after == 1 and len(api.requests) == 1


async def test_paid_post_lost_answer_may_have_been_sent(
    api: MockAPI, client: httpx.AsyncClient, sleeps: list[float]
) -> None:
    """A dropped connection after sending may have created a job: maybe_sent must say so."""
    api.fail(httpx.RemoteProtocolError("Server disconnected without sending a response."))
    with pytest.raises(TransportError) as info:
        await _post_music(_core(api, client, max_retries=3))
    assert info.value.maybe_sent is True and info.value.endpoint == "POST /music"
    assert isinstance(info.value.__cause__, httpx.RemoteProtocolError)
    assert len(api.requests) == 1 and sleeps == []


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow connect"),
        httpx.PoolTimeout("no connection free"),
    ],
)
async def test_connect_failures_were_never_sent(
    api: MockAPI, client: httpx.AsyncClient, error: Exception
) -> None:
    """When the server never saw the POST, the engine may resend it without double-paying."""
    api.fail(error)
    with pytest.raises(TransportError) as info:
        await _post_music(_core(api, client))
    assert info.value.maybe_sent is False


async def test_read_timeout_on_paid_post_may_have_been_sent(
    api: MockAPI, client: httpx.AsyncClient
) -> None:
    """A read timeout happens after the body went out; the job may exist."""
    api.fail(httpx.ReadTimeout("slow"))
    with pytest.raises(TransportError) as info:
        await _post_music(_core(api, client))
    assert info.value.maybe_sent is True


async def test_safe_request_retried_after_transport_error(
    api: MockAPI, client: httpx.AsyncClient, sleeps: list[float]
) -> None:
    """A dropped read is harmless to repeat, so a GET recovers on its own."""
    api.fail(httpx.ReadError("reset")).reply(200, {})
    assert await _get_jobs(_core(api, client)) == {}
    assert len(api.requests) == 2


async def test_2xx_with_broken_json_is_a_decode_error(
    api: MockAPI, client: httpx.AsyncClient, sleeps: list[float]
) -> None:
    """A garbled success body must not pass as a result or crash with a msgspec error."""
    api.reply(201, content=b'{"jobid": "job:1", "sta')
    with pytest.raises(DecodeError) as info:
        await _post_music(_core(api, client))
    assert info.value.status == 201 and len(api.requests) == 1


async def test_decode_error_keeps_the_jobid_of_a_created_job(
    api: MockAPI, client: httpx.AsyncClient
) -> None:
    """If a paid POST's answer is JSON but not a job record, the jobid still lets us reconcile."""
    api.reply(201, {"jobid": "job:9", "status": "weird"})
    with pytest.raises(DecodeError) as info:
        await _post_music(_core(api, client))
    assert info.value.jobid == "job:9"


async def test_safe_request_retried_after_broken_json(
    api: MockAPI, client: httpx.AsyncClient, sleeps: list[float]
) -> None:
    """Re-reading is harmless, so a garbled GET answer is retried before giving up."""
    api.reply(200, content=b"<html>").reply(200, {})
    assert await _get_jobs(_core(api, client)) == {}
    assert len(api.requests) == 2


async def test_401_error_never_contains_the_token(api: MockAPI, client: httpx.AsyncClient) -> None:
    """Error messages end up in logs; the token must not, even if the server echoes it."""
    api.reply(401, {"error": f"Unauthorized: {TOKEN}", "code": 401})
    with pytest.raises(AuthenticationError) as info:
        await _get_jobs(_core(api, client))
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)
    assert "Unauthorized" in str(info.value)


async def test_per_request_timeout_is_applied(api: MockAPI, client: httpx.AsyncClient) -> None:
    """Sync-mode POSTs need minutes; the override must reach the transport."""
    api.reply(201, PENDING)
    await _core(api, client).request(
        "POST",
        "/music",
        endpoint="POST /music",
        decoder=JOB_DECODER,
        safe=False,
        json={},
        timeout=httpx.Timeout(5, read=300),
    )
    assert api.last.extensions["timeout"]["read"] == 300
    assert api.last.extensions["timeout"]["connect"] == 5


async def test_stream_checks_status_before_yielding(
    api: MockAPI, client: httpx.AsyncClient
) -> None:
    """A download answering 404 must raise, not hand the error JSON over as audio."""
    api.reply(404, {"error": "no such clip"})
    with pytest.raises(NotFoundError):
        async with _core(api, client).stream("GET", "/music/download", endpoint="E"):
            pass  # pragma: no cover - never reached


async def test_repr_hides_the_token(api: MockAPI, client: httpx.AsyncClient) -> None:
    """HttpCore shows up in debuggers and logs; its repr must not carry the token."""
    assert TOKEN not in repr(_core(api, client))
