"""The webhook receiver: turns a callback from useapi.net into an immediate wake-up.

Callbacks are unsigned by the API and may be forged, replayed or truncated
(docs/api-notes.md#q10-webhooks). So the client signs them itself: every replyUrl it sends
carries a secret, a MAC of the submission's client reference under a random key this client
alone holds
(`flowmusic_sig=...`, appended by `sign`). A callback POSTed to that URL brings the secret
back; when it matches the job named in the body, and that job is still running here, the body
settles the job at once, with no read. Any other callback is a hint: it must name a job this
client is waiting for and carry our client reference, and then the job is read again with
GET /jobs/{jobid}; only that record settles the wait. A secret that does not match the body's
job is answered 400 (and the job is still confirmed by a read). Reads are coalesced per job:
callbacks for a job whose read is under way share that read, and a callback for a job that
has already ended costs nothing, so a flood of replays costs one request, not one each.
What is trusted and why, and what it cannot protect against: docs/architecture.md, "Webhooks".

Mount `handle` in your own web framework, passing the URL the callback came to::

    @app.post("/flowmusic-callback")
    async def callback(request):
        result = await fm.webhooks.handle(await request.body(), url=str(request.url))
        return Response(status_code=result.http_status)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import msgspec

from ._decode import Undecodable, decode
from ._errors import FlowMusicError, ValidationError
from ._models import CALLBACK_SECRET_PARAM, JOB_DECODER, Job, JobStatus, without_callback_secret
from ._reconcile import split_reply_ref
from ._tracker import JobTracker
from ._validation import MAX_REPLY_URL

# A job record with two clips and long lyrics is a few tens of KB; anything far larger is not
# a callback we sent for.
DEFAULT_MAX_BODY = 256 * 1024


class _CallbackProbe(msgspec.Struct, kw_only=True):
    """The few fields read from an untrusted callback body; everything else is ignored."""

    jobid: str
    replyRef: str | None = None
    request: dict[str, Any] = {}


_PROBE_DECODER = msgspec.json.Decoder(_CallbackProbe)


class _Read:
    """One GET /jobs/{jobid} under way for a webhook, shared by every callback for that job."""

    __slots__ = ("done", "error", "job")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.job: Job | None = None
        self.error: FlowMusicError | None = None


class WebhookResult(msgspec.Struct, frozen=True, kw_only=True):
    """What the receiver did with one callback.

    `http_status` is what to answer the sender: 200 when taken in or harmlessly ignored,
    400 for a body that is not a callback or a secret that is not this job's, 413 for an
    oversized one. `job` is the record that settled the job, set when `accepted`: the body
    itself when its secret matched, else the record re-read with GET /jobs/{jobid}. Either
    way without the secret (see `Job`).
    """

    accepted: bool
    http_status: int
    reason: str
    jobid: str | None = None
    status: JobStatus | None = None  # the job's status as settled
    job: Job | None = None  # the record that settled it (trusted body or re-read), when accepted


class Webhooks:
    """`fm.webhooks`: the receiver for `replyUrl` callbacks. Safe to call from many tasks."""

    def __init__(self, tracker: JobTracker, *, max_body: int = DEFAULT_MAX_BODY) -> None:
        self._tracker = tracker
        self.max_body = max_body
        self._reads: dict[str, _Read] = {}  # jobid -> the read under way
        # Never leaves this object: not in a repr, a message, a record or a file. A new client
        # has a new key, so a callback for a job an earlier process sent is confirmed by a read.
        self._key = secrets.token_bytes(32)

    def __repr__(self) -> str:
        return f"<Webhooks max_body={self.max_body}>"

    def sign(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """The paid POST's body with this submission's callback secret appended to its replyUrl.

        Unchanged without a replyUrl or our client reference in its replyRef, or when the
        signed URL would pass the API's 1024-character limit (its callbacks are then
        confirmed by a read, as unsigned ones are).
        """
        reply_url = body.get("replyUrl")
        reply_ref = body.get("replyRef")
        _, client_ref = split_reply_ref(reply_ref if isinstance(reply_ref, str) else None)
        if not isinstance(reply_url, str) or client_ref is None:
            return body
        base, hash_mark, fragment = without_callback_secret(reply_url).partition("#")
        # Always "&" after an existing "?", even a trailing one: the record's URL, once the
        # secret is cut off the end again, is then exactly the one given.
        joiner = "&" if "?" in base else "?"
        secret = self._secret(client_ref)
        signed = f"{base}{joiner}{CALLBACK_SECRET_PARAM}={secret}{hash_mark}{fragment}"
        if len(signed) > MAX_REPLY_URL:
            return body
        return {**body, "replyUrl": signed}

    def _secret(self, client_ref: str) -> str:
        mac = hmac.new(self._key, client_ref.encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    async def handle(self, body: bytes, *, url: str | None = None) -> WebhookResult:
        """Check a callback, settle its job (trusted, or after re-reading it), wake its waiters.

        Args:
            body: the raw request body, as received.
            url: the URL the callback was received at (``str(request.url)``), whose secret
                lets a genuine callback settle its job without a read. Without it, every
                callback is confirmed with GET /jobs/{jobid}.

        Raises:
            ValidationError: ``body`` is not bytes (a bug in the caller, not a bad callback).
        """
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise ValidationError(
                "body", f"must be the raw bytes received, got {type(body).__name__}"
            )
        body = bytes(body)
        if len(body) > self.max_body:
            return WebhookResult(
                accepted=False, http_status=413, reason=f"body over {self.max_body} bytes"
            )
        try:
            probe = decode(_PROBE_DECODER, body)
        except Undecodable as error:
            return WebhookResult(
                accepted=False, http_status=400, reason=f"not a job record: {error}"
            )
        watch = self._tracker.watching(probe.jobid)
        if watch is None:
            return WebhookResult(
                accepted=False,
                http_status=200,
                reason="no one here waits for this job",
                jobid=probe.jobid,
            )
        echoed = probe.replyRef or probe.request.get("replyRef")
        if watch.client_ref is not None:
            _, ours = split_reply_ref(echoed if isinstance(echoed, str) else None)
            if ours != watch.client_ref:
                return WebhookResult(
                    accepted=False,
                    http_status=200,
                    reason="client reference does not match",
                    jobid=probe.jobid,
                )
        if watch.done.is_set():
            # Its end is known (a callback before this one, or the poller): nothing to read.
            return WebhookResult(
                accepted=False,
                http_status=200,
                reason="the job has already ended here",
                jobid=probe.jobid,
            )
        secret = _secret_in(url)
        if secret is not None and watch.client_ref is not None:
            # As bytes: compare_digest refuses a str that is not ASCII, and this one is the
            # sender's.
            if hmac.compare_digest(secret.encode(), self._secret(watch.client_ref).encode()):
                trusted = _terminal_record(body)
                if trusted is not None:
                    self._tracker.settle_if_ended(trusted)
                    return WebhookResult(
                        accepted=True,
                        http_status=200,
                        reason="its secret is this job's",
                        jobid=trusted.jobid,
                        status=trusted.status,
                        job=trusted,
                    )
            else:
                # Someone else's secret (a replay onto another job, a lie) or a made-up one:
                # refused; the job is still read, in case it has really ended.
                read = await self._read(probe.jobid)
                return WebhookResult(
                    accepted=False,
                    http_status=400,
                    reason="the secret is not this job's; the job was re-read instead",
                    jobid=probe.jobid,
                    status=read.job.status if read.job is not None else None,
                )
        read = await self._read(probe.jobid)
        job = read.job
        if job is None:
            # The hint stays a hint: the poller will still find the job's end on its own.
            why = read.error if read.error is not None else "it was interrupted"
            return WebhookResult(
                accepted=False,
                http_status=200,
                reason=f"re-reading the job failed: {why}",
                jobid=probe.jobid,
            )
        return WebhookResult(
            accepted=True,
            http_status=200,
            reason="verified with GET /jobs/{jobid}",
            jobid=job.jobid,
            status=job.status,
            job=job,
        )

    async def _read(self, jobid: str) -> _Read:
        """GET /jobs/{jobid} and settle the job, or join the read of it already under way."""
        under_way = self._reads.get(jobid)
        if under_way is not None:
            await under_way.done.wait()
            return under_way
        read = self._reads[jobid] = _Read()
        try:
            read.job = await self._tracker.fetch_and_settle(jobid)
        except FlowMusicError as error:
            read.error = error
        finally:
            # Also when this caller is cancelled: those who joined then see no job and answer
            # that the read failed; the poller still finds the job's end.
            del self._reads[jobid]
            read.done.set()
        return read


def _secret_in(url: str | None) -> str | None:
    """The callback secret in the query of `url`, if any (None for a URL that does not parse)."""
    if not url or CALLBACK_SECRET_PARAM not in url:
        return None
    try:
        query = urlsplit(url).query
    except ValueError:
        return None
    found = [value for name, value in parse_qsl(query) if name == CALLBACK_SECRET_PARAM]
    return found[-1] if found else None


def _terminal_record(body: bytes) -> Job | None:
    """The body as a job record if it is a complete, ended one; None sends it to a read."""
    try:
        job = decode(JOB_DECODER, body)
    except Undecodable:
        return None
    return job if job.is_terminal else None
