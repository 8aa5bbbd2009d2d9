"""The CLI's argument parsing, exit-code table, help text and output rendering, without a server."""

from __future__ import annotations

import io
import json

import pytest

from flowmusic_async._cli import main, run
from flowmusic_async._cli._args import formats_list, parse_args
from flowmusic_async._cli._exit import ExitCode, exit_code_for
from flowmusic_async._cli._output import Output
from flowmusic_async._errors import (
    AccountError,
    AuthenticationError,
    InsufficientCreditsError,
    JobTimeout,
    ModeratedError,
    SubmissionUncertain,
    ValidationError,
)


def test_help_epilog_documents_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    """Scripts depend on the exit codes; `flowmusic --help` is where they are promised."""
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for code in ExitCode:
        assert f"\n  {int(code)} " in text
    assert "USEAPI_TOKEN" in text


def test_global_options_work_before_and_after_the_subcommand() -> None:
    """People type `flowmusic jobs list --json` as often as `flowmusic --json jobs list`."""
    before = parse_args(["--json", "--base-url", "http://127.0.0.1:9/v1", "jobs", "list"])
    after = parse_args(["jobs", "--json", "--base-url", "http://127.0.0.1:9/v1", "list"])
    last = parse_args(["jobs", "list", "--json", "--base-url", "http://127.0.0.1:9/v1"])
    for args in (before, after, last):
        assert args.json is True
        assert args.base_url == "http://127.0.0.1:9/v1"
    # Unset: the library decides (FLOWMUSIC_BASE_URL, else the real API).
    assert parse_args(["jobs", "list"]).base_url is None


def test_generate_options_parse_to_music_parameters() -> None:
    """Every generation option of the API is reachable from the command line."""
    args = parse_args(
        [
            "generate",
            "p",
            "--instrumental",
            "--ghostwriter",
            "pro",
            "--ref-image",
            "a",
            "--ref-image",
            "b",
            "--ref-audio",
            "c",
            "--model",
            "lyria-3.5",
            "--email",
            "e@x.com",
            "--out",
            "d",
            "--formats",
            "wav,m4a",
            "--timeout",
            "60",
        ]
    )
    assert args.instrumental is True
    assert args.ref_images == ["a", "b"] and args.ref_audios == ["c"]
    assert args.formats == ("wav", "m4a")
    assert args.timeout == 60.0


@pytest.mark.parametrize(
    "argv",
    [
        ["generate"],
        ["generate", "p", "--formats", "flac"],
        ["generate", "p", "--lyrics", "a", "--lyrics-file", "b"],
        ["batch", "f", "--concurrency", "0"],
        ["simulate", "--account", "nobody:3"],
        ["edit", "explode", "clip"],
        ["frobnicate"],
    ],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Usage errors are exit 2, the same code as a bad input file."""
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_formats_keep_order_and_drop_duplicates() -> None:
    """--formats m4a,wav,m4a downloads each format once, in the order asked."""
    assert formats_list("m4a, WAV ,m4a") == ("m4a", "wav")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ValidationError("prompt", "empty"), ExitCode.USAGE),
        (AuthenticationError("401", status=401), ExitCode.AUTH),
        (InsufficientCreditsError("402", status=402), ExitCode.NO_CREDITS),
        (AccountError("596", status=596), ExitCode.NO_CREDITS),
        (ModeratedError("422", status=422), ExitCode.FAILED),
        (JobTimeout("job:1", email=None, timeout=1.0), ExitCode.FAILED),
        (
            SubmissionUncertain(endpoint="POST /music", client_ref=None, email=None, sent_at=0.0),
            ExitCode.UNCERTAIN,
        ),
    ],
)
def test_error_classes_map_to_documented_exit_codes(error: Exception, code: ExitCode) -> None:
    """One table decides the exit code, so every command agrees."""
    assert exit_code_for(error) == code


def test_output_blanks_secrets_everywhere() -> None:
    """Last line of defence: even a message that contained the token would not print it."""
    stdout, stderr = io.StringIO(), io.StringIO()
    out = Output(secrets=["user:1-abc", None], stdout=stdout, stderr=stderr)
    out.line("token user:1-abc here")
    out.error("bad user:1-abc")
    out.json({"t": "user:1-abc"})
    assert "user:1-abc" not in stdout.getvalue() + stderr.getvalue()
    assert json.loads(stdout.getvalue().splitlines()[-1]) == {"t": "***"}


def test_plain_table_aligns_columns() -> None:
    """Without rich or a terminal, tables are aligned plain text that greps well."""
    stdout = io.StringIO()
    Output(stdout=stdout).table(("a", "bee"), [("long value", 1), (None, "x")])
    assert stdout.getvalue().splitlines() == ["a           bee", "long value  1", "            x"]


@pytest.mark.anyio
async def test_token_from_argument_is_never_echoed_in_usage_errors() -> None:
    """An error about arguments must not quote the token that came with them."""
    stdout, stderr = io.StringIO(), io.StringIO()
    code = await run(
        ["--token", "user:7-TopSecret", "generate", "x", "--lyrics-file", "/nope"],
        stdout=stdout,
        stderr=stderr,
    )
    assert code == 2
    assert "TopSecret" not in stdout.getvalue() + stderr.getvalue()
