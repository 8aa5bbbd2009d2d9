"""The exception tree, and the one function that turns an HTTP error answer into an exception.

Every error the library raises derives from `FlowMusicError` and carries data, not just
text: ``status``, ``endpoint`` (e.g. ``"POST /music"``), the server's own words in
``server_message`` (verbatim), and ``jobid``/``email`` where known (None otherwise). No
message, repr or log line ever contains the API token::

    FlowMusicError
    ├── ConfigurationError          bad client configuration (no token, http:// to a remote host)
    ├── ClientClosedError           used before ``async with`` or after close
    ├── ValidationError             refused locally, nothing sent; ``field`` (also a ValueError)
    ├── TransportError              the network failed; ``maybe_sent`` says if the server may have
    │   │                           seen the request (False for connect errors and pool timeouts);
    │   │                           ``never_reached``: the API never answered (a wrong URL?)
    │   ├── RequestTimeout              a request ran past its overall deadline (``deadline``)
    │   └── RedirectError               a redirect not followed: a loop, or to a non-http(s) URL
    ├── DecodeError                 a body that is not the documented JSON
    │   └── ResponseTooLarge            a body over the byte cap (``limit``, ``option``)
    ├── APIStatusError              an HTTP error answer; ``status``, ``server_message``, ``body``,
    │                               ``job`` when the body is a job record
    │   ├── BadRequestError             400
    │   ├── AuthenticationError         401
    │   ├── InsufficientCreditsError    402
    │   ├── PermissionDeniedError       403
    │   ├── NotFoundError               404
    │   ├── NotReadyError               409  (download of a job that is not completed)
    │   ├── PayloadTooLargeError        413
    │   ├── ModeratedError              422  (``error_code`` e.g. "no_lyrics" when the body says;
    │   │                                     a refused song: ``job``, ``jobid``, ``email``)
    │   ├── RateLimitError              429  (``retry_after`` seconds or None)
    │   │   ├── AllAccountsBusyError        no email named: every account is at maxJobs
    │   │   └── AccountBusyError            the named account (``email``) is at its maxJobs
    │   ├── AccountError                596  (``email`` and ``reason`` parsed from the message)
    │   └── ServerError                 any other 5xx
    ├── JobFailed                   a job ended failed; ``job``, ``code``
    ├── JobTimeout                  a deadline passed while the job ran (the job keeps running)
    ├── SubmissionUncertain         a paid POST whose outcome cannot be decided; check by hand
    ├── NoAccountAvailable          no configured account can take the job (engine)
    ├── BudgetExceeded              refused before sending: the cost would cross a spend limit;
    │                               ``scope``, ``key``, ``limit``, ``spent``, ``reserved``, ``cost``
    ├── WrongEventLoopError         the client is used from another event loop, thread or a
    │                               forked process than the one it was opened in; nothing sent
    ├── JournalError                a journal file cannot be used or written; ``path``
    │   └── JournalInUse                another batch holds the journal; ``holder``
    └── BatchAborted                a batch stopped early; ``cause``, ``not_started``,
                                    ``unrecorded`` (jobs its journal could not write down)

`error_from_response` is the single status -> exception mapping; nothing else picks a class
from a status code. `error_from_httpx` is the single httpx exception -> exception mapping:
every exception httpx defines lands somewhere in this tree. `scrub_chain` blanks secrets out
of the exceptions an error is chained to, so a printed traceback cannot quote them either.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import msgspec

from ._decode import Undecodable, decode_any
from ._models import Job
from ._redact import REDACTED, redact, redact_bytes
from ._retry import parse_retry_after

__all__ = [
    "APIStatusError",
    "AccountBusyError",
    "AccountError",
    "AllAccountsBusyError",
    "AuthenticationError",
    "BadRequestError",
    "BatchAborted",
    "BudgetExceeded",
    "ClientClosedError",
    "ConfigurationError",
    "DecodeError",
    "FlowMusicError",
    "InsufficientCreditsError",
    "JobFailed",
    "JobTimeout",
    "JournalError",
    "JournalInUse",
    "ModeratedError",
    "NoAccountAvailable",
    "NotFoundError",
    "NotReadyError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RedirectError",
    "RequestTimeout",
    "ResponseTooLarge",
    "ServerError",
    "SubmissionUncertain",
    "TransportError",
    "ValidationError",
    "WrongEventLoopError",
    "copy_for_waiter",
    "error_from_httpx",
    "error_from_response",
    "scrub_chain",
]


# Redaction of every message, server text and body happens in one place, the base error's
# constructor, so no error can carry a registered token (`_redact`), whatever path built it (an
# echoing server, a decode error quoting the raw body).


def _redact_value(value: Any, depth: int = 0) -> Any:
    """A decoded body with remembered secrets blanked out of every string in it."""
    if isinstance(value, str):
        return redact(value)
    if depth > 32:  # a hostile body may nest deeply; past this it is dropped, not walked
        return None
    if isinstance(value, dict):
        return {redact(str(k)): _redact_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v, depth + 1) for v in value]
    return value


def _redact_arg(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (bytes, bytearray)):
        return redact_bytes(bytes(value))
    return value


def scrub_chain(error: BaseException) -> BaseException:
    """Blank remembered secrets out of every exception `error` is chained to; return `error`.

    Our own messages are redacted when built, but the exceptions they are chained to (a
    msgspec error quoting a value the server sent, an h11 error quoting a header line) keep
    their raw text, and ``logging.exception`` or a traceback prints the whole chain. Their
    ``args`` are redacted in place; the exception objects (their type, where they came from)
    are kept as data.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [error.__cause__, error.__context__]
    while pending:
        link = pending.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        try:
            link.args = tuple(_redact_arg(arg) for arg in link.args)
            raw = getattr(link, "object", None)  # UnicodeDecodeError keeps the bytes it met
            if isinstance(link, UnicodeError) and isinstance(raw, (bytes, bytearray)):
                setattr(link, "object", _redact_arg(raw))  # noqa: B010 - not in typeshed
        except (AttributeError, TypeError):  # an exception type with read-only fields
            pass
        pending.extend((link.__cause__, link.__context__))
    return error


def copy_for_waiter(error: FlowMusicError) -> FlowMusicError:
    """A fresh exception object with the same class and fields as `error`.

    One failure can end many waits (every waiter of a job, every task awaiting a handle).
    Raising the same object in each would let their tracebacks pile up on it, so each gets its
    own copy, chained to the shared original.
    """
    clone = type(error).__new__(type(error))
    clone.__dict__.update(error.__dict__)
    clone.args = error.args
    clone.__cause__ = error.__cause__ if error.__cause__ is not None else None
    clone.__suppress_context__ = error.__suppress_context__
    return clone


class FlowMusicError(Exception):
    """Base of every error this library raises.

    Attributes:
        message: the full human-readable message (also ``str(error)``).
        status: the HTTP status, or None when no answer was received.
        endpoint: ``"METHOD /path-template"``, e.g. ``"GET /jobs/{jobid}"``, or None.
        server_message: the server's error text, verbatim, or None.
        jobid: the job concerned, when known.
        email: the account concerned, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        endpoint: str | None = None,
        server_message: str | None = None,
        jobid: str | None = None,
        email: str | None = None,
    ) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.status = status
        self.endpoint = endpoint
        self.server_message: str | None = (
            redact(server_message) if server_message is not None else None
        )
        self.jobid = jobid
        self.email = email

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ConfigurationError(FlowMusicError):
    """The client was configured in a way that cannot work (no token, http:// to a remote host)."""


class ClientClosedError(FlowMusicError):
    """The client was used before ``async with FlowMusic(...)`` or after it closed."""


class ValidationError(FlowMusicError, ValueError):
    """A request the server would refuse; raised before anything is sent.

    Attributes:
        field: the offending parameter, by its Python name (e.g. ``"gain_db"``).
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class TransportError(FlowMusicError):
    """The request failed on the network; the cause is the original ``httpx`` exception.

    Attributes:
        maybe_sent: False when the server certainly never saw the request (connection refused,
            connect timeout, pool timeout); True when it may have, so a paid POST may have
            created a job.
        never_reached: True when the client gave up on a connection to an API that has never
            answered it (`Timing.first_contact_budget`): most likely a wrong URL, port or
            host, so nothing else this client tries will work either (a batch stops).
    """

    def __init__(
        self,
        message: str,
        *,
        maybe_sent: bool,
        endpoint: str | None = None,
        jobid: str | None = None,
        email: str | None = None,
        never_reached: bool = False,
    ) -> None:
        super().__init__(message, endpoint=endpoint, jobid=jobid, email=email)
        self.maybe_sent = maybe_sent
        self.never_reached = never_reached


class RequestTimeout(TransportError):
    """A request did not end within its overall deadline (httpx's timeouts are per read only).

    An API request's deadline is derived from ``http_timeout`` (see `FlowMusic`); a download's
    is its ``deadline=``. Not retried: a server too slow for the whole deadline is not made
    faster by asking again at once (the poller looks again at its next sweep). The request
    may have reached the server (``maybe_sent`` is True).

    Attributes:
        deadline: the seconds the request was allowed.
    """

    def __init__(
        self,
        message: str,
        *,
        deadline: float,
        endpoint: str | None = None,
        jobid: str | None = None,
        email: str | None = None,
    ) -> None:
        super().__init__(message, maybe_sent=True, endpoint=endpoint, jobid=jobid, email=email)
        self.deadline = deadline


class RedirectError(TransportError):
    """A redirect the client does not follow: a loop (too many hops), or to a URL that is not
    http(s) (``file://``, ``ftp://``). Not retried: the same answer would come back."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        jobid: str | None = None,
        email: str | None = None,
    ) -> None:
        super().__init__(message, maybe_sent=True, endpoint=endpoint, jobid=jobid, email=email)


class DecodeError(FlowMusicError):
    """A body that is not the documented JSON (a 2xx with a broken or unexpected body).

    ``jobid`` is filled when the body was JSON with a ``jobid`` (a paid POST's job exists).
    """


class ResponseTooLarge(DecodeError):
    """A response body larger than the client's cap; reading stopped at the cap.

    The size counted is the decoded one (after gzip/deflate), checked while the body streams,
    so neither an endless body nor a compression bomb is ever held in memory. Not retried.

    Attributes:
        limit: the cap in bytes.
        option: the `FlowMusic` option that sets it (``"max_response_bytes"`` for API
            answers, ``"max_download_bytes"`` for media files).
    """

    def __init__(
        self,
        *,
        endpoint: str,
        limit: int,
        option: str,
        status: int | None = None,
        jobid: str | None = None,
        email: str | None = None,
    ) -> None:
        super().__init__(
            f"{endpoint}: the response body is over {option}={limit:,} bytes; reading stopped",
            status=status,
            endpoint=endpoint,
            jobid=jobid,
            email=email,
        )
        self.limit = limit
        self.option = option


class APIStatusError(FlowMusicError):
    """The server answered with an HTTP error status.

    Attributes:
        status: the HTTP status code.
        server_message: the ``error`` text (or ``error.message``) verbatim.
        error_code: ``error.code`` when the body's ``error`` is an object, else None.
        body: the decoded JSON body, or the raw text when it was not JSON.
        job: the decoded record when the body is a job record (the POST /music 422 answers
            a refused song with its failed job), else None; ``jobid`` and ``email`` are then
            the record's.
    """

    status: int

    def __init__(
        self,
        message: str,
        *,
        status: int,
        endpoint: str | None = None,
        server_message: str | None = None,
        jobid: str | None = None,
        email: str | None = None,
        error_code: str | None = None,
        body: Any = None,
        job: Job | None = None,
    ) -> None:
        super().__init__(
            message,
            status=status,
            endpoint=endpoint,
            server_message=server_message,
            jobid=jobid,
            email=email,
        )
        self.error_code = error_code
        self.body: Any = _redact_value(body)
        self.job: Job | None = job


class BadRequestError(APIStatusError):
    """400: a parameter is missing or invalid, or the upload is not what it claims to be."""


class AuthenticationError(APIStatusError):
    """401: the API token is missing or invalid."""


class InsufficientCreditsError(APIStatusError):
    """402: the account has too few credits (or the useapi.net subscription lapsed)."""


class PermissionDeniedError(APIStatusError):
    """403: the job (or clip) belongs to another useapi.net user."""


class NotFoundError(APIStatusError):
    """404: unknown or expired job, or an account that is not configured."""


class NotReadyError(APIStatusError):
    """409: a download by jobid while that job is not completed yet."""


class PayloadTooLargeError(APIStatusError):
    """413: the upload is over the size cap."""


class ModeratedError(APIStatusError):
    """422: refused by moderation, or the lyrics agent produced nothing (``error_code``).

    A refused song (POST /music, POST /music/edit) comes with its failed job record: ``job``
    (``status == "failed"``, ``job.error.code == "moderation_reject"``), ``jobid`` and ``email``.
    """


class RateLimitError(APIStatusError):
    """429: no free job slot.

    Attributes:
        retry_after: seconds from the ``Retry-After`` header, or None when absent.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class AllAccountsBusyError(RateLimitError):
    """429 with no account named: every eligible account is at its ``maxJobs``."""


class AccountBusyError(RateLimitError):
    """429 for a request that named an account (``email``): that account is at its ``maxJobs``."""


class AccountError(APIStatusError):
    """596: the account is in error state (e.g. refresh token rejected); re-add it.

    Attributes:
        reason: the recorded reason parsed from the server's message, or None.
    """

    def __init__(self, message: str, *, reason: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reason = reason


class ServerError(APIStatusError):
    """A 5xx other than 596: an upstream Flow Music failure (may be transient)."""


class JobFailed(FlowMusicError):
    """A job ended ``failed``; ``job`` is the final record and ``code`` its ``error.code``."""

    def __init__(self, job: Job, *, message: str | None = None) -> None:
        code = job.error.code if job.error is not None else None
        detail = job.error.message if job.error is not None else ""
        text = message or f"job {job.jobid} on {job.email} failed: {code}: {detail}".rstrip(": ")
        super().__init__(text, server_message=detail or None, jobid=job.jobid, email=job.email)
        self.job = job
        self.code = code


class JobTimeout(FlowMusicError):
    """The caller's deadline passed while the job was still running; the job is left running."""

    def __init__(
        self, jobid: str, *, email: str | None = None, timeout: float | None = None
    ) -> None:
        waited = f" after {timeout:g} s" if timeout is not None else ""
        super().__init__(
            f"job {jobid} still running{waited}; it was not cancelled", jobid=jobid, email=email
        )
        self.timeout = timeout


class SubmissionUncertain(FlowMusicError):
    """A paid POST whose outcome cannot be decided: a job may or may not have been created.

    Check by hand before resubmitting: GET /jobs (running jobs per account) and GET /music on
    the account (newest clips first), looking for ``client_ref`` in the ``replyRef`` echo.

    Attributes:
        client_ref: the reference sent as ``replyRef`` with the request, if any.
        sent_at: the wall-clock time (``time.time()``) the request was sent.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        client_ref: str | None,
        email: str | None,
        sent_at: float,
        detail: str = "",
    ) -> None:
        where = f" on {email}" if email else ""
        ref = f" (replyRef {client_ref!r})" if client_ref else ""
        message = (
            f"{endpoint}{ref}{where}: the outcome is unknown; a job may have been created "
            "and charged. Check GET /jobs and GET /music before resubmitting."
        )
        if detail:
            message = f"{message} {detail}"
        super().__init__(message, endpoint=endpoint, email=email)
        self.client_ref = client_ref
        self.sent_at = sent_at


class NoAccountAvailable(FlowMusicError):
    """No configured account can take the job: all are in error state, out of credits, or gone."""


class BudgetExceeded(FlowMusicError):
    """A submission refused before anything was sent: its cost would cross a spend limit.

    Credits reserved by submissions in flight count as well as those spent, so concurrent
    submissions cannot pass one check together (docs/concepts/spending.md).

    Attributes:
        scope: the limit crossed: "client", "batch" or "tenant".
        key: the batch id or tenant key (None for the client).
        limit: that limit, in credits.
        spent: credits that scope had spent (jobs that ended).
        reserved: credits it held for submissions and running jobs.
        cost: the credits this submission would have reserved.
    """

    def __init__(
        self,
        *,
        scope: str,
        key: str | None,
        limit: float,
        spent: float,
        reserved: float,
        cost: float,
    ) -> None:
        name = scope if key is None else f"{scope} {key!r}"
        super().__init__(
            f"{name} spend limit of {limit:g} credits: {spent:g} spent and {reserved:g} "
            f"reserved, so {cost:g} more would cross it; nothing was sent"
        )
        self.scope = scope
        self.key = key
        self.limit = limit
        self.spent = spent
        self.reserved = reserved
        self.cost = cost


class WrongEventLoopError(FlowMusicError):
    """The client was used from another event loop (or thread), or in a child process after
    ``fork()``, than the one that opened it; refused before anything was sent.

    A client's connections, task group and poller belong to the event loop that opened it.
    Open one client per event loop (per process): e.g. in the test fixture or the worker
    that uses it.
    """


class JournalError(FlowMusicError):
    """A journal file cannot be used: it cannot be opened or written (a missing or read-only
    folder, a full disk, a lock held too long), it is not a journal, it has a newer schema, or
    the journal is closed.

    Attributes:
        path: the journal file.
        disk_full: the write failed because the disk (or the user's quota) is full.
    """

    def __init__(self, message: str, *, path: str, disk_full: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.disk_full = disk_full


class JournalInUse(JournalError):
    """Another batch, in this process or another, is using the journal; nothing was sent.

    Attributes:
        holder: what the holder wrote into the lock file (its pid, host and start time), or
            None if it could not be read.
    """

    def __init__(self, path: str, holder: str | None) -> None:
        who = f"by {holder}" if holder else "by another batch"
        super().__init__(
            f"journal {path} is in use {who}; nothing was sent. Wait for that run to finish "
            "(or stop it), or give this batch a journal of its own",
            path=path,
        )
        self.holder = holder


class BatchAborted(FlowMusicError):
    """A batch stopped early on an error no retry can fix (e.g. 401, 402 or 596 on every
    account, an unreachable API, a journal that cannot be written).

    Attributes:
        cause: the error that stopped the batch (also ``__cause__`` when raised ``from`` it).
        not_started: how many requests of the batch were never sent (nothing was paid for
            them; with a journal, a rerun sends them).
        unrecorded: (jobid, email) of the jobs accepted for this batch that its journal could
            not write down: they are paid, and this is the only record of them.
    """

    def __init__(
        self,
        cause: FlowMusicError,
        *,
        not_started: int = 0,
        unrecorded: tuple[tuple[str, str | None], ...] = (),
    ) -> None:
        message = f"batch stopped: {cause} ({not_started} request(s) not started)"
        if unrecorded:
            jobids = ", ".join(jobid for jobid, _ in unrecorded)
            message += (
                f"; {len(unrecorded)} paid job(s) the journal could not record (collect them "
                f"with `flowmusic wait JOBID` or fm.wait(jobid)): {jobids}"
            )
        super().__init__(
            message,
            status=cause.status,
            endpoint=cause.endpoint,
            server_message=cause.server_message,
            email=cause.email,
        )
        self.cause = cause
        self.not_started = not_started
        self.unrecorded = unrecorded


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: NotReadyError,
    413: PayloadTooLargeError,
    422: ModeratedError,
}

_ACCOUNT_ERROR = re.compile(r"^Account (?P<email>\S+) in error state:\s*(?P<reason>.*)$", re.S)

ResponseLike = httpx.Response | tuple[int, Mapping[str, str], bytes]


def error_from_response(
    response: ResponseLike,
    *,
    endpoint: str,
    email: str | None = None,
    jobid: str | None = None,
    named_email: str | None = None,
    secrets: Sequence[str] = (),
) -> APIStatusError:
    """Build the exception for an HTTP error answer; the one status -> exception mapping.

    The body's ``error`` may be a string or an object ``{code, message}`` (POST /music/lyrics
    422); both are read. A body that is a job record (POST /music 422: the failed job of a
    refused song) is decoded into ``job``, and gives ``jobid`` and ``email``. 429 becomes
    `AccountBusyError` when the request named an account (``named_email``) and
    `AllAccountsBusyError` otherwise, with ``Retry-After`` in ``retry_after``. 596 yields
    `AccountError` with the email and reason parsed from
    ``"Account <email> in error state: <reason>"``.

    Args:
        response: an ``httpx.Response`` (its body already read) or ``(status, headers, body)``.
        endpoint: ``"METHOD /path-template"`` of the request.
        email: the account concerned, when the caller knows it.
        jobid: the job concerned, when the caller knows it.
        named_email: the ``email`` the request itself named (decides the 429 subclass).
        secrets: strings (the API token) to blank out should the server echo them back.
    """
    if isinstance(response, httpx.Response):
        status, headers, raw = response.status_code, response.headers, response.content
    else:
        status, raw = response[0], response[2]
        headers = httpx.Headers(dict(response[1]))
    for secret in secrets:
        if secret:  # blanked in the raw bytes, so neither the message nor `body` can carry it
            raw = raw.replace(secret.encode(), REDACTED.encode())
    body, server_message, error_code = _read_error_body(raw)
    job = _job_in(body)
    if isinstance(body, dict) and jobid is None and isinstance(body.get("jobid"), str):
        jobid = body["jobid"]  # a job record, or an {error, code, jobid} envelope
    if isinstance(body, dict) and email is None and isinstance(body.get("email"), str):
        email = body["email"]  # the lyrics 422 and a job record name their account
    email = email or named_email

    common: dict[str, Any] = {
        "status": status,
        "endpoint": endpoint,
        "server_message": server_message,
        "jobid": jobid,
        "error_code": error_code,
        "body": body,
        "job": job,
    }
    if status == 429:
        retry_after = parse_retry_after(headers.get("retry-after"), cap=math.inf)
        if named_email:
            return AccountBusyError(
                _describe(status, endpoint, server_message, "the named account is at its limit"),
                retry_after=retry_after,
                email=named_email,
                **common,
            )
        return AllAccountsBusyError(
            _describe(status, endpoint, server_message, "all accounts are busy"),
            retry_after=retry_after,
            email=email,
            **common,
        )
    if status == 596:
        match = _ACCOUNT_ERROR.match(server_message or "")
        reason = account = None
        if match:
            reason = match.group("reason").strip() or None
            account = match.group("email")
        return AccountError(
            _describe(status, endpoint, server_message, "account in error state"),
            reason=reason,
            email=account or email,
            **common,
        )
    cls = _STATUS_CLASSES.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIStatusError
    gloss = f"job {job.jobid} on {job.email} {job.status}" if job is not None else None
    return cls(_describe(status, endpoint, server_message, gloss), email=email, **common)


def _job_in(body: Any) -> Job | None:
    """The job record an error body is, or None (an ``{error, code}`` body is not one)."""
    if not (isinstance(body, dict) and isinstance(body.get("jobid"), str) and "status" in body):
        return None
    try:
        return msgspec.convert(body, Job, strict=False)
    except msgspec.ValidationError:
        return None  # jobid-like but not a record: the plain error fields still apply


def _read_error_body(raw: bytes) -> tuple[Any, str | None, str | None]:
    """Return (body, server message, error code) from an error body of any shape."""
    try:
        body: Any = decode_any(raw)
    except Undecodable:
        text = raw.decode("utf-8", "replace").strip()
        return text, (text or None), None
    if not isinstance(body, dict):
        return body, None, None
    error = body.get("error")
    if isinstance(error, str):
        return body, error, None
    if isinstance(error, dict):
        message = error.get("message")
        code = error.get("code")
        return (
            body,
            message if isinstance(message, str) else None,
            code if isinstance(code, str) else None,
        )
    return body, None, None


def _describe(status: int, endpoint: str, server_message: str | None, gloss: str | None) -> str:
    text = f"{endpoint} -> {status}"
    if server_message:
        text = f"{text}: {server_message}"
    if gloss:
        text = f"{text} ({gloss})"
    return text


# Connection never established (or never got a pooled connection): the server saw nothing.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

# Every exception class httpx defines derives from one of these (tests/test_http_bounds.py
# walks httpx's module to keep it so).
HTTPX_ERRORS: tuple[type[Exception], ...] = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx.CookieConflict,
    httpx.StreamError,
)


def error_from_httpx(
    exc: Exception,
    *,
    endpoint: str,
    jobid: str | None = None,
    email: str | None = None,
) -> FlowMusicError:
    """The library's exception for an exception httpx raised; the one httpx -> tree mapping.

    The result is meant to be raised ``from exc``; `scrub_chain` has already blanked any
    secret out of ``exc`` (an h11 error may quote what the server sent).

    Args:
        exc: an instance of any class in `HTTPX_ERRORS`.
        endpoint: ``"METHOD /template"`` (or the media URL without its query) of the request.
        jobid: the job concerned, copied onto the error.
        email: the account concerned, copied onto the error.
    """
    holder = Exception()
    holder.__cause__ = exc
    scrub_chain(holder)
    what = f"{endpoint}: {type(exc).__name__}: {exc}"
    where: dict[str, Any] = {"endpoint": endpoint, "jobid": jobid, "email": email}
    if isinstance(exc, httpx.TooManyRedirects):
        return RedirectError(f"{what} (a redirect loop?)", **where)
    if isinstance(exc, httpx.UnsupportedProtocol):
        # Our own URLs are checked to be http(s) before anything is sent, so this is a
        # redirect to file://, ftp:// or the like: refused, and asking again cannot help.
        return RedirectError(f"{what} (only http and https URLs are followed)", **where)
    if isinstance(exc, httpx.TransportError):
        maybe_sent = not isinstance(exc, _NEVER_SENT)
        note = "" if maybe_sent else " (the request was not sent)"
        return TransportError(what + note, maybe_sent=maybe_sent, **where)
    if isinstance(exc, httpx.DecodingError):
        return DecodeError(f"{what} (the body does not match its Content-Encoding)", **where)
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        return error_from_response(
            (response.status_code, response.headers, b""),
            endpoint=endpoint,
            jobid=jobid,
            email=email,
        )
    if isinstance(exc, httpx.RequestError):  # any RequestError httpx adds later
        return TransportError(what, maybe_sent=True, **where)
    if isinstance(exc, httpx.InvalidURL):
        return ValidationError("url", f"{endpoint}: {exc}")
    # StreamError (a body read twice or after its block closed), CookieConflict, and any
    # HTTPError httpx adds later: a misuse, not a network event, so nothing to retry.
    return FlowMusicError(what, endpoint=endpoint, jobid=jobid, email=email)
