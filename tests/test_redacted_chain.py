"""Redaction covers the whole chain a user can print: a DecodeError's cause must not quote
what a hostile server echoed (the token), in str(), in a traceback or in logging.exception."""

from __future__ import annotations

import logging
import traceback

import httpx
import pytest
from mock_api import TOKEN

from flowmusic_async import DecodeError, FlowMusic

pytestmark = pytest.mark.anyio

JOBID = "job:5555-user:1001-a@example.com-bot:flowmusic"


def echoing(request: httpx.Request) -> httpx.Response:
    """A hostile server: it echoes the Authorization header into a field msgspec will quote."""
    echoed = request.headers["Authorization"].removeprefix("Bearer ")
    return httpx.Response(200, json={"jobid": JOBID, "status": echoed, "email": "a@example.com"})


async def test_a_decode_error_chain_quotes_no_token(caplog: pytest.LogCaptureFixture) -> None:
    """msgspec's message quotes the bad value; the cause we keep must have it blanked."""
    async with FlowMusic(token=TOKEN, transport=httpx.MockTransport(echoing), max_retries=0) as fm:
        with pytest.raises(DecodeError) as caught:
            await fm.jobs.get(JOBID)
    error = caught.value
    printed = "".join(traceback.format_exception(error))
    logging.getLogger("user.app").exception("poll failed", exc_info=error)
    assert "Invalid enum value" in printed  # the cause is still there, as data
    assert error.__cause__ is not None and "<redacted>" in str(error.__cause__)
    assert TOKEN not in printed
    assert TOKEN not in caplog.text
    assert "poll failed" in caplog.text


async def test_a_logged_decode_error_from_within_its_except_block_quotes_no_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The usual way users log: logging.exception() inside the except block."""
    async with FlowMusic(token=TOKEN, transport=httpx.MockTransport(echoing), max_retries=0) as fm:
        try:
            await fm.jobs.get(JOBID)
        except DecodeError as error:
            logging.getLogger("user.app").exception(error)
    assert "DecodeError" in caplog.text
    assert TOKEN not in caplog.text
