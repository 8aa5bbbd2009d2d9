"""CLI conventions scripts and people rely on: --version, -v/-q, --json anywhere, stdin, help
that is about the command at hand, distinct exit codes, full ids, a clear busy-port error,
files that follow the umask, and `wait` to collect jobs an earlier run left behind."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowmusic_async import FlowMusic, Timing, __version__
from flowmusic_async._cli import main, run
from flowmusic_async._cli._exit import ExitCode
from flowmusic_async._cli._output import Output
from flowmusic_async.testing import SimAccount, Simulator

SCALE = 0.002


class Result:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr


@pytest.fixture
def sim() -> Simulator:
    return Simulator(
        accounts=(SimAccount(email="alpha@example.com", max_jobs=3),), time_scale=SCALE
    )


@pytest.fixture
def cli(sim: Simulator) -> Any:
    async def invoke(*argv: str, scaled: bool = True) -> Result:
        stdout, stderr = io.StringIO(), io.StringIO()
        prefix = ["--token", sim.token, "--base-url", sim.base_url]
        if scaled:
            prefix += ["--time-scale", str(SCALE)]
        code = await run([*prefix, *argv], transport=sim.transport(), stdout=stdout, stderr=stderr)
        result = Result(code, stdout.getvalue(), stderr.getvalue())
        assert sim.token not in result.stdout + result.stderr
        return result

    return invoke


def test_version_names_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    """Bug reports start with `flowmusic --version`."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"flowmusic {__version__} (Python ")


def test_subcommand_help_shows_its_own_options_not_the_global_block(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`flowmusic generate --help` is about generating; the global block lives in --help."""
    assert main(["generate", "--help"]) == 0
    sub = capsys.readouterr().out
    assert "--instrumental" in sub
    assert "--token" not in sub and "--base-url" not in sub and "exit codes:" not in sub
    assert "flowmusic --help" in sub  # where the rest is
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    for flag in ("--token", "--base-url", "--json", "--verbose", "--quiet", "--wide", "--version"):
        assert flag in top
    assert "FLOWMUSIC_BASE_URL" in top and "FLOWMUSIC_LOG" in top


@pytest.mark.parametrize(
    ("command", "hidden"),
    [
        ("demo", ("--token", "--base-url")),
        ("simulate", ("--token", "--base-url", "--progress", "--wide")),
    ],
)
def test_demo_and_simulate_help_lists_only_options_they_use(
    capsys: pytest.CaptureFixture[str], command: str, hidden: tuple[str, ...]
) -> None:
    """An option shown is an option that does something."""
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    for flag in hidden:
        assert flag not in text
    assert "--time-scale" in text  # their own: the simulator's time scale


@pytest.mark.parametrize(
    "argv",
    [
        ["--token", "t", "demo"],
        ["demo", "--token", "t"],
        ["--base-url", "http://127.0.0.1:1/v1", "simulate"],
        ["simulate", "--progress", "plain"],
        ["--time-scale", "0.01", "simulate"],
    ],
)
def test_options_demo_and_simulate_would_ignore_are_refused(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """Silently ignoring `--base-url` would have a user believe the demo hit their server."""
    assert main(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "does not use" in err or "unrecognized arguments" in err


def test_verbose_and_quiet_together_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-v", "-q", "jobs", "list"]) == ExitCode.USAGE
    assert "--verbose and --quiet" in capsys.readouterr().err


@pytest.mark.anyio
async def test_json_is_accepted_before_or_after_the_subcommand_and_its_action(cli: Any) -> None:
    """`flowmusic jobs list --json` is how people type it."""
    for argv in (
        ("--json", "jobs", "list"),
        ("jobs", "--json", "list"),
        ("jobs", "list", "--json"),
    ):
        result = await cli(*argv)
        assert result.code == 0, result.stderr
        assert json.loads(result.stdout) == {}


@pytest.mark.anyio
async def test_batch_dash_reads_prompts_from_stdin(
    cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`generate-prompts | flowmusic batch -` needs no temporary file (its journal goes in
    the current folder)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("first song\n# a comment\nsecond song\n"))
    result = await cli("--json", "batch", "-", "--progress", "off")
    assert result.code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(d["prompt"] for d in lines if d["type"] == "outcome") == [
        "first song",
        "second song",
    ]
    assert (tmp_path / "flowmusic-batch.journal.db").is_file()


@pytest.mark.anyio
async def test_quiet_prints_results_only(cli: Any, tmp_path: Path) -> None:
    """-q: no progress lines and no notes on stderr, just the summary on stdout."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("one\ntwo\n")
    loud = await cli("batch", str(prompts), "--progress", "plain")
    assert "[2/2]" in loud.stderr
    quiet = await cli("-q", "batch", str(prompts))
    assert quiet.code == 0
    assert quiet.stderr == ""
    assert "2 songs: 2 ok" in quiet.stdout


@pytest.mark.anyio
async def test_real_timing_on_commands_that_do_not_poll_warns_nothing(cli: Any) -> None:
    """`jobs list`, `accounts list` and a wrong token never poll a job: no timing warning.

    They used to print a 300-character warning about loopback timing (test_time_scale_env.py
    has the warning that replaced it, from a poll).
    """
    for argv in (("jobs", "list"), ("accounts", "list")):
        result = await cli(*argv, scaled=False)
        assert result.code == 0 and result.stderr == "", result.stderr
    wrong = await cli("--token", "user:1001-wrongtoken", "jobs", "list", scaled=False)
    assert wrong.code == ExitCode.AUTH and "WARNING" not in wrong.stderr


@pytest.mark.anyio
async def test_verbose_shows_the_library_log_and_restores_it_afterwards(
    cli: Any, sim: Simulator
) -> None:
    """-vv turns on debug records for the run only (the CLI's run leaves no handler behind)."""
    logger = logging.getLogger("flowmusic_async")
    before = (logger.level, list(logger.handlers))
    seen: list[int] = []

    class Probe(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(logger.getEffectiveLevel())

    probe = Probe()
    logger.addHandler(probe)
    sim.faults.error_rate = {"GET /jobs": 1.0}  # retried: the retries log at debug level
    try:
        result = await cli("-vv", "jobs", "list")
    finally:
        logger.removeHandler(probe)
    assert result.code != 0  # every try answered 500
    assert seen and seen[0] == logging.DEBUG
    assert "DEBUG flowmusic_async:" in result.stderr  # the timestamped verbose format
    assert (logger.level, list(logger.handlers)) == before


@pytest.mark.anyio
async def test_a_400_from_the_api_exits_6_not_2() -> None:
    """A script must tell "I typed it wrong" (2) from "the API refused it" (6)."""

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "Parameter prompt is not supported here"})

    stderr = io.StringIO()
    code = await run(
        ["--token", "user:1-t", "jobs", "get", "job:x"],
        transport=httpx.MockTransport(refuse),
        stdout=io.StringIO(),
        stderr=stderr,
    )
    assert code == ExitCode.API_REFUSED and int(code) == 6
    assert "not supported here" in stderr.getvalue()
    assert await run(["generate"], stderr=io.StringIO()) == ExitCode.USAGE


@pytest.mark.anyio
async def test_simulate_on_a_busy_port_is_one_line_and_exit_2() -> None:
    """A taken port is a usage problem, not a crash: no traceback, a hint to pick another."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stdout, stderr = io.StringIO(), io.StringIO()
        code = await run(["simulate", "--port", str(port)], stdout=stdout, stderr=stderr)
    assert code == ExitCode.USAGE
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"flowmusic: error: cannot listen on 127.0.0.1:{port}: ")
    assert "--port" in lines[0]
    assert stdout.getvalue() == ""


@pytest.fixture
def umask() -> Iterator[Any]:
    previous = os.umask(0o022)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(previous)


@pytest.mark.anyio
@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
async def test_downloaded_files_follow_the_umask(
    cli: Any, tmp_path: Path, umask: Any, mask: int, mode: int
) -> None:
    """Songs are ordinary files: shared or private as the user's umask says, not always 0600."""
    umask(mask)
    result = await cli("--json", "generate", "x", "--out", str(tmp_path), "--formats", "m4a")
    assert result.code == 0, result.stderr
    files = [Path(p) for p in json.loads(result.stdout)["files"]]
    assert {p.suffix for p in files} == {".m4a", ".json"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


LONG_URL = "https://media.example.com/" + "a1b2c3d4" * 12 + ".m4a"
LONG_ID = "job:" + "0123456789abcdef" * 5


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("value", [LONG_ID, LONG_URL])
def test_ids_and_urls_are_never_cut_on_a_terminal(wide: bool, value: str) -> None:
    """A jobid cut with an ellipsis cannot be pasted into `flowmusic wait`."""
    stdout = _Terminal()
    Output(stdout=stdout, wide=wide).table(("n", "value"), [("1", value)])
    text = stdout.getvalue()
    assert "…" not in text
    if wide:  # plain columns: the value whole on one line
        assert value in text
    else:  # rich may wrap a long cell, but every character is there, in order
        cells = [line.split("│")[2].strip() for line in text.splitlines() if line.count("│") == 3]
        assert "".join(cells) == value


def test_piped_tables_are_plain_full_width_columns() -> None:
    stdout = io.StringIO()
    Output(stdout=stdout).table(("id", "url"), [(LONG_ID, LONG_URL)])
    assert f"{LONG_ID}  {LONG_URL}" in stdout.getvalue()


def test_wide_keeps_free_text_whole() -> None:
    """--wide shows whole prompts and titles too (the default output shortens them)."""
    prompt = "a very long prompt " * 10
    assert Output(wide=True).short(prompt, 30) == prompt.strip()
    assert len(Output().short(prompt, 30)) == 30


@pytest.mark.anyio
async def test_wait_collects_jobs_submitted_earlier_and_downloads_them(
    cli: Any, sim: Simulator, tmp_path: Path
) -> None:
    """What an interrupted run tells the user to do: `flowmusic wait JOBID... --out DIR`."""
    async with sim.client() as fm:
        first = await fm.submit("one")
        second = await fm.submit("two")
    result = await cli("--json", "wait", first.jobid, second.jobid, "--out", str(tmp_path))
    assert result.code == 0, result.stderr
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["jobid"] for d in docs] == [first.jobid, second.jobid]
    assert all(d["status"] == "completed" for d in docs)
    assert len(list(tmp_path.glob("*.m4a"))) == 4  # two clips each


@pytest.mark.anyio
async def test_wait_for_an_unknown_job_exits_1_and_names_it(cli: Any) -> None:
    result = await cli("wait", "job:nope-user:1001-alpha@example.com-bot:flowmusic")
    assert result.code == ExitCode.FAILED
    assert "job:nope" in result.stderr


def test_sim_client_is_a_flowmusic_with_matching_timing() -> None:
    sim = Simulator(time_scale=0.01)
    fm = sim.client()
    assert isinstance(fm, FlowMusic)
    assert fm.timing == Timing.scaled(0.01)
    assert fm.base_url == sim.base_url
