"""HttpCore: send one API request, decode the answer, raise the right error; retry only safe ones.

Every API request goes through `HttpCore.request` (JSON answers), `HttpCore.request_empty`
(204 answers) or `HttpCore.stream` (downloads), and all three share one retry loop,
`_send_with_retries`, driven by the client's `RetryPolicy`, through one httpx client (which
transport that client sends with is its own business; see `_lanes.py`). The
``Authorization`` header is added here, per request, never as a client default: a client may
also fetch public media URLs, which must not receive the token.

Retries happen only for requests the caller marks ``safe`` (GETs, DELETE /jobs/{jobid},
POST /accounts in maxJobs-only mode): on a transport error, a 5xx other than 596, a 429
(honouring ``Retry-After``, capped) and a 2xx whose body does not decode (re-reading is
harmless). A connection that never opens is retried for the policy's ``connect_budget`` and
then reported as a `TransportError` naming the host. A paid POST (/music, /music/edit) is
sent exactly once: a lost answer there may already have created a charged job, so the
decision belongs to the engine, which can reconcile before resubmitting.

Everything from the server is bounded (docs/errors.md, "Bounds"): a body is read while it
streams and counted after decompression, and one over ``max_response_bytes`` (API answers)
or ``max_download_bytes`` (media) stops the read with `ResponseTooLarge`; each attempt of an
API request must end, body included, within `request_deadline` of the request's timeout, or
it ends with `RequestTimeout`; every exception httpx raises becomes one of ours
(`error_from_httpx`).
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import httpx
import msgspec

from ._bodies import (
    DEFAULT_MAX_DOWNLOAD_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    read_body,
    unlink_body,
)
from ._decode import Undecodable, decode, decode_any
from ._errors import (
    HTTPX_ERRORS,
    APIStatusError,
    DecodeError,
    FlowMusicError,
    RedirectError,
    RequestTimeout,
    ResponseTooLarge,
    TransportError,
    error_from_httpx,
    error_from_response,
    scrub_chain,
)
from ._retry import RetryPolicy

__all__ = [
    "MEDIA_DEADLINE_FACTOR",
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "HttpCore",
    "request_deadline",
]

T = TypeVar("T")
logger = logging.getLogger("flowmusic_async")

# An attempt of an API request may take this many times its longest httpx timeout in all:
# httpx's read timeout restarts with every byte, so a server dripping one byte a second never
# trips it. 3x: a slow but honest answer still fits, a drip does not last forever.
DEADLINE_FACTOR = 3.0
# A media file may take this many times the longest httpx timeout per attempt (10 minutes at
# the default 30 s): a long wav over a slow link fits, a drip does not last forever.
MEDIA_DEADLINE_FACTOR = 20.0
# What API requests accept: encodings this module decodes with the cap applied per step.
_ACCEPT_ENCODING = "gzip, deflate"


def request_deadline(timeout: httpx.Timeout, factor: float = DEADLINE_FACTOR) -> float | None:
    """The overall deadline of one attempt with this timeout: `factor` times its longest
    finite value (connect, read, write or pool); None when every value is None."""
    values = [
        value
        for value in (timeout.connect, timeout.read, timeout.write, timeout.pool)
        if value is not None and math.isfinite(value)
    ]
    return factor * max(values) if values else None


class HttpCore:
    """Sends API requests with auth, maps error answers to exceptions, retries safe requests.

    Safe to share between tasks: it holds no per-request state.

    Args:
        client: the httpx client to send with (no base URL or auth of its own needed).
        base_url: the API root, e.g. ``https://api.useapi.net/v1/flowmusic`` (no trailing slash).
        token: the useapi.net API token.
        policy: how safe requests are retried (`RetryPolicy`).
        timeout: the client's httpx timeout; each attempt's overall deadline derives from it
            (or from a request's own timeout), see `request_deadline`.
        max_response_bytes: the cap on an API answer's decoded body.
        max_download_bytes: the cap on a streamed download's decoded body.
    """

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        base_url: str,
        token: str,
        policy: RetryPolicy | None = None,
        timeout: httpx.Timeout | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    ) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._token = token
        self.policy = policy if policy is not None else RetryPolicy()
        self._timeout = timeout if timeout is not None else httpx.Timeout(30.0)
        self.max_response_bytes = max_response_bytes
        self.max_download_bytes = max_download_bytes

    def __repr__(self) -> str:
        return f"<HttpCore base_url={self._base_url!r} max_retries={self.policy.max_retries}>"

    @property
    def client(self) -> httpx.AsyncClient:
        """The httpx client requests are sent with (it carries no token)."""
        return self._client

    @property
    def base_url(self) -> str:
        """The API root every request path is appended to."""
        return self._base_url

    async def request(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        decoder: msgspec.json.Decoder[T],
        safe: bool,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
        named_email: str | None = None,
        jobid: str | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> T:
        """Send one API request and decode its JSON answer with ``decoder``.

        Args:
            method: HTTP method.
            path: the path below the base URL, ids already percent-encoded.
            endpoint: ``"METHOD /template"`` for errors and logs, e.g. ``"GET /jobs/{jobid}"``.
            decoder: the msgspec decoder of the success body.
            safe: True when repeating the request cannot cause harm (allows retries).
            params: query parameters.
            json: a JSON body.
            content: a raw body (uploads).
            headers: extra headers (e.g. an upload's Content-Type).
            timeout: overrides the client's timeout (sync-mode job POSTs need minutes).
            named_email: the ``email`` the request named (tells the two 429s apart).
            jobid: the job concerned, copied onto errors.
            extensions: httpx request extensions for the transport (a paid POST's place
                among the requests in flight, `Place.extensions`).

        Raises:
            APIStatusError: an error answer (subclass by status).
            TransportError: the network failed (``maybe_sent`` tells whether it may have arrived);
                `RequestTimeout` when an attempt ran past its deadline, `RedirectError`.
            DecodeError: a 2xx whose body is not the documented JSON; `ResponseTooLarge` when
                it is over ``max_response_bytes``.
        """
        request = self._build(method, path, params, json, content, headers, timeout, extensions)
        deadline = request_deadline(timeout if timeout is not None else self._timeout)

        async def attempt() -> T:
            status, body = await self._send(request, endpoint, named_email, jobid, deadline)
            return self._decode(status, body, decoder, endpoint, named_email, jobid)

        return await self._send_with_retries(attempt, endpoint=endpoint, safe=safe)

    async def request_empty(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        safe: bool,
        jobid: str | None = None,
        email: str | None = None,
    ) -> None:
        """Send a request whose success answer has no body (DELETE endpoints, 204)."""
        request = self._build(method, path, None, None, None, None, None, None)
        deadline = request_deadline(self._timeout)

        async def attempt() -> None:
            await self._send(request, endpoint, email, jobid, deadline)

        await self._send_with_retries(attempt, endpoint=endpoint, safe=safe)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        params: Mapping[str, Any] | None = None,
        jobid: str | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """Open a streaming response (downloads); retried like a safe request until it starts.

        Yields the response with its status already checked and its body not yet read (read
        it with `iter_body` and ``max_download_bytes``); it is closed when the block ends. The
        deadline bounds getting the answer's headers; the body is the reader's to bound
        (``download(deadline=...)``).
        """
        request = self._build(method, path, params, None, None, None, None, None)
        deadline = request_deadline(self._timeout)

        async def attempt() -> httpx.Response:
            return await self._within(
                deadline, endpoint, jobid, None, self._open(request, endpoint, None, jobid)
            )

        response = await self._send_with_retries(attempt, endpoint=endpoint, safe=True)
        try:
            yield response
        finally:
            await response.aclose()
            unlink_body(response)

    async def _send_with_retries(
        self, attempt: Callable[[], Awaitable[T]], *, endpoint: str, safe: bool
    ) -> T:
        """Run `attempt` until it succeeds, its error is final, or the policy gives up.

        The retry loop of every API request (`RetryPolicy.retrying`); this body only sorts
        failures. An unsafe request (a paid POST) gets exactly one attempt: the engine decides
        what its failure means. An exceeded bound (deadline, size) and a refused redirect are
        final too: the same answer would come back.
        """
        if not safe:
            return await attempt()
        async for tried in self.policy.retrying():
            try:
                return await attempt()
            except (TransportError, APIStatusError, DecodeError) as error:
                if _is_final(error):
                    raise
                never_sent = isinstance(error, TransportError) and not error.maybe_sent
                delay = tried.retry(
                    retry_after=getattr(error, "retry_after", None), never_sent=never_sent
                )
                if delay is None:
                    if never_sent:
                        raise self.unreachable(error, tried.number) from error
                    raise
                logger.debug(
                    "%s: retrying in %.2f s after %s", endpoint, delay, type(error).__name__
                )
        raise AssertionError("without a stop event the loop ends only by a return or a raise")

    def unreachable(self, error: FlowMusicError, tries: int) -> TransportError:
        """The error that ends a request whose connection never opened; it names the host.

        Before the API has ever answered this client, it names the whole URL and the cause
        in one line (a wrong URL, port or host is the likely reason) and is not logged: the
        caller gets it, and a warning per request would only repeat it.
        """
        contact = self.policy.contact
        if not contact.made:
            budget = self.policy.budget()  # 0 once an earlier request gave up
            contact.give_up()
            first = min(self.policy.first_contact_budget, self.policy.connect_budget)
            tried = f"{tries} attempt(s) in {budget:g} s" if budget else f"no answer in {first:g} s"
            return TransportError(
                f"cannot reach the API at {self._base_url}: {_cause(error)} "
                f"({tried}; check base_url / FLOWMUSIC_BASE_URL)",
                maybe_sent=False,
                endpoint=error.endpoint,
                jobid=error.jobid,
                email=error.email,
                never_reached=True,
            )
        host = httpx.URL(self._base_url).host
        logger.warning(
            "%s: cannot reach %s after %d attempt(s); giving up", error.endpoint, host, tries
        )
        return TransportError(
            f"{error.endpoint}: cannot reach {host} ({error}; {tries} attempt(s))",
            maybe_sent=False,
            endpoint=error.endpoint,
            jobid=error.jobid,
            email=error.email,
        )

    def _build(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json: Any,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        timeout: httpx.Timeout | None,
        extensions: Mapping[str, Any] | None,
    ) -> httpx.Request:
        all_headers = {
            "Accept": "application/json",
            "Accept-Encoding": _ACCEPT_ENCODING,
            **(headers or {}),
        }
        # Per request, not a client default: the same client downloads public media URLs.
        all_headers["Authorization"] = f"Bearer {self._token}"
        return self._client.build_request(
            method,
            self._base_url + path,
            params=dict(params) if params else None,
            json=json,
            content=content,
            headers=all_headers,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            extensions=dict(extensions) if extensions else None,
        )

    async def _send(
        self,
        request: httpx.Request,
        endpoint: str,
        named_email: str | None,
        jobid: str | None,
        deadline: float | None,
    ) -> tuple[int, bytes]:
        """One exchange with its body read; returns the status and the decoded body."""
        return await self._within(
            deadline,
            endpoint,
            jobid,
            named_email,
            self._exchange(request, endpoint, named_email, jobid),
        )

    async def _within(
        self,
        deadline: float | None,
        endpoint: str,
        jobid: str | None,
        named_email: str | None,
        work: Awaitable[T],
    ) -> T:
        """Await `work`, or raise `RequestTimeout` once `deadline` seconds have passed."""
        if deadline is None:
            return await work
        with anyio.move_on_after(deadline) as scope:
            return await work
        assert scope.cancelled_caught  # only the deadline ends the block without a result
        raise RequestTimeout(
            f"{endpoint}: no complete answer within {deadline:g} s (the request's overall "
            f"deadline, {DEADLINE_FACTOR:g} x its http_timeout)",
            deadline=deadline,
            endpoint=endpoint,
            jobid=jobid,
            email=named_email,
        )

    async def _open(
        self,
        request: httpx.Request,
        endpoint: str,
        named_email: str | None,
        jobid: str | None,
    ) -> httpx.Response:
        """Send `request` and return the streamed response once its status is a success."""
        try:
            response = await self._client.send(request, stream=True)
            self.policy.contact.note()  # any answer: from now on a failure is an outage
        except HTTPX_ERRORS as exc:
            raise error_from_httpx(exc, endpoint=endpoint, jobid=jobid, email=named_email) from exc
        if response.is_success:
            return response
        try:
            # The status alone tells what happened: a body over the cap or cut off is dropped.
            body = await self._read_capped(response, endpoint, jobid)
        except FlowMusicError:
            body = b""
        finally:
            await response.aclose()
            unlink_body(response)
        raise error_from_response(
            (response.status_code, response.headers, body),
            endpoint=endpoint,
            jobid=jobid,
            named_email=named_email,
            secrets=(self._token,),
        )

    async def _read_capped(
        self, response: httpx.Response, endpoint: str, jobid: str | None
    ) -> bytes:
        """An API answer's body, read while it streams up to `max_response_bytes`."""
        return await read_body(
            response,
            limit=self.max_response_bytes,
            option="max_response_bytes",
            endpoint=endpoint,
            jobid=jobid,
        )

    async def _exchange(
        self,
        request: httpx.Request,
        endpoint: str,
        named_email: str | None,
        jobid: str | None,
    ) -> tuple[int, bytes]:
        response = await self._open(request, endpoint, named_email, jobid)
        try:
            body = await self._read_capped(response, endpoint, jobid)
        finally:
            await response.aclose()
            unlink_body(response)
        return response.status_code, body

    def _decode(
        self,
        status: int,
        body: bytes,
        decoder: msgspec.json.Decoder[T],
        endpoint: str,
        named_email: str | None,
        jobid: str | None,
    ) -> T:
        try:
            return decode(decoder, body)
        except Undecodable as exc:
            found = _jobid_in(body) or jobid
            error = DecodeError(
                f"{endpoint} -> {status}: body is not the documented JSON ({exc})",
                status=status,
                endpoint=endpoint,
                jobid=found,
                email=named_email,
            )
            # msgspec's message may quote what the server sent (an echoed token): the chain
            # a traceback prints is redacted like the message.
            error.__cause__ = exc
            raise scrub_chain(error) from exc


def _is_final(error: FlowMusicError) -> bool:
    """An error no retry can fix: a bound exceeded, a refused redirect, a lasting status."""
    if isinstance(error, (RequestTimeout, RedirectError, ResponseTooLarge)):
        return True
    return isinstance(error, APIStatusError) and not _is_transient(error)


def _cause(error: BaseException) -> str:
    """Why a connection could not be opened, in a few words (the innermost OS error's)."""
    root = error
    for _ in range(20):  # chains are short; the bound only guards against a cycle
        group = getattr(root, "exceptions", None)  # trio reports connect failures in a group
        inner = root.__cause__ or root.__context__ or (group[0] if group else None)
        if not isinstance(inner, BaseException):
            break
        root = inner
    if isinstance(root, ConnectionRefusedError):
        return "connection refused (is anything listening on that port?)"
    if isinstance(root, socket.gaierror):
        return f"host name not found ({root.strerror or root})"
    if isinstance(root, (TimeoutError, httpx.TimeoutException)):
        return "the connection timed out"
    return f"{type(root).__name__}: {root}"


def _is_transient(error: APIStatusError) -> bool:
    # 596 is an account stop condition (re-add the account), not an outage.
    return error.status == 429 or (error.status >= 500 and error.status != 596)


def _jobid_in(raw: bytes) -> str | None:
    """The jobid of a body that decodes as JSON but not as the model (a job may exist)."""
    try:
        body = decode_any(raw)
    except Undecodable:
        return None
    jobid = body.get("jobid") if isinstance(body, dict) else None
    return jobid if isinstance(jobid, str) else None
