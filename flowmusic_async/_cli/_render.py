"""How each API record looks on screen (tables and sentences) and in --json output."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._dry_run import BatchEstimate
from .._models import Account, AccountJobs, Job, Lyrics, Stems, Usage
from .._scheduler import CapacitySnapshot
from ._output import Output, mapping_rows, seconds, to_jsonable


def job(out: Output, record: Job | Stems, *, files: Sequence[Path] = ()) -> None:
    """A job record: status line, then one row per clip; `files` are what was downloaded."""
    if out.json_mode:
        document = to_jsonable(record)
        document["files"] = [str(p) for p in files]
        out.json(document)
        return
    jobid = getattr(record, "jobid", None) or "(no jobid)"
    head = f"{jobid}  {record.status}"
    if record.email:
        head += f"  on {record.email}"
    if record.duration_ms is not None:
        # The API's own generation time: simulated seconds on a simulator, so labelled apart
        # from the wall-clock times the CLI measures itself.
        head += f"  rendered in {record.duration_ms / 1000:.1f}s (API clock)"
    out.line(head)
    error = getattr(record, "error", None)
    if error is not None:
        out.line(f"  error {error.code}: {error.message}")
    if record.clips:
        rows = [
            (out.short(c.title, 40), seconds(c.duration_s), c.clip, c.audio_url or "")
            for c in record.clips
        ]
        out.table(("title", "length", "clip", "m4a"), rows)
    for path in files:
        out.line(f"  wrote {path}")


def running_jobs(out: Output, listing: Mapping[str, AccountJobs]) -> None:
    """GET /jobs: accounts with their running count, then each running job."""
    if out.json_mode:
        out.json(to_jsonable(dict(listing)))
        return
    if not listing:
        out.line("No jobs running.")
        return
    rows = []
    for email, entry in sorted(listing.items()):
        rows.append((email, f"{entry.running}/{entry.max_jobs}", "", "", ""))
        for running in entry.jobs:
            rows.append(
                ("", "", running.jobid, running.operation or "song", running.created_at or "")
            )
    out.table(("account", "running", "jobid", "operation", "created"), rows)


def accounts(out: Output, listing: Mapping[str, Account]) -> None:
    """GET /accounts: one row per account; an account in error shows why."""
    if out.json_mode:
        out.json(to_jsonable(dict(listing)))
        return
    if not listing:
        out.line("No accounts configured. Add one with: flowmusic accounts add REFRESH_TOKEN")
        return
    rows = [
        (
            a.email,
            a.tier,
            a.max_jobs,
            "ok" if a.is_healthy else f"error: {a.error}",
            a.refreshed_at or "",
        )
        for a in sorted(listing.values(), key=lambda a: a.email)
    ]
    out.table(("account", "tier", "maxJobs", "health", "refreshed"), rows)


def account(out: Output, record: Account) -> None:
    """One account record as key/value rows (tokens never shown)."""
    data = to_jsonable(record)
    if out.json_mode:
        out.json(data)
        return
    out.table(("field", "value"), mapping_rows(data))


def usage(out: Output, report: Usage) -> None:
    """GET /accounts/usage: totals by type, then spend per song."""
    if out.json_mode:
        out.json(to_jsonable(report))
        return
    summary = report.summary
    out.line(
        f"{report.email}: {summary.total_charged_credits:g} credits charged, "
        f"{summary.total_received_tokens:g} tokens received"
    )
    rows = [
        (kind, f"{tokens:g}", f"{summary.by_type_credits.get(kind, tokens / 12):g}")
        for kind, tokens in sorted(summary.by_type_tokens.items())
    ]
    if rows:
        out.table(("type", "tokens", "credits"), rows)
    songs = [
        (out.short(c.title, 40), f"{c.credits:g}", c.conversation_id)
        for c in summary.per_conversation
    ]
    if songs:
        out.table(("song", "credits", "conversation"), songs)


def lyrics(out: Output, result: Lyrics) -> None:
    """POST /music/lyrics: the title, the sound prompt, then the lyrics as written."""
    if out.json_mode:
        out.json(to_jsonable(result))
        return
    if result.title:
        out.line(f"# {result.title}")
    if result.sound_prompt:
        out.line(f"sound prompt: {result.sound_prompt}")
        out.line()
    out.line(result.lyrics)


# Clear the terminal and go home: `status --watch` redraws one screen rather than scrolling.
_CLEAR_SCREEN = "\x1b[2J\x1b[H"


def capacity(out: Output, snapshot: CapacitySnapshot, *, clear: bool = False) -> None:
    """`fm.capacity()`: a row per account, then the queue (one JSON line per snapshot)."""
    if out.json_mode:
        out.json(to_jsonable(snapshot))
        return
    if clear and out.stdout.isatty():
        out.write(_CLEAR_SCREEN)
    elif clear:
        out.line()
    if not snapshot.accounts:
        out.line("No accounts configured. Add one with: flowmusic accounts add REFRESH_TOKEN")
        return
    rows = [
        (
            email,
            usage.max_jobs,
            usage.running_ours,
            usage.running_others,
            usage.reserved,
            usage.free,
            usage.health if usage.reason is None else f"{usage.health}: {usage.reason}",
        )
        for email, usage in sorted(snapshot.accounts.items())
    ]
    out.table(("account", "maxJobs", "ours", "others", "sending", "free", "health"), rows)
    free = sum(usage.free for usage in snapshot.accounts.values())
    total = sum(usage.max_jobs for usage in snapshot.accounts.values() if usage.healthy)
    out.line(f"{free} of {total} slots free; {snapshot.queued} songs queued in this process")


def simple(out: Output, message: str, document: Mapping[str, Any]) -> None:
    """A one-line result (cancelled, deleted): a sentence, or the document in JSON mode."""
    if out.json_mode:
        out.json(dict(document))
    else:
        out.line(message)


def batch_estimate(out: Output, estimate: BatchEstimate) -> None:
    """`flowmusic batch --dry-run`: songs, cost, budget, balances, capacity and time."""
    if out.json_mode:
        out.json(to_jsonable(estimate))
        return
    out.line("dry run: nothing that costs credits was sent")
    invalid = f" ({len(estimate.invalid)} invalid, not counted)" if estimate.invalid else ""
    out.line(f"songs: {estimate.songs}{invalid}")
    out.line(
        f"cost: {estimate.total_credits:g} credits "
        f"({estimate.cost_per_song:g} per song, {estimate.cost_source} figure)"
    )
    if estimate.budget is not None:
        verdict = "within it" if estimate.within_budget else "over it"
        out.line(
            f"budget: {estimate.budget:g} credits, {verdict} "
            f"({_count(estimate.songs_within_budget)} songs fit)"
        )
    healthy = [a for a in estimate.accounts if a.error is None]
    available = (
        f"{estimate.credits_available:g} credits"
        if estimate.credits_available is not None
        else "balance unknown"
    )
    enough = {True: ", enough", False: ", NOT enough", None: ""}[estimate.within_balances]
    out.line(
        f"accounts: {len(healthy)} usable of {len(estimate.accounts)}, {estimate.slots} "
        f"songs at once (maxJobs), {available}{enough}"
    )
    rows = [
        (
            a.email,
            "" if a.max_jobs is None else str(a.max_jobs),
            "" if a.credits_remaining is None else f"{a.credits_remaining:g}",
            "" if a.songs_affordable is None else str(a.songs_affordable),
            a.error or "",
        )
        for a in estimate.accounts
    ]
    if rows:
        out.table(("account", "maxJobs", "credits", "songs", "error"), rows)
    if estimate.duration_seconds is None:
        out.line("time: unknown (no usable account)")
    else:
        out.line(
            f"time: about {_duration(estimate.duration_seconds)} "
            f"({estimate.songs} songs, {estimate.slots} at once, "
            f"{_duration(estimate.song_seconds)} per song from {estimate.song_seconds_source})"
        )
    for bad in estimate.invalid:
        out.line(f"  request {bad.index + 1}: {bad.message}")


def _count(value: int | None) -> str:
    return "any number of" if value is None else str(value)


def _duration(value: float) -> str:
    """7,260 s as "2 h 01 min", 95 s as "1 min 35 s", 0.19 s as "0.2 s"."""
    if value >= 3600:
        hours, rest = divmod(round(value), 3600)
        return f"{hours} h {rest // 60:02d} min"
    if value >= 60:
        minutes, rest = divmod(round(value), 60)
        return f"{minutes} min {rest:02d} s"
    return f"{value:.1f} s"
