"""CLI messages a newcomer meets first: a mistyped option, a missing action, two kinds of
seconds, a mistyped jobid, and the library's "left running" warning in the CLI's words."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest

from flowmusic_async._cli import main, run
from flowmusic_async._cli._interrupt import Interrupt, left_running_in_cli_words
from flowmusic_async.testing import SimAccount, Simulator

SCALE = 0.002


class Result:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr


@pytest.fixture
def sim() -> Simulator:
    return Simulator(accounts=(SimAccount(email="alpha@example.com"),), time_scale=SCALE, seed=1)


@pytest.fixture
def cli(sim: Simulator) -> Any:
    async def invoke(*argv: str) -> Result:
        stdout, stderr = io.StringIO(), io.StringIO()
        prefix = ["--token", sim.token, "--base-url", sim.base_url, "--time-scale", str(SCALE)]
        code = await run([*prefix, *argv], transport=sim.transport(), stdout=stdout, stderr=stderr)
        return Result(code, stdout.getvalue(), stderr.getvalue())

    return invoke


@pytest.fixture(autouse=True)
def _no_token_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A usage test must never reach a real API, whatever the developer's shell exports."""
    for name in ("USEAPI_TOKEN", "FLOWMUSIC_BASE_URL", "FLOWMUSIC_TIME_SCALE"):
        monkeypatch.delenv(name, raising=False)


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


# ----- options and actions ---------------------------------------------------------------------


def test_a_mistyped_option_before_the_command_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    """`--time-scael 0.05 generate` used to report `invalid choice: '0.05'`."""
    err = _usage_error(["--time-scael", "0.05", "generate", "x"], capsys)
    assert "unrecognized option --time-scael (did you mean --time-scale?)" in err
    assert "invalid choice" not in err


def test_a_mistyped_option_after_the_command_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(["generate", "x", "--time-scael", "0.05"], capsys)
    assert "--time-scael" in err and "did you mean --time-scale?" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--time-sc", "0.05", "jobs", "list"],  # the top-level parser
        ["generate", "x", "--instrum"],  # a command's parser
        ["jobs", "list", "--js"],  # an action's parser
    ],
)
def test_abbreviations_are_refused_everywhere(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A prefix is not silently taken for an option: a typo must be named, never guessed."""
    err = _usage_error(argv, capsys)
    abbreviated = next(a for a in argv if a.startswith("--"))
    assert abbreviated in err


def test_a_bad_command_is_still_a_bad_command(capsys: pytest.CaptureFixture[str]) -> None:
    """A real typo of the command (after a known flag) keeps argparse's list of commands."""
    err = _usage_error(["--json", "generte", "x"], capsys)
    assert "invalid choice: 'generte'" in err


@pytest.mark.parametrize(
    ("command", "actions"),
    [
        ("jobs", "list, get, cancel"),
        ("accounts", "list, get, usage, add, set-max-jobs, delete"),
    ],
)
def test_a_command_without_its_action_lists_the_actions(
    command: str, actions: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`flowmusic jobs` used to say only "the following arguments are required: ACTION"."""
    err = _usage_error([command], capsys)
    assert f"which action? one of {actions}" in err
    assert f"flowmusic {command} list" in err


# ----- durations -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_apis_seconds_and_the_wall_clock_are_labelled(cli: Any, tmp_path: Path) -> None:
    """On a simulator a song "in 147.9s" (its clock) beside a run "in 3.6s" (ours) confused."""
    one = await cli("generate", "one")
    assert one.code == 0, one.stderr
    assert "rendered in" in one.stdout and "s (API clock)" in one.stdout
    prompts = tmp_path / "p.txt"
    prompts.write_text("one\ntwo\n")
    batch = await cli("batch", str(prompts), "--progress", "plain")
    assert batch.code == 0, batch.stderr
    assert "s (API clock)" in batch.stderr  # each song's line
    assert "gen time (API)" in batch.stdout  # the summary table's column
    assert "2 songs: 2 ok, 0 failed in " in batch.stdout
    assert "s (wall clock)" in batch.stdout


# ----- download ids ------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "bad", ["jbo:1234-user:1001-alpha@example.com-bot:flowmusic", "Job:1234", "1234-bot:flowmusic"]
)
async def test_download_with_a_mistyped_jobid_talks_about_jobids(
    cli: Any, sim: Simulator, bad: str
) -> None:
    """It used to be searched for as a clip, and the error spoke of clips and libraries."""
    result = await cli("download", bad)
    assert result.code == 2
    assert "is not a jobid: a jobid starts with 'job:'" in result.stderr
    assert "clip" not in result.stderr
    assert sum(sim.stats.requests.values()) == 0  # refused before anything was sent


@pytest.mark.anyio
async def test_download_with_an_id_of_no_known_shape_names_both_kinds(cli: Any) -> None:
    result = await cli("download", "1234abcd")
    assert result.code == 1
    assert "neither a jobid" in result.stderr and "nor a clip id" in result.stderr


# ----- the library's "left running" warning ----------------------------------------------------


def _left_running(jobids: list[str]) -> None:
    logging.getLogger("flowmusic_async").warning(
        "closing with %d job(s) still running, left running (they are paid; resume "
        "with fm.wait(jobid)): %s",
        len(jobids),
        ", ".join(jobids),
        extra={"left_running": jobids},
    )


def test_left_running_is_one_short_line_citing_flowmusic_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Outside an interrupt (the report's job), the warning is the CLI's, not the library's."""
    jobids = [f"job:{i}-user:1-a@example.com-bot:flowmusic" for i in range(5)]
    with caplog.at_level(logging.WARNING, logger="flowmusic_async"):
        with left_running_in_cli_words(Interrupt()):
            _left_running(jobids)
        _left_running(jobids)  # after the CLI run: the library's own words again
    inside, outside = (record.getMessage() for record in caplog.records)
    assert inside.startswith("5 jobs left running (paid); collect with: flowmusic wait ")
    assert all(j in inside for j in jobids[:3]) and jobids[3] not in inside
    assert "(and 2 more)" in inside and "fm.wait" not in inside and "\n" not in inside
    assert "fm.wait" in outside and jobids[4] in outside


def test_left_running_is_left_to_the_interrupt_report(caplog: pytest.LogCaptureFixture) -> None:
    """Interrupted, the report lists each job with `flowmusic wait`: no second list."""
    interrupt = Interrupt(signum=2)
    with (
        caplog.at_level(logging.WARNING, logger="flowmusic_async"),
        left_running_in_cli_words(interrupt),
    ):
        _left_running(["job:1-user:1-a@example.com-bot:flowmusic"])
    assert not caplog.records
