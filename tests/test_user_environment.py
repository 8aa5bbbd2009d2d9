"""Paid work survives the user's own environment: two runs of one batch on one journal, a hook
that raises, a full disk, a second event loop or a forked child, a wall clock that steps back.

Every test judges by the simulator's own counters (jobs created = songs paid) and by the files
on disk, not by what the client believes.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from server_view import child_env, served_simulator, server_states

from flowmusic_async import (
    BatchAborted,
    Completed,
    Event,
    FlowMusic,
    FlowMusicError,
    Journal,
    JournalError,
    JournalInUse,
    Outcome,
    SubmissionUncertain,
    SubmitAttempt,
    Timing,
    WrongEventLoopError,
)
from flowmusic_async._cli import run as run_cli
from flowmusic_async._reconcile import Reconciler, Verdict
from flowmusic_async.testing.pytest_plugin import MakeSim

SCALE = 0.01
# The simulators this module's tests build (flowmusic_make_sim) start from these.
pytestmark = pytest.mark.flowmusic_sim(time_scale=SCALE, seed=5, account_email="env{i}@example.com")


async def collect(fm: FlowMusic, requests: list[Any], **kwargs: Any) -> list[Outcome]:
    async with fm.generate_many(requests, **kwargs) as outcomes:
        return [outcome async for outcome in outcomes]


# ----- two runs of one batch on one journal ------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio", "trio")
@pytest.mark.parametrize("share", ["same path", "same Journal object"])
async def test_a_second_batch_on_a_journal_in_use_is_refused_before_paying(
    tmp_path: Path, share: str, anyio_backend: str, flowmusic_make_sim: MakeSim
) -> None:
    """Two batches on one journal would both find its pending entries and pay for each twice."""
    sim = flowmusic_make_sim(4)
    path = tmp_path / "songs.db"
    prompts = [f"twice {i}" for i in range(6)]
    async with sim, sim.client() as fm, await Journal.open(path) as shared:
        journal: Any = shared if share == "same Journal object" else path
        first = fm.generate_many(prompts, journal=journal)
        outcomes = await first.__aenter__()
        try:
            with pytest.raises(JournalInUse) as refused:
                await collect(fm, prompts, journal=journal)
            got = [outcome async for outcome in outcomes]
        finally:
            await first.__aexit__(None, None, None)
        assert f"pid {os.getpid()}" in str(refused.value)
        assert refused.value.path == str(path)
        # Once the first run is over, the journal is free again: a rerun pays nothing more.
        again = await collect(fm, prompts, journal=journal)
    assert all(isinstance(o, Completed) for o in got) and len(got) == 6
    assert all(o.resumed for o in again)
    assert sim.stats.jobs_created == 6


def _batch_argv(server_url: str, journal: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "flowmusic_async",
        "--token",
        "user:1001-simulatortoken",
        "--base-url",
        server_url,
        "--time-scale",
        "0.02",
        "--json",
        "batch",
        "prompts.txt",
        "--journal",
        journal,
        "--progress",
        "off",
    ]


@pytest.fixture
def served_sim() -> Iterator[str]:
    """A simulator on a loopback socket, for tests that run real processes."""
    with served_simulator(time_scale="0.02", account="a@example.com:4") as url:
        yield url


@pytest.mark.timeout(90)
def test_two_cli_batches_on_one_journal_pay_each_song_once(served_sim: str, tmp_path: Path) -> None:
    """A cron job that fires while the last run still goes: one run works, the other is refused
    at once naming the holder, and the simulator created one job per prompt."""
    (tmp_path / "prompts.txt").write_text("".join(f"cron song {i}\n" for i in range(12)))
    runs = [
        subprocess.Popen(
            _batch_argv(served_sim, "j.db"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=child_env(),
        )
        for _ in range(2)
    ]
    results = [run.communicate(timeout=80) for run in runs]
    codes = sorted(run.returncode for run in runs)
    refused = [err for (_, err), run in zip(results, runs, strict=True) if run.returncode != 0]
    stats = httpx.get(f"{served_sim}/_sim/stats", timeout=10).json()
    assert stats["jobs_created"] == 12, results
    assert codes[0] == 0 and codes[1] != 0, results
    assert "in use by pid" in refused[0] and "Traceback" not in refused[0]


# ----- a hook that raises -------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio", "trio")
async def test_a_raising_on_submitting_hook_gives_its_slot_back(
    anyio_backend: str, flowmusic_make_sim: MakeSim
) -> None:
    """A hook's exception used to keep the account's slot: later submissions waited forever."""
    sim = flowmusic_make_sim(2)

    async def broken_hook(attempt: SubmitAttempt) -> None:
        raise OSError("the user's log file is gone")

    async with sim, sim.client() as fm:
        for _ in range(2):
            with pytest.raises(FlowMusicError, match="nothing was sent") as caught:
                await fm.submit("hooked", on_submitting=broken_hook)
            assert isinstance(caught.value.__cause__, OSError)
        assert sim.stats.jobs_created == 0
        assert all(usage.in_flight == 0 for usage in fm.capacity().accounts.values())
        with anyio.fail_after(10):  # hung for good before the fix
            job = await fm.generate("after the broken hooks")
    assert job.is_completed and sim.stats.jobs_created == 1


@pytest.mark.anyio
async def test_a_journal_lock_met_by_the_write_ahead_is_typed_and_leaks_nothing(
    tmp_path: Path, flowmusic_make_sim: MakeSim
) -> None:
    """A write-ahead that meets another program's lock on the journal (SQLite gives up after
    10 s) used to leave the batch and the account's slot stuck for good."""
    sim = flowmusic_make_sim(1)
    path = tmp_path / "locked.db"
    await (await Journal.open(path)).close()
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)

    def lock_when_placed(event: Event) -> None:
        if event.kind == "placed" and not blocker.in_transaction:
            blocker.execute("BEGIN EXCLUSIVE")  # another program takes the database

    try:
        async with sim, sim.client(event_hooks=[lock_when_placed]) as fm:
            with anyio.fail_after(60), pytest.raises(BatchAborted) as caught:
                await collect(fm, ["locked out", "never sent"], journal=path)
            cause = caught.value.cause
            assert isinstance(cause, JournalError) and "locked" in str(cause)
            assert str(path) in str(cause)
            assert caught.value.not_started == 2
            blocker.execute("ROLLBACK")
            assert all(usage.in_flight == 0 for usage in fm.capacity().accounts.values())
            with anyio.fail_after(10):
                job = await fm.generate("the slot is free")
    finally:
        blocker.close()
    assert job.is_completed and sim.stats.jobs_created == 1


@pytest.mark.anyio
async def test_an_async_event_hook_is_refused_when_registered(flowmusic_make_sim: MakeSim) -> None:
    """An `async def` hook was accepted and never run: the observer silently saw nothing."""

    async def async_hook(event: Event) -> None:
        pass  # pragma: no cover

    with pytest.raises(FlowMusicError, match="async function"):
        FlowMusic(token="user:1-x", event_hooks=[async_hook])
    async with flowmusic_make_sim(1) as sim, sim.client() as fm:
        with pytest.raises(FlowMusicError, match="async function"):
            fm.add_event_hook(async_hook)


# ----- a full disk under the journal -------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs of its own (root only; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here: " + done.stderr.decode(errors="replace"))
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    """Fill the disk to the last byte; returns the filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (64 * 1024, 1024, 1):
            try:
                while True:
                    os.write(fd, bytes(size))
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio", "trio")
async def test_a_full_disk_stops_the_batch_typed_and_the_rerun_pays_nothing_twice(
    small_disk: Path, anyio_backend: str, flowmusic_make_sim: MakeSim
) -> None:
    """A disk that fills mid-batch used to crash it untyped and forget paid jobids."""
    sim = flowmusic_make_sim(4)
    path = small_disk / "songs.db"
    prompts = [f"full disk {i}" for i in range(40)]
    filled: list[Path] = []

    def fill_after_four(event: Event) -> None:
        if event.kind == "submitted" and not filled and sim.stats.jobs_created >= 4:
            filled.append(_fill(small_disk))

    first: list[Outcome] = []
    async with sim, sim.client(event_hooks=[fill_after_four]) as fm:
        with anyio.fail_after(60), pytest.raises(BatchAborted) as caught:
            async with fm.generate_many(prompts, journal=path) as outcomes:
                async for outcome in outcomes:
                    first.append(outcome)
        cause = caught.value.cause
        assert isinstance(cause, JournalError) and cause.disk_full
        assert str(path) in str(cause)
        paid_first = sim.stats.jobs_created
        assert 4 <= paid_first < 40
        # Every job paid in the first run is known: delivered as an outcome, or named.
        delivered = {o.job.jobid for o in first if isinstance(o, Completed)}
        named = {jobid for jobid, _ in caught.value.unrecorded}
        assert set(sim.stats.jobs) <= delivered | named | set(await _journalled(path))

        filled[0].unlink()  # the user frees some space and runs the same batch again
        again = await collect(fm, prompts, journal=path)
    assert not [o for o in again if isinstance(o.error, SubmissionUncertain)]
    assert all(isinstance(o, Completed) for o in again) and len(again) == 40
    assert sim.stats.jobs_created == 40  # each song paid exactly once over both runs
    assert sim.stats.duplicate_submissions == 0


class _FillsTheDiskAtTheFirstPost(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, disk: Path) -> None:
        self.inner = inner
        self.disk = disk
        self.filled = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and not self.filled:
            self.filled = True
            _fill(self.disk)
        return response


@pytest.mark.anyio
async def test_the_cli_batch_on_a_disk_that_fills_says_so_and_names_what_was_paid(
    small_disk: Path, flowmusic_make_sim: MakeSim
) -> None:
    """The CLI used to print a 152-line traceback and forget the jobs it was given."""
    sim = flowmusic_make_sim(2)
    prompts = small_disk.parent / "prompts.txt"
    prompts.write_text("".join(f"cli full {i}\n" for i in range(10)))
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = ["--token", sim.token, "--base-url", sim.base_url, "--time-scale", str(SCALE)]
    argv += ["--json", "batch", str(prompts), "--journal", str(small_disk / "j.db")]
    transport = _FillsTheDiskAtTheFirstPost(sim.transport(), small_disk)
    async with sim:
        code = await run_cli(
            [*argv, "--progress", "off"], transport=transport, stdout=stdout, stderr=stderr
        )
    said = stderr.getvalue()
    assert code != 0 and "Traceback" not in said, said
    lines = [json.loads(line) for line in stdout.getvalue().splitlines()]
    aborted = lines[-1]["aborted"]
    assert "full" in aborted["message"] and str(small_disk / "j.db") in aborted["message"]
    assert sim.stats.jobs_created >= 1
    delivered = {line.get("jobid") for line in lines if line["type"] == "outcome"}
    for jobid in sim.stats.jobs:  # every paid job is delivered or named
        assert jobid in delivered or jobid in aborted["message"]


async def _journalled(path: Path) -> list[str]:
    async with await Journal.open(path) as journal:
        return [entry.jobid for entry in await journal.entries() if entry.jobid]


@pytest.mark.anyio
async def test_a_journal_in_a_missing_folder_is_a_journal_error_naming_it(tmp_path: Path) -> None:
    """A raw sqlite3.OperationalError named no file."""
    missing = tmp_path / "nowhere" / "songs.db"
    with pytest.raises(JournalError) as caught:
        await Journal.open(missing)
    assert str(missing) in str(caught.value) and caught.value.path == str(missing)


@pytest.mark.anyio
async def test_a_journal_in_a_read_only_folder_is_a_journal_error_naming_it(
    tmp_path: Path,
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes through read-only permissions")
    folder = tmp_path / "ro"  # pragma: no cover - CI runs as root
    folder.mkdir()
    folder.chmod(0o500)
    with pytest.raises(JournalError, match=str(folder)):
        await Journal.open(folder / "songs.db")


@pytest.mark.anyio
async def test_a_journal_truncated_to_nothing_warns_that_its_history_is_gone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "songs.db"
    path.write_bytes(b"")
    with pytest.warns(UserWarning, match="history is gone"):
        journal = await Journal.open(path)
    await journal.close()


# ----- another event loop, another process --------------------------------------------------------


def test_a_client_used_from_a_second_event_loop_refuses_before_sending(
    flowmusic_make_sim: MakeSim,
) -> None:
    """Opened in loop 1 (kept alive, as a session fixture keeps it), used from loop 2: the song
    used to be paid, then the bookkeeping failed with "internal error" and no jobid."""
    sim = flowmusic_make_sim(2)
    opened = threading.Event()
    release = threading.Event()
    holder: dict[str, FlowMusic] = {}

    async def keep_open() -> None:
        async with sim, sim.client() as fm:
            holder["fm"] = fm
            opened.set()
            await anyio.to_thread.run_sync(release.wait)

    loop_one = threading.Thread(target=anyio.run, args=(keep_open,))
    loop_one.start()
    try:
        assert opened.wait(10)

        async def use_from_loop_two() -> None:
            with pytest.raises(WrongEventLoopError, match="another event loop"):
                await holder["fm"].generate("from the wrong loop")

        anyio.run(use_from_loop_two)
    finally:
        release.set()
        loop_one.join(10)
    assert sim.stats.jobs_created == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
@pytest.mark.anyio
async def test_a_client_used_in_a_forked_child_refuses_before_sending(
    flowmusic_make_sim: MakeSim,
) -> None:
    sim = flowmusic_make_sim(2)
    async with sim, sim.client() as fm:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            said_in_child: list[bytes] = [b"?"]

            async def child() -> None:
                try:
                    await fm.generate("from the child")
                except WrongEventLoopError as error:
                    said_in_child[0] = b"ok" if "fork()" in str(error) else str(error).encode()
                except BaseException as error:
                    said_in_child[0] = repr(error).encode()

            # A thread of its own: the forked thread still looks like it runs the parent's loop.
            worker = threading.Thread(target=anyio.run, args=(child,))
            worker.start()
            worker.join(30)
            code = said_in_child[0]
            os.write(write_end, code)
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as answer:
            said = answer.read()
        os.waitpid(pid, 0)
    assert said == b"ok"
    assert sim.stats.jobs_created == 0


# ----- a wall clock that steps back --------------------------------------------------------------


class _SteppedClock:
    """`time` as the reconciler sees it, with the wall clock an hour behind once stepped."""

    def __init__(self) -> None:
        self.behind = 0.0

    def time(self) -> float:
        return time.time() - self.behind

    def monotonic(self) -> float:
        return time.monotonic()


@pytest.mark.anyio
async def test_a_wall_clock_stepped_back_does_not_prove_a_lost_post_absent(
    monkeypatch: pytest.MonkeyPatch, flowmusic_make_sim: MakeSim
) -> None:
    """A POST whose answer was lost and whose job already ended cannot be proven absent; a
    clock stepped back an hour (NTP, a resumed VM) used to make it look young, and the song
    was paid again."""
    clock = _SteppedClock()
    monkeypatch.setattr("flowmusic_async._reconcile.time", clock)
    sim = flowmusic_make_sim(2, time_scale=0.01)

    class LoseTheAnswerOnceTheJobEnded(httpx.AsyncBaseTransport):
        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self.inner = inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await self.inner.handle_async_request(request)
            if request.method == "POST" and sim.stats.jobs_created == 1:
                with anyio.fail_after(10):
                    while "running" in (await server_states(sim)).values():
                        await anyio.sleep(0.05)
                clock.behind = 3600.0
                raise httpx.ReadError("connection reset after the job was created")
            return response

    async with sim:
        fm = FlowMusic(
            token=sim.token,
            base_url=sim.base_url,
            transport=LoseTheAnswerOnceTheJobEnded(sim.transport()),
            timing=Timing.scaled(0.01),
        )
        async with fm:
            with pytest.raises(SubmissionUncertain):
                await fm.generate("lost answer")
    assert sim.stats.jobs_created == 1  # not resent: it was paid once


@pytest.mark.anyio
async def test_a_journal_post_whose_wall_age_is_negative_is_undecided() -> None:
    """After a restart only wall time is known: a POST "from the future" proves nothing."""

    async def nothing_running() -> dict[str, Any]:
        return {}

    async def no_job(jobid: str) -> Any:
        raise AssertionError("nothing to read")  # pragma: no cover

    reconciler = Reconciler(
        list_running=nothing_running,
        get_job=no_job,
        known_jobs=dict,
        timing=Timing.scaled(0.001),
        sleep=anyio.sleep,
    )
    verdict = await reconciler.reconcile("fma:x", email=None, sent_at=time.time() + 3600)
    assert verdict == Verdict.UNDECIDED


# ----- every account out mid-batch ---------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio", "trio")
async def test_every_account_in_error_stops_the_batch_and_the_rerun_sends_the_unsent(
    tmp_path: Path, anyio_backend: str, flowmusic_make_sim: MakeSim
) -> None:
    """596 on every account mid-batch used to journal the songs never sent (never paid) as
    failed for good: after the accounts were fixed, the rerun skipped them."""
    sim = flowmusic_make_sim(2, 2)
    emails = list(sim.world.accounts)
    sim.faults.account_error_after = {email: 2 for email in emails}
    path = tmp_path / "songs.db"
    prompts = [f"596 song {i}" for i in range(12)]
    first: list[Outcome] = []
    async with sim, sim.client() as fm:
        with anyio.fail_after(60), pytest.raises(BatchAborted) as caught:
            async with fm.generate_many(prompts, journal=path) as outcomes:
                async for outcome in outcomes:
                    first.append(outcome)
        paid_first = sim.stats.jobs_created
        assert caught.value.not_started + len(first) == 12
        assert type(caught.value.cause).__name__ in {"AccountError", "NoAccountAvailable"}
        async with await Journal.open(path) as journal:
            states = [entry.state for entry in await journal.entries()]
        assert "failed" not in states  # nothing was paid for the songs never sent

        sim.faults.account_error_after = {}
        for email in emails:
            sim.clear_account_error(email)  # the user re-adds the accounts
        async with sim.client() as fm_again:
            again = await collect(fm_again, prompts, journal=path)
    assert all(isinstance(o, Completed) for o in again) and len(again) == 12
    assert sim.stats.jobs_created == 12  # the unsent ones sent once, nothing paid twice
    assert paid_first == 4
