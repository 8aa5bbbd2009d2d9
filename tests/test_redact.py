"""One registry of secrets: a token registered once is blanked in errors and in log records."""

from __future__ import annotations

import io
import logging

import httpx
import pytest

from flowmusic_async import DecodeError, FlowMusic, FlowMusicError, _logs
from flowmusic_async._redact import remember_secret

JOBID = "job:5555-user:1001-a@example.com-bot:flowmusic"
FORMAT = "%(levelname)s %(name)s: %(message)s"


def echoing(request: httpx.Request) -> httpx.Response:
    """A hostile server: it echoes the Authorization header into a field msgspec will quote."""
    echoed = request.headers["Authorization"].removeprefix("Bearer ")
    return httpx.Response(200, json={"jobid": JOBID, "status": echoed, "email": "a@example.com"})


@pytest.mark.anyio
async def test_the_clients_token_is_blanked_in_its_errors_and_in_the_library_log() -> None:
    """FlowMusic(token=) registers once; the error and the log handler both read that one list."""
    token = "user:1001-RegisteredOnceByTheClient"
    shown = io.StringIO()
    with _logs.enabled(logging.INFO, fmt=FORMAT, stream=shown):
        async with FlowMusic(
            token=token, transport=httpx.MockTransport(echoing), max_retries=0
        ) as fm:
            with pytest.raises(DecodeError) as caught:
                await fm.jobs.get(JOBID)
        logging.getLogger("flowmusic_async").warning("answer was %s", token)  # a slip
    assert token not in str(caught.value) and token not in str(caught.value.__cause__)
    assert "<redacted>" in str(caught.value.__cause__)
    assert shown.getvalue() == "WARNING flowmusic_async: answer was ***\n"


def test_a_secret_remembered_once_is_blanked_in_an_error_message_and_a_log_record() -> None:
    """The registry is shared: before, the errors' list did not reach the log handler."""
    secret = "user:1002-RememberedOnlyInTheRegistry"
    remember_secret(secret)
    error = FlowMusicError(f"the server said {secret}")
    shown = io.StringIO()
    with _logs.enabled(logging.INFO, fmt=FORMAT, stream=shown):
        logging.getLogger("flowmusic_async.engine").info("echoed %s back", secret)
    assert str(error) == "the server said <redacted>" and repr(error).count(secret) == 0
    assert shown.getvalue() == "INFO flowmusic_async.engine: echoed *** back\n"
