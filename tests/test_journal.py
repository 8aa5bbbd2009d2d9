"""The batch journal: keys, state changes, durability across close and SIGKILL, concurrency."""

from __future__ import annotations

import sqlite3
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from flowmusic_async._errors import JobFailed, ModeratedError
from flowmusic_async._journal import Entry, Journal, JournalError, fingerprint
from flowmusic_async._models import Clip, Job, JobError

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]


def completed_job(jobid: str = "job:1111-user:1-a@example.com-bot:flowmusic") -> Job:
    return Job(
        jobid=jobid,
        email="a@example.com",
        status="completed",
        created_at="2026-05-31T19:57:23.954Z",
        completed_at="2026-05-31T19:59:43.118Z",
        duration_ms=139164,
        clips=(
            Clip(
                clip="user:1-a@example.com-clip:0123abcd-0000-4000-8000-000000000000",
                title="Night Drive",
                duration_s=173.03,
                lyrics="la la",
                seed=42,
                lyrics_timing=((0.0, 1.5), (1.5, 3.0)),
                audio_url="https://cdn.example/a.m4a?sig=x",
            ),
        ),
        request={"prompt": "synthwave", "mode": "async"},
        reply_ref="ref-1",
    )


async def test_entry_walks_every_state_and_keeps_the_job(tmp_path: Path) -> None:
    """Each step must be readable back exactly, or a resumed batch would act on wrong facts."""
    async with await Journal.open(tmp_path / "batch.db") as journal:
        [entry] = await journal.register([{"prompt": "synthwave", "instrumental": True}])
        assert entry.state == "pending"
        assert entry.index == 0
        assert entry.params == {"prompt": "synthwave", "instrumental": True}

        await journal.mark_submitting(entry.key, client_ref="ref-1", email=None, sent_at=100.5)
        got = await journal.get(entry.key)
        assert (got.state, got.client_ref, got.email, got.sent_at) == (
            "submitting",
            "ref-1",
            None,
            100.5,
        )

        job = completed_job()
        await journal.mark_submitted(entry.key, jobid=job.jobid, email=job.email)
        got = await journal.get(entry.key)
        assert (got.state, got.jobid, got.email) == ("submitted", job.jobid, job.email)

        await journal.mark_completed(entry.key, job=job)
        got = await journal.get(entry.key)
        assert got.state == "completed"
        assert got.job == job
        assert got.client_ref == "ref-1"
        assert got.updated_at >= entry.updated_at


async def test_failure_records_type_message_and_failed_job(tmp_path: Path) -> None:
    """A failed entry must say why, and keep the failed record when the server sent one."""
    failed = Job(
        jobid="job:2222",
        email="b@example.com",
        status="failed",
        error=JobError(code="moderation_reject", message="no"),
    )
    async with await Journal.open(tmp_path / "batch.db") as journal:
        first, second = await journal.register([{"prompt": "a"}, {"prompt": "b"}])
        await journal.mark_failed(first.key, error=JobFailed(failed))
        await journal.mark_submitted(second.key, jobid="job:3333", email="c@example.com")
        await journal.mark_failed(
            second.key,
            error=ModeratedError("422 moderated", status=422, endpoint="POST /music"),
        )
        one, two = await journal.entries()
    assert (one.state, one.error_type, one.jobid, one.email) == (
        "failed",
        "JobFailed",
        "job:2222",
        "b@example.com",
    )
    assert one.job == failed
    assert "moderation_reject" in (one.error_message or "")
    # The error named no job, so the jobid learnt earlier is kept.
    assert (two.state, two.error_type, two.jobid) == ("failed", "ModeratedError", "job:3333")
    assert two.error_message == "422 moderated"


async def test_register_again_finds_the_same_keys_and_keeps_progress(tmp_path: Path) -> None:
    """Re-running the same input must resume the batch, not start (and pay for) a new one."""
    requests: list[dict[str, Any]] = [{"prompt": "one"}, {"prompt": "two", "lyrics": None}]
    async with await Journal.open(tmp_path / "batch.db") as journal:
        before = await journal.register(requests)
        await journal.mark_submitted(before[1].key, jobid="job:9", email="a@example.com")
        after = await journal.register(requests)
        assert [e.key for e in after] == [e.key for e in before]
        assert after[1].state == "submitted"
        assert len(await journal.entries()) == 2


async def test_identical_requests_are_separate_entries_keyed_by_occurrence(
    tmp_path: Path,
) -> None:
    """Asking for the same prompt twice means two songs; neither may be mistaken for the other."""
    async with await Journal.open(tmp_path / "batch.db") as journal:
        entries = await journal.register(
            [{"prompt": "same"}, {"prompt": "other"}, {"prompt": "same"}]
        )
    fp = fingerprint({"prompt": "same"})
    assert [e.key for e in entries] == [
        f"{fp}#0",
        f"{fingerprint({'prompt': 'other'})}#0",
        f"{fp}#1",
    ]
    assert [e.index for e in entries] == [0, 1, 2]


def test_fingerprint_ignores_key_order_and_unset_fields() -> None:
    """The same request written differently must keep its key, or a resume would resubmit it."""
    assert fingerprint({"prompt": "x", "instrumental": True}) == fingerprint(
        {"instrumental": True, "prompt": "x", "lyrics": None}
    )
    assert fingerprint({"prompt": "x"}) != fingerprint({"prompt": "x", "instrumental": True})
    assert len(fingerprint({"prompt": "x"})) == 24


async def test_reopen_after_close_keeps_everything(tmp_path: Path) -> None:
    """The journal exists to outlive the process; a reopen must see every committed step."""
    path = tmp_path / "batch.db"
    async with await Journal.open(path) as journal:
        first, _ = await journal.register([{"prompt": "a"}, {"prompt": "b"}])
        await journal.mark_completed(first.key, job=completed_job())
        written = await journal.entries()
    async with await Journal.open(path) as journal:
        assert await journal.entries() == written


async def test_write_survives_sigkill_right_after_mark_returns(tmp_path: Path) -> None:
    """A crash right after the mark must not lose 'submitting', or the song could be paid twice."""
    path = tmp_path / "batch.db"
    child = textwrap.dedent(
        """
        import sys, anyio
        from flowmusic_async._journal import Journal

        async def main():
            journal = await Journal.open(sys.argv[1])
            [entry] = await journal.register([{"prompt": "crash"}])
            await journal.mark_submitting(
                entry.key, client_ref="ref-kill", email="a@example.com", sent_at=7.0
            )
            print("marked", flush=True)
            await anyio.sleep_forever()

        anyio.run(main)
        """
    )
    process = await anyio.open_process(
        [sys.executable, "-c", child, str(path)], cwd=ROOT, stderr=None
    )
    try:
        assert process.stdout is not None
        with anyio.fail_after(20):
            output = b""
            async for chunk in process.stdout:
                output += chunk
                if b"marked\n" in output:
                    break
        assert b"marked" in output
    finally:
        process.kill()  # SIGKILL: no close(), no atexit, no flush
        await process.wait()
        await process.aclose()
    assert process.returncode == -9

    async with await Journal.open(path) as journal:
        [entry] = await journal.entries()
    assert (entry.state, entry.client_ref, entry.sent_at) == ("submitting", "ref-kill", 7.0)


async def test_concurrent_marks_from_many_tasks_do_not_corrupt(tmp_path: Path) -> None:
    """A batch marks entries from many tasks at once; every write must land, intact."""
    path = tmp_path / "batch.db"
    async with await Journal.open(path) as journal:
        entries = await journal.register([{"prompt": f"song {n}"} for n in range(60)])

        async def walk(entry: Entry) -> None:
            n = entry.index
            await journal.mark_submitting(entry.key, client_ref=f"r{n}", email=None, sent_at=n)
            await journal.mark_submitted(entry.key, jobid=f"job:{n}", email="a@example.com")
            if n % 3 == 0:
                await journal.mark_failed(
                    entry.key, error=ModeratedError("no", status=422, jobid=f"job:{n}")
                )
            else:
                await journal.mark_completed(entry.key, job=completed_job(f"job:{n}"))

        async with anyio.create_task_group() as tg:
            for entry in entries:
                tg.start_soon(walk, entry)
        result = await journal.entries()

    assert len(result) == 60
    for entry in result:
        n = entry.index
        assert entry.client_ref == f"r{n}"
        assert entry.jobid == f"job:{n}"
        assert entry.state == ("failed" if n % 3 == 0 else "completed")
        if entry.state == "completed":
            assert entry.job == completed_job(f"job:{n}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_mark_from_a_cancelled_task_still_reaches_disk(tmp_path: Path) -> None:
    """Cancelling mid-submit must not skip the write that guards against paying twice."""
    async with await Journal.open(tmp_path / "batch.db") as journal:
        [entry] = await journal.register([{"prompt": "a"}])
        with anyio.CancelScope() as scope:
            scope.cancel()
            await journal.mark_submitting(entry.key, client_ref="r", email=None, sent_at=1.0)
        assert (await journal.get(entry.key)).state == "submitting"


async def test_completed_entry_is_never_overwritten(tmp_path: Path) -> None:
    """A completed entry records a paid song; a late failure report must not hide it."""
    async with await Journal.open(tmp_path / "batch.db") as journal:
        [entry] = await journal.register([{"prompt": "a"}])
        await journal.mark_completed(entry.key, job=completed_job())
        await journal.mark_failed(entry.key, error=ModeratedError("late", status=422))
        await journal.mark_submitting(entry.key, client_ref="again", email=None, sent_at=2.0)
        got = await journal.get(entry.key)
    assert got.state == "completed"
    assert got.job == completed_job()


async def test_unknown_key_is_a_key_error(tmp_path: Path) -> None:
    """A typo'd key must fail loudly instead of silently recording nothing."""
    async with await Journal.open(tmp_path / "batch.db") as journal:
        with pytest.raises(KeyError):
            await journal.mark_submitted("nope#0", jobid="job:1", email="a@example.com")


async def test_use_after_close_is_a_clear_error(tmp_path: Path) -> None:
    """Writing to a closed journal must not pass silently: the step would be lost."""
    journal = await Journal.open(tmp_path / "batch.db")
    await journal.close()
    await journal.close()
    with pytest.raises(JournalError, match="closed"):
        await journal.entries()


async def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    """A journal written by a newer release must not be misread by this one."""
    path = tmp_path / "batch.db"
    journal = await Journal.open(path)
    await journal.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(JournalError, match="schema version 99"):
        await Journal.open(path)


@pytest.mark.parametrize(
    "content", [b"not a database at all, just text" * 100, None], ids=["text-file", "other-sqlite"]
)
async def test_a_file_that_is_not_a_journal_is_refused(
    tmp_path: Path, content: bytes | None
) -> None:
    """Pointing --journal at the wrong file must not scribble a schema into it."""
    path = tmp_path / "other.db"
    if content is None:
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE songs (name TEXT)")
    else:
        path.write_bytes(content)
    with pytest.raises(JournalError, match="journal"):
        await Journal.open(path)
