"""Ctrl-C and SIGTERM of `flowmusic batch` / `generate`, as real processes against a simulator
served on a loopback socket: the exit code, and a report that says what was cancelled, what
still runs and how to resume or recover, checked against the simulator's own records."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_view import child_env, served_simulator

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
]

REPO = Path(__file__).resolve().parents[1]
SCALE = "0.02"  # songs take 0.8-3 s: still running when the signal lands
TOKEN = "user:1001-simulatortoken"  # the simulator's default token
JOBID = re.compile(r"job:[0-9a-f-]+-user:\d+-\S+?-bot:flowmusic")
DELETES = "DELETE /jobs/{jobid} 204"


class Server:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.base_url}/_sim/stats", timeout=10).json()  # type: ignore[no-any-return]

    def deletes(self) -> int:
        return int(self.stats()["requests"].get(DELETES, 0))

    def was_cancelled(self, jobid: str) -> bool:
        """The simulator's word: did a DELETE stop this job?"""
        answer = httpx.get(
            f"{self.base_url}/jobs/{jobid}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        return "user_cancelled" in answer.text


@pytest.fixture
def server() -> Iterator[Server]:
    with served_simulator(time_scale=SCALE, account="a@example.com:3") as url:
        yield Server(url)


def _start_cli(server: Server, *argv: str, cwd: Path) -> subprocess.Popen[str]:
    """The CLI pointed at the server through the environment, token on the command line."""
    return subprocess.Popen(
        [sys.executable, "-m", "flowmusic_async", "--token", TOKEN, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**child_env(), "FLOWMUSIC_BASE_URL": server.base_url},
    )


def _interrupt_after(
    process: subprocess.Popen[str], submitted: int, signum: int
) -> tuple[list[str], str, str]:
    """Read plain progress until `submitted` jobs are accepted, send `signum`, collect output."""
    assert process.stderr is not None
    jobids: list[str] = []
    early: list[str] = []
    while len(jobids) < submitted:
        line = process.stderr.readline()
        assert line, "the CLI ended before submitting: " + "".join(early)
        early.append(line)
        if line.strip().startswith("submitted "):
            jobids.append(JOBID.search(line).group(0))  # type: ignore[union-attr]
    process.send_signal(signum)
    stdout, rest = process.communicate(timeout=60)
    return jobids, stdout, "".join(early) + rest


def _report_section(stderr: str, heading: str) -> list[str]:
    """The jobids listed under a heading of the interrupt report."""
    lines = stderr.split("flowmusic: interrupted by", 1)[1].splitlines()
    found: list[str] = []
    inside = False
    for line in lines:
        if line.startswith("  ") and not line.startswith("    "):
            inside = heading in line
        elif inside:
            found += JOBID.findall(line)
    return found


def _engine_cancels(server: Server, expected: int) -> None:
    """Every accepted job the interrupted command did not leave running got its DELETE."""
    assert server.deletes() == expected


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_interrupted_batch_reports_every_accepted_job_and_how_to_recover(
    server: Server, tmp_path: Path, signum: int, code: int
) -> None:
    """Without a journal (--no-journal): each accepted job is reported cancelled or still
    running (as the simulator confirms), the untouched songs as not started, and
    `flowmusic wait` as the way to collect what runs."""
    (tmp_path / "p.txt").write_text("".join(f"song {i}\n" for i in range(6)))
    argv = ["--time-scale", SCALE, "batch", "p.txt", "--no-journal", "--progress", "plain"]
    cli = _start_cli(server, *argv, cwd=tmp_path)
    jobids, _, stderr = _interrupt_after(cli, 3, signum)
    assert cli.returncode == code, stderr
    assert f"flowmusic: interrupted by {signal.Signals(signum).name}" in stderr
    assert "Traceback" not in stderr
    cancelled = _report_section(stderr, "cancelled")
    running = _report_section(stderr, "still running")
    assert sorted(cancelled + running) == sorted(jobids)  # every paid job accounted for
    for jobid in cancelled:
        assert server.was_cancelled(jobid)
    for jobid in running:
        assert not server.was_cancelled(jobid)
    assert "3 songs were not started" in stderr
    if running:
        assert "flowmusic wait" in stderr
    assert "--journal" in stderr  # how to make the next one resumable
    assert TOKEN not in stderr
    _engine_cancels(server, expected=3)


def test_sigterm_with_a_journal_leaves_jobs_for_the_rerun_it_prints(
    server: Server, tmp_path: Path
) -> None:
    """With a journal the running jobs are left to be collected: the printed command resumes
    the batch, and the whole batch costs exactly one job per song."""
    (tmp_path / "p.txt").write_text("".join(f"song {i}\n" for i in range(5)))
    argv = ["--time-scale", SCALE, "--json", "batch", "p.txt", "--journal", "j.db"]
    cli = _start_cli(server, *argv, "--progress", "plain", cwd=tmp_path)
    jobids, stdout, stderr = _interrupt_after(cli, 3, signal.SIGTERM)
    assert cli.returncode == 143, stderr
    assert sorted(_report_section(stderr, "still running")) == sorted(jobids)
    assert "(left for the journal)" in stderr
    assert server.deletes() == 0  # paid jobs are kept for the rerun, not thrown away
    report = json.loads(stdout.splitlines()[-1])
    assert report["type"] == "interrupted" and report["signal"] == "SIGTERM"
    assert sorted(r["jobid"] for r in report["running"]) == sorted(jobids)
    assert report["exit_code"] == 143
    resume = report["resume"]
    assert resume == shlex.join(["flowmusic", *argv, "--progress", "plain"])  # no --token
    assert resume in stderr

    rerun = subprocess.run(
        [sys.executable, "-m", "flowmusic_async", *shlex.split(resume)[1:]],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**child_env(), "FLOWMUSIC_BASE_URL": server.base_url, "USEAPI_TOKEN": TOKEN},
        timeout=60,
    )
    summary = json.loads(rerun.stdout.splitlines()[-1])
    assert server.stats()["jobs_created"] == 5  # nothing paid twice
    assert rerun.returncode == 0, rerun.stderr
    assert summary["ok"] == 5


def test_a_batch_journals_by_default_so_ctrl_c_keeps_every_paid_song(
    server: Server, tmp_path: Path
) -> None:
    """Without --journal, Ctrl-C used to cancel every running job, and the API refunds no
    cancelled job: the songs were paid and never delivered. Now the batch journals beside its
    output folder (named on its first line), the paid jobs stay running, and the same command
    run again collects them: one job per song in all."""
    (tmp_path / "p.txt").write_text("".join(f"song {i}\n" for i in range(5)))
    argv = ["--time-scale", SCALE, "--json", "batch", "p.txt", "--out", "songs"]
    cli = _start_cli(server, *argv, "--progress", "plain", cwd=tmp_path)
    jobids, _, stderr = _interrupt_after(cli, 3, signal.SIGINT)
    assert cli.returncode == 130, stderr
    assert stderr.splitlines()[0].startswith("journal: songs.journal.db")
    assert (tmp_path / "songs.journal.db").is_file()
    assert server.deletes() == 0  # nothing paid was thrown away
    assert sorted(_report_section(stderr, "still running")) == sorted(jobids)

    rerun = subprocess.run(
        [sys.executable, "-m", "flowmusic_async", "--token", TOKEN, *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**child_env(), "FLOWMUSIC_BASE_URL": server.base_url},
        timeout=60,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout.splitlines()[-1])["ok"] == 5
    assert server.stats()["jobs_created"] == 5  # each song paid once over both runs


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_interrupted_generate_reports_its_job(
    server: Server, tmp_path: Path, signum: int, code: int
) -> None:
    """One song: the report names its job, cancelled or still running, as the simulator says."""
    cli = _start_cli(
        server, "--time-scale", SCALE, "generate", "lo-fi", "--progress", "plain", cwd=tmp_path
    )
    [jobid], _, stderr = _interrupt_after(cli, 1, signum)
    assert cli.returncode == code, stderr
    cancelled = _report_section(stderr, "cancelled")
    running = _report_section(stderr, "still running")
    assert cancelled + running == [jobid]
    assert server.was_cancelled(jobid) == bool(cancelled)
    if running:
        assert f"flowmusic wait {jobid} --out DIR" in stderr
    _engine_cancels(server, expected=1)


def test_the_interrupt_report_is_the_only_list_of_jobids_and_cites_the_cli(
    server: Server, tmp_path: Path
) -> None:
    """No library WARNING repeats every jobid left running, citing the library's fm.wait().

    The report below it already lists each job, with `flowmusic wait` (or the rerun command)
    as the way to collect them; a CLI user has no `fm` to call.
    """
    (tmp_path / "p.txt").write_text("".join(f"song {i}\n" for i in range(5)))
    argv = ["--time-scale", SCALE, "batch", "p.txt", "--journal", "j.db", "--progress", "plain"]
    cli = _start_cli(server, *argv, cwd=tmp_path)
    jobids, _, stderr = _interrupt_after(cli, 3, signal.SIGINT)
    assert cli.returncode == 130, stderr
    assert "fm.wait" not in stderr
    warnings = [line for line in stderr.splitlines() if "WARNING" in line]
    assert not [line for line in warnings if JOBID.search(line)], warnings
    assert sorted(_report_section(stderr, "still running")) == sorted(jobids)
