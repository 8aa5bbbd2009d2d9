"""Webhook delivery: POST the job record (plus top-level replyRef) to replyUrl when a job ends.

Jobs end lazily (nothing ticks), so this keeps a heap of end times and sleeps until the next one;
a cancel or a clock jump rings the world's bell and it looks again. One attempt per job, no
signature, no retries (docs/api-notes.md#q10-webhooks). A callback that cannot be delivered
(refused, timed out, or a `replyUrl` httpx cannot even parse, such as `http://[::1`) is counted in
`stats.webhooks_failed` and logged, never raised: one caller's bad URL must not stop the API.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math

import anyio
import httpx
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from ._media import MediaSigner
from ._records import job_record
from ._state import Job, World

_log = logging.getLogger("flowmusic_async.testing")


class WebhookDispatcher:
    def __init__(
        self, world: World, media: MediaSigner, transport: httpx.AsyncBaseTransport | None
    ) -> None:
        self._world = world
        self._media = media
        self._transport = transport
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()
        self.running = False

    def schedule(self, job: Job) -> None:
        """Queue the job's webhook for its end (called at submit, and again on cancel)."""
        heapq.heappush(self._heap, (job.end_time(), next(self._seq), job))
        self._world.bell.ring()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Deliver due webhooks until cancelled."""
        clock, bell = self._world.clock, self._world.bell
        self.running = True
        try:
            async with (
                httpx.AsyncClient(transport=self._transport, timeout=10.0) as client,
                anyio.create_task_group() as tg,
            ):
                task_status.started()
                while True:
                    now = clock.now()
                    self._send_due(now, client, tg)
                    wait = clock.real(self._heap[0][0] - now) if self._heap else math.inf
                    await bell.wait(wait)
        finally:
            self.running = False

    def _send_due(self, now: float, client: httpx.AsyncClient, tg: TaskGroup) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, _, job = heapq.heappop(self._heap)
            if job.webhook_sent or job.end_time() > now:
                continue
            job.webhook_sent = True
            tg.start_soon(self._deliver, client, job, now)

    async def _deliver(self, client: httpx.AsyncClient, job: Job, now: float) -> None:
        record = job_record(job, now, self._media)
        if job.reply_ref is not None:
            record["replyRef"] = job.reply_ref
        stats = self._world.stats
        try:
            await client.post(
                str(job.reply_url),
                content=msgspec.json.encode(record),
                headers={"content-type": "application/json"},
            )
        except Exception as exc:  # whatever a caller's URL makes httpx raise
            # Not only httpx.HTTPError: a URL that does not parse raises httpx.InvalidURL
            # (`http://[::1`), a bad IDNA host a UnicodeError (`http://xn--a.com/`), a port
            # out of range an ExceptionGroup from the connection pool (`http://[::1]:99999/`).
            stats.webhooks_failed += 1
            inner = getattr(exc, "exceptions", None)  # a group says only "unhandled errors"
            reason = inner[0] if inner else exc
            _log.warning("webhook for %s not delivered to %r: %s", job.jobid, job.reply_url, reason)
        else:
            stats.webhooks_delivered += 1
