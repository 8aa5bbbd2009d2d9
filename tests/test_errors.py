"""The one status -> exception mapping, and the data every error carries."""

from __future__ import annotations

import json

import httpx
import pytest

from flowmusic_async._errors import (
    AccountBusyError,
    AccountError,
    AllAccountsBusyError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    BatchAborted,
    FlowMusicError,
    InsufficientCreditsError,
    JobFailed,
    JobTimeout,
    ModeratedError,
    NoAccountAvailable,
    NotFoundError,
    NotReadyError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SubmissionUncertain,
    ValidationError,
    error_from_response,
)
from flowmusic_async._models import JOB_DECODER


def _response(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers=headers)


@pytest.mark.parametrize(
    ("status", "cls", "text"),
    [
        (400, BadRequestError, "Parameter refresh_token is required"),
        (401, AuthenticationError, "Unauthorized"),
        (402, InsufficientCreditsError, "Not enough credits"),
        (403, PermissionDeniedError, "Job belongs to another user"),
        (404, NotFoundError, "Job not found"),
        (409, NotReadyError, "Job is not completed"),
        (413, PayloadTooLargeError, "File too large"),
        (422, ModeratedError, "Prompt moderated"),
        (500, ServerError, 'FlowMusic image generation failed (500): "Internal Server Error"'),
        (502, ServerError, "Bad gateway"),
        (418, APIStatusError, "teapot"),
    ],
)
def test_each_documented_status_maps_to_its_class(
    status: int, cls: type[APIStatusError], text: str
) -> None:
    """Callers catch by type (e.g. 402 stops a batch), so each status must pick its class."""
    error = error_from_response(
        _response(status, {"error": text, "code": status}),
        endpoint="GET /jobs/{jobid}",
        jobid="job:1",
    )
    assert type(error) is cls
    assert error.status == status and error.server_message == text
    assert error.endpoint == "GET /jobs/{jobid}" and error.jobid == "job:1"
    assert text in str(error) and "GET /jobs/{jobid}" in str(error)
    assert error.body == {"error": text, "code": status}


def test_lyrics_422_object_error_form() -> None:
    """The lyrics 422 puts an object in `error`; its code and message must not be lost."""
    body = {
        "email": "a@example.com",
        "error": {"code": "no_lyrics", "message": "agent wrote nothing"},
        "agent_text": "hmm",
    }
    error = error_from_response(_response(422, body), endpoint="POST /music/lyrics")
    assert isinstance(error, ModeratedError)
    assert error.error_code == "no_lyrics"
    assert error.server_message == "agent wrote nothing"
    assert error.email == "a@example.com"
    assert error.body["agent_text"] == "hmm"


def test_596_parses_account_email_and_reason() -> None:
    """596 names the broken account; the scheduler takes exactly that account out of rotation."""
    text = "Account someone@example.com in error state: refresh token rejected"
    error = error_from_response(_response(596, {"error": text, "code": 596}), endpoint="GET /music")
    assert isinstance(error, AccountError)
    assert error.email == "someone@example.com"
    assert error.reason == "refresh token rejected"
    assert error.server_message == text


def test_596_is_not_a_server_error() -> None:
    """A 596 must not be caught (and retried) as a transient 5xx: the account needs a human."""
    text = "Account x@example.com in error state: gone"
    error = error_from_response((596, {}, json.dumps({"error": text}).encode()), endpoint="E")
    assert not isinstance(error, ServerError)


def test_596_with_unexpected_text_keeps_known_email() -> None:
    """If the message changes shape, the email the caller knew must still be reported."""
    error = error_from_response(
        _response(596, {"error": "account broken"}), endpoint="E", email="k@example.com"
    )
    assert isinstance(error, AccountError)
    assert error.email == "k@example.com" and error.reason is None


def test_429_without_named_email_means_all_accounts_busy() -> None:
    """No account named: every account is full, so waiting for any slot is right."""
    error = error_from_response(
        _response(429, {"error": "busy", "code": 429}, {"Retry-After": "0.1"}),
        endpoint="POST /music",
    )
    assert isinstance(error, AllAccountsBusyError) and isinstance(error, RateLimitError)
    assert error.retry_after == pytest.approx(0.1)
    assert error.email is None


def test_429_with_named_email_means_that_account_is_full() -> None:
    """A named account at its limit needs a different remedy than all accounts being busy."""
    error = error_from_response(
        _response(429, {"error": "busy", "code": 429}),
        endpoint="POST /music",
        named_email="a@example.com",
    )
    assert isinstance(error, AccountBusyError)
    assert error.email == "a@example.com" and error.retry_after is None


def test_non_json_error_body_keeps_the_text() -> None:
    """A proxy's HTML/plain error must still reach the user verbatim."""
    error = error_from_response(_response(503, b"upstream timeout"), endpoint="GET /jobs")
    assert isinstance(error, ServerError)
    assert error.server_message == "upstream timeout" and error.body == "upstream timeout"


def test_tuple_form_input_maps_like_a_response() -> None:
    """The webhook/simulator path passes (status, headers, body); it must map identically."""
    error = error_from_response(
        (429, {"Retry-After": "3"}, b'{"error":"x","code":429}'), endpoint="POST /music"
    )
    assert isinstance(error, AllAccountsBusyError) and error.retry_after == 3


def test_token_echoed_by_server_is_redacted() -> None:
    """A server that echoes the token must not leak it into messages or logs."""
    token = "user:1001-SeCrEt"
    error = error_from_response(
        _response(401, {"error": f"bad token {token}"}), endpoint="GET /jobs", secrets=(token,)
    )
    assert token not in str(error) and token not in repr(error)
    assert token not in (error.server_message or "")


def test_validation_error_is_a_value_error_naming_the_field() -> None:
    """Code that catches ValueError keeps working, and the field is machine-readable."""
    error = ValidationError("gain_db", "must be between -30 and 30, got 31")
    assert isinstance(error, ValueError) and isinstance(error, FlowMusicError)
    assert error.field == "gain_db" and str(error).startswith("gain_db:")


def test_job_failed_carries_the_record() -> None:
    """A failed job's error must reach the caller with its code and the full record."""
    job = JOB_DECODER.decode(
        b'{"jobid":"job:1","email":"a@example.com","status":"failed",'
        b'"error":{"code":"moderation_reject","message":"nope"}}'
    )
    error = JobFailed(job)
    assert error.job is job and error.code == "moderation_reject"
    assert error.jobid == "job:1" and error.email == "a@example.com"
    assert "moderation_reject" in str(error) and "nope" in str(error)


def test_job_timeout_says_the_job_keeps_running() -> None:
    """A timeout is the caller's deadline, not the job's end; the message must say so."""
    error = JobTimeout("job:1", email="a@example.com", timeout=5)
    assert error.jobid == "job:1" and "not cancelled" in str(error)


def test_submission_uncertain_explains_how_to_check() -> None:
    """An uncertain paid POST must tell the user how to avoid paying twice."""
    error = SubmissionUncertain(
        endpoint="POST /music", client_ref="ref-1", email="a@example.com", sent_at=1.0
    )
    assert error.client_ref == "ref-1" and error.sent_at == 1.0
    assert "GET /jobs" in str(error) and "ref-1" in str(error)


def test_batch_aborted_carries_its_cause() -> None:
    """The CLI picks its exit code from the error that stopped the batch."""
    cause = error_from_response(_response(402, {"error": "no credits"}), endpoint="POST /music")
    error = BatchAborted(cause, not_started=4)
    assert error.cause is cause and error.not_started == 4 and error.status == 402
    assert "no credits" in str(error) and "4" in str(error)


def test_no_account_available_is_a_flowmusic_error() -> None:
    """Callers catching FlowMusicError must also catch the scheduler's refusal."""
    error = NoAccountAvailable("no account left", email="a@example.com")
    assert isinstance(error, FlowMusicError) and error.email == "a@example.com"
