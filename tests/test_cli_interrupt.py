"""The interrupt report, from events alone: cancelled, still running, in flight, not started."""

from __future__ import annotations

import io
import json
import signal
import time
from typing import Any

from flowmusic_async import ClientClosedError, Event
from flowmusic_async._cli._interrupt import Interrupt, SongEvents, report, rerun_command
from flowmusic_async._cli._output import Output

A = "job:aaaaaaaa-0000-user:1-a@example.com-bot:flowmusic"
B = "job:bbbbbbbb-0000-user:1-a@example.com-bot:flowmusic"
C = "job:cccccccc-0000-user:1-a@example.com-bot:flowmusic"


def _event(kind: Any, **fields: Any) -> Event:
    return Event(kind=kind, at=time.time(), **fields)


def _tracker() -> SongEvents:
    """Five songs: one completed, one cancelled, one still running (its wait ended by the
    client closing), one with its POST in flight, one that only queued."""
    tracker = SongEvents()
    for ref, jobid in (("r1", A), ("r2", B), ("r3", C)):
        tracker.on_event(_event("placed", client_ref=ref, email="a@example.com"))
        tracker.on_event(_event("submitting", client_ref=ref, email="a@example.com"))
        tracker.on_event(_event("submitted", client_ref=ref, jobid=jobid, email="a@example.com"))
    tracker.on_event(_event("completed", jobid=A, email="a@example.com"))  # by jobid only
    tracker.on_event(_event("cancelled", jobid=B, email="a@example.com"))
    closed = ClientClosedError("closed", jobid=C, email="a@example.com")
    tracker.on_event(_event("failed", jobid=C, email="a@example.com", error=closed))
    tracker.on_event(_event("submitting", client_ref="r4", email="a@example.com"))
    tracker.on_event(_event("queued", client_ref="r5"))
    return tracker


def _report(interrupt: Interrupt, *, json_mode: bool = False) -> tuple[str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    report(Output(stdout=stdout, stderr=stderr, json_mode=json_mode, quiet=True), interrupt)
    return stdout.getvalue(), stderr.getvalue()


def test_report_without_journal_lists_jobs_and_the_wait_command() -> None:
    """After Ctrl-C the user must know what they paid for and how to get it."""
    interrupt = Interrupt(
        signum=signal.SIGINT, tracker=_tracker(), command="batch", total=8, argv=("batch", "p")
    )
    _, text = _report(interrupt)
    assert text.startswith("flowmusic: interrupted by SIGINT\n")
    assert f"cancelled 1 job server-side (their credits are not refunded):\n    {B}\n" in text
    assert f"still running server-side, 1 job:\n    {C}  on a@example.com\n" in text
    assert "1 job had a paid POST in flight" in text and "flowmusic jobs list" in text
    assert "1 of 8 songs had finished" in text
    assert "4 songs were not started" in text  # 8 - (1 done + 1 cancelled + 1 running + 1 sent)
    assert f"flowmusic wait {C} --out DIR" in text
    assert "--journal" in text
    assert interrupt.exit_code == 130


def test_report_with_journal_gives_the_rerun_command_without_the_token() -> None:
    argv = ("--token", "user:1-secret", "batch", "p.txt", "--journal", "j.db", "--token=x")
    interrupt = Interrupt(
        signum=signal.SIGTERM,
        tracker=_tracker(),
        command="batch",
        journal="j.db",
        total=5,
        argv=argv,
    )
    stdout, text = _report(interrupt, json_mode=True)
    assert "still running server-side (left for the journal), 1 job" in text
    assert "resume (finished songs are kept, running ones awaited): " in text
    assert "flowmusic batch p.txt --journal j.db" in text
    assert "secret" not in text and "--token" not in text
    document = json.loads(stdout)
    assert document == {
        "type": "interrupted",
        "signal": "SIGTERM",
        "cancelled": [B],
        "running": [{"jobid": C, "email": "a@example.com"}],
        "in_flight": 1,
        "finished": 1,
        "not_started": 1,
        "credits_spent": 0.0,  # these events carry no credits
        "resume": "flowmusic batch p.txt --journal j.db",
        "exit_code": 143,
    }


def test_the_report_says_what_the_accepted_jobs_cost() -> None:
    """Credits of every job accepted: completed, cancelled (not refunded) or still running;
    a prompt refused by moderation settles at 0; a song never accepted costs nothing."""
    tracker = SongEvents()
    for ref, jobid in (("r1", A), ("r2", B), ("r3", C)):
        tracker.on_event(_event("queued", client_ref=ref, credits=10.0))
        tracker.on_event(_event("submitted", client_ref=ref, jobid=jobid, credits=10.0))
    tracker.on_event(_event("queued", client_ref="r4", credits=10.0))  # never accepted
    tracker.on_event(_event("cancelled", jobid=A, credits=10.0))
    tracker.on_event(_event("failed", jobid=B, credits=0.0, detail="moderation_reject"))
    interrupt = Interrupt(signum=signal.SIGINT, tracker=tracker, command="batch", argv=("b",))
    _, text = _report(interrupt)
    assert tracker.credits_spent == 20.0
    assert "credits spent on the jobs accepted: 20" in text


def test_a_timed_out_or_retried_submission_is_not_reported_as_paid() -> None:
    """A retry follows an attempt that created no job; a timeout leaves the job running."""
    tracker = SongEvents()
    tracker.on_event(_event("submitting", client_ref="r1"))
    tracker.on_event(_event("retrying", client_ref="r1"))
    tracker.on_event(_event("submitted", client_ref="r2", jobid=A))
    tracker.on_event(_event("timeout", jobid=A))
    assert [s.state for s in tracker.songs.values()] == ["waiting", "running"]


def test_rerun_command_quotes_arguments() -> None:
    assert rerun_command(["batch", "my prompts.txt"]) == "flowmusic batch 'my prompts.txt'"
