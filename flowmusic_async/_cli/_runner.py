"""Run a batch for `batch` and `demo`: fm.generate_many, downloads as songs finish, progress,
one report per outcome, and a summary with the exit code the batch deserves.

Downloads start as each song completes (in a task group, a few at a time) instead of after
the whole batch, so a long batch leaves finished files behind even if it is interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from .._batch import Outcome
from .._client import FlowMusic
from .._download import Format
from .._errors import BatchAborted, FlowMusicError
from .._timing import Timing
from ._exit import ExitCode, exit_code_for, worst
from ._inputs import BatchItem
from ._output import Output, seconds, short, to_jsonable
from ._progress import BatchProgress, showing_progress

# Media downloads running at once; they are short, and the API's slots are the real limit.
DOWNLOADS_AT_ONCE = 4


@dataclass
class SongReport:
    """The final word on one request of the batch."""

    index: int
    line: int
    prompt: str
    ok: bool
    resumed: bool = False
    jobid: str | None = None
    email: str | None = None
    duration_s: float | None = None
    files: list[Path] = field(default_factory=list)
    error: FlowMusicError | None = None
    code: ExitCode = ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "outcome",
            "index": self.index,
            "line": self.line,
            "prompt": self.prompt,
            "ok": self.ok,
            "resumed": self.resumed,
            "jobid": self.jobid,
            "email": self.email,
            "duration_s": self.duration_s,
            "files": [str(p) for p in self.files],
            "error": error_document(self.error) if self.error is not None else None,
        }


@dataclass
class BatchSummary:
    """What a batch achieved, for the final table and the exit code."""

    reports: list[SongReport]
    total: int
    makespan_s: float
    aborted: FlowMusicError | None = None
    not_started: int = 0
    credits_spent: float = 0.0  # what this batch's songs cost (cancelled ones included)

    @property
    def ok(self) -> int:
        return sum(r.ok for r in self.reports)

    @property
    def failed(self) -> int:
        return sum(not r.ok for r in self.reports)

    @property
    def files(self) -> list[Path]:
        return [p for r in self.reports for p in r.files]

    @property
    def exit_code(self) -> ExitCode:
        codes = [r.code for r in self.reports]
        if self.aborted is not None:
            codes.append(exit_code_for(self.aborted))
        return worst(codes)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "summary",
            "total": self.total,
            "ok": self.ok,
            "failed": self.failed,
            "resumed": sum(r.resumed for r in self.reports),
            "not_started": self.not_started,
            "makespan_s": round(self.makespan_s, 3),
            "files": len(self.files),
            "credits_spent": self.credits_spent,
            "aborted": error_document(self.aborted) if self.aborted is not None else None,
            "exit_code": int(self.exit_code),
        }


def error_document(error: BaseException) -> dict[str, Any]:
    """A typed error as JSON: its class, message and the data it carries (never the token)."""
    document: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    for name in (
        "status",
        "endpoint",
        "server_message",
        "jobid",
        "email",
        "client_ref",
        "not_started",
    ):
        value = getattr(error, name, None)
        if value is not None:
            document[name] = value
    job = getattr(error, "job", None)
    if job is not None:
        document["job"] = to_jsonable(job)
    return document


async def run_batch(
    fm: FlowMusic,
    items: Sequence[BatchItem],
    *,
    out: Output,
    progress_mode: str,
    timing: Timing,
    dest: str | None,
    formats: Sequence[Format],
    journal: str | None = None,
    retry_failed: bool = False,
    concurrency: int | None = None,
    song_timeout: float | None = None,
    json_lines: bool = True,
    budget: float | None = None,
) -> BatchSummary:
    """Generate every item, download finished songs into `dest`, report each outcome.

    Args:
        fm: an entered client.
        items: the validated requests, with their input lines.
        out: where reports go; in JSON mode one line per outcome when `json_lines`.
        progress_mode: --progress (auto, rich, plain, off).
        timing: the client's timing, for the expected song duration shown by the bars.
        dest: folder for audio and sidecars; None downloads nothing.
        formats: the media formats to download.
        journal: SQLite journal path, to resume an interrupted batch.
        retry_failed: with a journal, submit again the requests that failed in an earlier run.
        concurrency: at most this many songs in flight (None: every free slot).
        song_timeout: per-song deadline (--timeout).
        json_lines: print each outcome as a JSON line in JSON mode (the demo prints one
            document at the end instead).
        budget: the most credits the batch may spend (--budget); the songs past it end
            with `BudgetExceeded`, unsent.
    """
    reports: list[SongReport] = []
    limiter = anyio.CapacityLimiter(DOWNLOADS_AT_ONCE)
    started = time.monotonic()
    aborted: FlowMusicError | None = None
    not_started = 0

    async def finish(outcome: Outcome, progress: BatchProgress) -> None:
        item = items[outcome.index]
        report = _report(outcome, item)
        if report.ok and dest is not None and outcome.job is not None:
            try:
                async with limiter:
                    report.files = await fm.download(outcome.job, dest, formats=formats)
            except FlowMusicError as exc:
                # The song exists and was paid for; only the files are missing. Saying so
                # (with the jobid) lets `flowmusic download JOBID` finish the job later.
                report.ok = False
                report.error = exc
                report.code = ExitCode.FAILED
        reports.append(report)
        progress.on_outcome(
            report.ok,
            resumed=report.resumed,
            text=_outcome_text(report),
            jobid=report.jobid,
            email=report.email,
        )
        if out.json_mode and json_lines:
            out.json(report.to_json())

    requests = [item.request for item in items]
    async with (
        showing_progress(
            fm, out, progress_mode, total=len(items), expected_s=timing.typical_job_seconds
        ) as progress,
        anyio.create_task_group() as downloads,
    ):
        # Caught inside the task group, which would otherwise wrap it in an exception group.
        try:
            batch = fm.generate_many(
                requests,
                journal=journal,
                concurrency=concurrency,
                deadline=song_timeout,
                retry_failed=retry_failed,
                spend_limit=budget,
            )
            async with batch as outcomes:
                async for outcome in outcomes:
                    downloads.start_soon(finish, outcome, progress)
        except BatchAborted as exc:
            aborted = exc
            # Every request started has its outcome; the library cannot count the rest when
            # the batch stopped before reading them (a 401 or an API never reached).
            not_started = max(getattr(exc, "not_started", 0), len(items) - len(reports))
    reports.sort(key=lambda r: r.index)
    spent = fm.spending().batches.get(batch.spend_key)
    return BatchSummary(
        reports=reports,
        total=len(items),
        makespan_s=time.monotonic() - started,
        aborted=aborted,
        not_started=not_started,
        credits_spent=spent.spent + spent.reserved if spent is not None else 0.0,
    )


def _report(outcome: Outcome, item: BatchItem) -> SongReport:
    job = outcome.job
    error = outcome.error
    report = SongReport(
        index=outcome.index,
        line=item.line,
        prompt=item.prompt,
        ok=outcome.ok,
        resumed=outcome.resumed,
    )
    if job is not None:
        report.jobid = job.jobid
        report.email = job.email
        report.duration_s = job.duration_ms / 1000 if job.duration_ms is not None else None
    if error is not None:
        report.error = error
        report.jobid = report.jobid or error.jobid
        report.email = report.email or error.email
        report.code = exit_code_for(error)
    elif not outcome.ok:
        report.code = ExitCode.FAILED
    return report


def _outcome_text(report: SongReport) -> str:
    where = f"line {report.line}"
    if report.ok:
        took = ""
        if report.duration_s is not None:  # the API's clock (simulated on a simulator)
            took = f", rendered in {seconds(report.duration_s)} (API clock)"
        again = " (from the journal)" if report.resumed else ""
        return f"ok      {where}: {short(report.prompt)}{took}{again}"
    reason = f"{type(report.error).__name__}: {report.error}" if report.error else "failed"
    return f"FAILED  {where}: {short(report.prompt)} - {reason}"


def _files_or_error(report: SongReport, *, downloading: bool) -> str:
    if report.error is not None:
        return f"{type(report.error).__name__}: {report.error}"
    return str(len(report.files)) if downloading else ""


def print_summary(
    out: Output, summary: BatchSummary, *, dest: str | None, max_rows: int = 50
) -> None:
    """The final table (every song, or only the failures for a large batch) and totals."""
    if out.json_mode:
        return
    rows = summary.reports
    if len(rows) > max_rows:
        rows = [r for r in rows if not r.ok]
    if rows:
        out.table(
            ("line", "prompt", "result", "account", "gen time (API)", "files / error"),
            [
                (
                    r.line,
                    out.short(r.prompt, 30),
                    "ok" if r.ok else "FAILED",
                    r.email or "",
                    seconds(r.duration_s),
                    _files_or_error(r, downloading=dest is not None),
                )
                for r in rows
            ],
            title="Batch results" if len(rows) == len(summary.reports) else "Failed songs",
        )
    line = (
        f"{summary.total} songs: {summary.ok} ok, {summary.failed} failed"
        f" in {summary.makespan_s:.1f}s (wall clock)"
    )
    if summary.files:
        line += f"; {len(summary.files)} files in {dest}"
    line += f"; {summary.credits_spent:g} credits spent"
    out.line(line)
    if summary.aborted is not None:
        aborted = summary.aborted
        cause = getattr(aborted, "cause", aborted)  # its own text says "stopped"
        line = f"batch stopped: {cause} ({summary.not_started} songs not started)"
        unrecorded = getattr(aborted, "unrecorded", ())
        if unrecorded:  # paid jobs no journal knows: the report is their only record
            line += (
                f"; {len(unrecorded)} paid job(s) the journal could not record, collect them "
                "with `flowmusic wait JOBID`: " + ", ".join(jobid for jobid, _ in unrecorded)
            )
        out.error(line)
