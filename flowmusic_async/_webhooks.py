"""The webhook receiver: turns a callback from useapi.net into an immediate wake-up.

Callbacks are unsigned and may be forged, replayed or truncated (docs/api-notes.md#q10-webhooks),
so the body is only a hint: it must name a job this client is waiting for, carry our client
reference when we set one, and then the job is read again with GET /jobs/{jobid}. Only that
record settles the wait. Mount `handle` in your own web framework::

    @app.post("/flowmusic-callback")
    async def callback(request):
        result = await fm.webhooks.handle(await request.body())
        return Response(status_code=result.http_status)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from ._decode import Undecodable, decode
from ._errors import FlowMusicError, ValidationError
from ._models import Job, JobStatus
from ._reconcile import split_reply_ref

if TYPE_CHECKING:
    from ._engine import JobEngine

# A job record with two clips and long lyrics is a few tens of KB; anything far larger is not
# a callback we sent for.
DEFAULT_MAX_BODY = 256 * 1024


class _CallbackProbe(msgspec.Struct, kw_only=True):
    """The few fields read from an untrusted callback body; everything else is ignored."""

    jobid: str
    replyRef: str | None = None
    request: dict[str, Any] = {}


_PROBE_DECODER = msgspec.json.Decoder(_CallbackProbe)


class WebhookResult(msgspec.Struct, frozen=True, kw_only=True):
    """What the receiver did with one callback.

    `http_status` is what to answer the sender: 200 when taken in or harmlessly ignored,
    400 for a body that is not a callback, 413 for an oversized one. `job` is the record as
    re-read with GET /jobs/{jobid} (never the untrusted body), set when `accepted`.
    """

    accepted: bool
    http_status: int
    reason: str
    jobid: str | None = None
    status: JobStatus | None = None  # the job's status as re-read from the API
    job: Job | None = None  # the verified record (GET /jobs/{jobid}), when accepted


class Webhooks:
    """`fm.webhooks`: the receiver for `replyUrl` callbacks. Safe to call from many tasks."""

    def __init__(self, engine: JobEngine, *, max_body: int = DEFAULT_MAX_BODY) -> None:
        self._engine = engine
        self.max_body = max_body

    async def handle(self, body: bytes) -> WebhookResult:
        """Check a callback body, re-read its job, and wake whoever waits for it.

        Args:
            body: the raw request body, as received.

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
        watch = self._engine.watching(probe.jobid)
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
        try:
            job = await self._engine.fetch_and_settle(probe.jobid)
        except FlowMusicError as error:
            # The hint stays a hint: the poller will still find the job's end on its own.
            return WebhookResult(
                accepted=False,
                http_status=200,
                reason=f"re-reading the job failed: {error}",
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
