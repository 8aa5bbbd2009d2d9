"""The argparse definition of every `flowmusic` subcommand and option.

Global options (--token, --base-url, --json, --progress, -v, -q, ...) are accepted both before
and after the subcommand: each subparser gets a hidden copy whose default is SUPPRESS, so a
value given after the subcommand wins and one given before it is not overwritten by the
subparser's default. `flowmusic --help` lists them once; a subcommand's help lists its own.
"""

from __future__ import annotations

import argparse
import difflib
import math
import platform
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .._version import __version__
from ._exit import EPILOG, SUB_EPILOG
from ._inputs import GHOSTWRITERS, INPUT_FORMATS, MODELS

FORMATS = ("m4a", "wav", "mp3", "image")
EDIT_OPERATIONS = ("effect", "extend", "replace", "cover", "remix", "stems")
EFFECTS = ("Trim", "Fade", "Gain", "Reverb", "Pan", "Equalizer")
DEFAULT_BASE_URL = "https://api.useapi.net/v1/flowmusic"
TOKEN_ENV = "USEAPI_TOKEN"
BASE_URL_ENV = "FLOWMUSIC_BASE_URL"

# Edit parameters: (flag, API field name, type, help). All optional on the command line; the
# client's validation says which operation needs which.
_EDIT_PARAMS: tuple[tuple[str, str, type, str], ...] = (
    ("--effect", "effect", str, f"effect: one of {', '.join(EFFECTS)}"),
    ("--start-s", "start_s", float, "Trim: start second"),
    ("--end-s", "end_s", float, "Trim: end second"),
    ("--fade-in-s", "fade_in_s", float, "Fade: fade-in seconds"),
    ("--fade-out-s", "fade_out_s", float, "Fade: fade-out seconds"),
    ("--gain-db", "gain_db", float, "Gain: -30..30 dB"),
    ("--mix", "mix", float, "Reverb: wet mix 0..1"),
    ("--room-size", "room_size", float, "Reverb: room size 0..1"),
    ("--pan", "pan", float, "Pan: -1 (left) .. 1 (right)"),
    ("--bass-db", "bass_db", float, "Equalizer: -12..12 dB"),
    ("--mid-db", "mid_db", float, "Equalizer: -12..12 dB"),
    ("--treble-db", "treble_db", float, "Equalizer: -12..12 dB"),
    ("--instruction", "instruction", str, "extend/replace/cover: what to do"),
    ("--extend-s", "extend_s", float, "extend: seconds to add (1..300)"),
    ("--extend-from-s", "extend_from_s", float, "extend: continue from this second"),
    ("--mask-start-s", "mask_start_s", float, "replace: window start second"),
    ("--mask-end-s", "mask_end_s", float, "replace: window end second"),
    ("--strength", "strength", float, "cover: 0..1, distance from the source"),
    ("--prompt", "prompt", str, "remix: replacement sound prompt"),
    ("--seed", "seed", int, "fix the result for reproducibility"),
    ("--title", "title", str, "title of the new clip"),
)
EDIT_PARAM_NAMES: tuple[str, ...] = tuple(name for _, name, _, _ in _EDIT_PARAMS)


def formats_list(text: str) -> tuple[str, ...]:
    """argparse type for --formats: a comma-separated subset of FORMATS, order kept."""
    chosen = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(FORMATS)}; got {text!r}"
        )
    return chosen


def positive_int(text: str) -> int:
    """argparse type for counts that must be at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def max_jobs(text: str) -> int:
    """argparse type for an account's maxJobs (1-16 per the API)."""
    value = positive_int(text)
    if value > 16:
        raise argparse.ArgumentTypeError(f"maxJobs runs from 1 to 16, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type for durations and time scales."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {value}")
    return value


def credits_amount(text: str) -> float:
    """argparse type for a number of credits: finite and at least 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of credits, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number of credits >= 0, got {text}")
    return value


def account_spec(text: str) -> tuple[str, int]:
    """argparse type for simulate --account EMAIL:MAXJOBS."""
    email, _, jobs = text.rpartition(":")
    if not email or "@" not in email:
        raise argparse.ArgumentTypeError(f"expected EMAIL:MAXJOBS, got {text!r}")
    return email, max_jobs(jobs)


# Which global options each command uses; the others are refused rather than silently ignored.
GLOBAL_OPTIONS = ("token", "base_url", "json", "progress", "time_scale", "verbose", "quiet", "wide")
_LOCAL_ONLY = {
    # The embedded simulator needs no token or URL, and has its own --time-scale.
    "demo": ("json", "progress", "verbose", "quiet", "wide"),
    # A server: it prints its address and serves, no progress and no tables.
    "simulate": ("json", "verbose", "quiet"),
}
_OPTION_FLAGS = {
    "token": "--token",
    "base_url": "--base-url",
    "json": "--json",
    "progress": "--progress",
    "time_scale": "--time-scale",
    "verbose": "--verbose",
    "quiet": "--quiet",
    "wide": "--wide",
}


class _Parser(argparse.ArgumentParser):
    """argparse with the messages a newcomer needs.

    Abbreviations are off (`--time-sc` is not `--time-scale`: a typo must be named, not
    guessed). A command that needs an action (`jobs`, `accounts`) lists them when none is
    given. An unknown option before the command (`--time-scael 0.05 generate`) is named as
    such, rather than its value being reported as an invalid command.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.action_names: tuple[str, ...] = ()  # set on `jobs` and `accounts`
        self.argv: list[str] = []  # the command line being parsed (top-level parser only)

    def error(self, message: str) -> NoReturn:
        if self.action_names and "required: ACTION" in message:
            message = (
                f"which action? one of {', '.join(self.action_names)} "
                f"(e.g. `{self.prog} {self.action_names[0]}`; `{self.prog} --help` for all)"
            )
        elif message.startswith("argument COMMAND: invalid choice:"):
            message = self._unknown_option_before(message)
        elif message.startswith("unrecognized arguments:"):
            message += self._did_you_mean(message.split(":", 1)[1].split())
        super().error(message)

    def _did_you_mean(self, tokens: list[str]) -> str:
        """A hint for a mistyped global option (the only options this parser knows)."""
        for token in tokens:
            if token.startswith("--"):
                known = [flag for flag in self._option_string_actions if flag.startswith("--")]
                close = difflib.get_close_matches(token.split("=", 1)[0], known, n=1)
                return f" (did you mean {close[0]}?)" if close else ""
        return ""

    def _unknown_option_before(self, message: str) -> str:
        """`--typo VALUE COMMAND`: argparse took VALUE for the command; name the typo instead."""
        for index, token in enumerate(self.argv[1:], start=1):
            previous = self.argv[index - 1]
            if token.startswith("-") or not previous.startswith("-"):
                continue
            name = previous.split("=", 1)[0]
            # A subclass reading its own base's table of option strings.
            if name in self._option_string_actions:
                break  # a known option: VALUE really is a bad command
            return f"unrecognized option {name}{self._did_you_mean([name])}"
        return message


def _add_global_options(
    parser: argparse.ArgumentParser, *, top: bool, only: Sequence[str] = GLOBAL_OPTIONS
) -> None:
    """The global options: listed in the top-level help; hidden copies on each subcommand.

    The copies default to SUPPRESS, so a value given after the subcommand wins and one given
    before it is not overwritten; they are hidden so that each subcommand's help shows its
    own options only. Top-level defaults are None where "not given" must be told apart.
    """
    group = (
        parser.add_argument_group("global options (before or after the command)") if top else None
    )

    def add(name: str, *flags: str, help_text: str, top_default: object, **kwargs: Any) -> None:
        if name not in only:
            return
        if group is not None:
            group.add_argument(*flags, default=top_default, help=help_text, **kwargs)
        else:
            parser.add_argument(*flags, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)

    add(
        "token",
        "--token",
        help_text=f"useapi.net API token (default: ${TOKEN_ENV}; the variable is safer, since "
        "arguments show in the process list). Never printed.",
        top_default=None,
    )
    add(
        "base_url",
        "--base-url",
        help_text=f"API base URL (default: ${BASE_URL_ENV}, else {DEFAULT_BASE_URL})",
        top_default=None,
    )
    add(
        "json",
        "--json",
        action="store_true",
        help_text="machine-readable output: one JSON document (JSON lines for batch)",
        top_default=False,
    )
    add(
        "progress",
        "--progress",
        choices=("auto", "rich", "plain", "off"),
        help_text="live progress on stderr: rich bars when stderr is a terminal and rich is "
        "installed (auto, the default), plain lines, or none",
        top_default=None,
    )
    add(
        "time_scale",
        "--time-scale",
        type=positive_float,
        metavar="SCALE",
        help_text="scale the client's waits (polling, backoff) to match a simulator started "
        "with the same --time-scale (default: $FLOWMUSIC_TIME_SCALE, else 1, the real API)",
        top_default=None,
    )
    add(
        "verbose",
        "-v",
        "--verbose",
        action="count",
        help_text="show the library's log on stderr: -v info, -vv debug",
        top_default=0,
    )
    add(
        "quiet",
        "-q",
        "--quiet",
        action="store_true",
        help_text="results and errors only: no progress, notes or warnings",
        top_default=False,
    )
    add(
        "wide",
        "--wide",
        action="store_true",
        help_text="tables as plain columns at full width, no text shortened (the default when "
        "stdout is not a terminal); ids and URLs are never shortened in any mode",
        top_default=False,
    )


def _add_music_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--instrumental", action="store_true", default=None, help="no vocals")
    lyrics = parser.add_mutually_exclusive_group()
    lyrics.add_argument("--lyrics", help="lyrics to sing, ideally [Verse]/[Chorus] tagged")
    lyrics.add_argument("--lyrics-file", metavar="PATH", help="read the lyrics from a file")
    parser.add_argument(
        "--ghostwriter", choices=GHOSTWRITERS, help="lyric writer when the model writes the lyrics"
    )
    parser.add_argument(
        "--ref-image",
        action="append",
        default=[],
        metavar="ASSET_ID",
        dest="ref_images",
        help="image asset id as a style hint (repeatable)",
    )
    parser.add_argument(
        "--ref-audio",
        action="append",
        default=[],
        metavar="ASSET_ID",
        dest="ref_audios",
        help="audio asset id as a reference (repeatable)",
    )
    parser.add_argument("--model", choices=MODELS, help="default: the API's (lyria-3-pro)")
    parser.add_argument("--email", help="run on this account (default: any with a free slot)")


def _add_download_options(
    parser: argparse.ArgumentParser, *, out_default: str | None, formats_default: str = "m4a"
) -> None:
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=out_default,
        help="write audio and a .json sidecar per clip here"
        + ("" if out_default else " (default: print the URLs only)"),
    )
    parser.add_argument(
        "--formats",
        type=formats_list,
        default=formats_list(formats_default),
        help=f"comma-separated, from {','.join(FORMATS)} (default: {formats_default})",
    )


def _add_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        help="give up waiting for a job after this long (the job keeps running)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The full `flowmusic` parser."""
    parser = _Parser(
        prog="flowmusic",
        description="Generate songs with useapi.net's Flow Music API (Google Lyria).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"flowmusic {__version__} (Python {platform.python_version()})",
    )
    _add_global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=SUB_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_global_options(sub, top=False, only=_LOCAL_ONLY.get(name, GLOBAL_OPTIONS))
        return sub

    def action(actions: Any, name: str, help_text: str) -> argparse.ArgumentParser:
        # Actions of `jobs` and `accounts` take the global options too (`jobs list --json`).
        sub: argparse.ArgumentParser = actions.add_parser(
            name, help=help_text, description=help_text, epilog=SUB_EPILOG
        )
        _add_global_options(sub, top=False)
        return sub

    generate = command("generate", "generate one song and wait for it")
    generate.add_argument("prompt", help="style, mood, genre, instruments, tempo, vocals")
    _add_music_options(generate)
    _add_download_options(generate, out_default=None)
    _add_timeout(generate)

    batch = command(
        "batch", "generate every song of a batch file, as many at once as the accounts allow"
    )
    batch.add_argument(
        "file",
        help="prompts: .txt (one per line), .jsonl, .csv/.tsv (a "
        "'prompt' column), or .json (a list of objects, as useapi's script reads); "
        "- reads standard input (format detected from the content)",
    )
    batch.add_argument(
        "--input-format",
        choices=("auto", *INPUT_FORMATS),
        default="auto",
        help="override detection by extension and content",
    )
    _add_download_options(batch, out_default=None, formats_default="m4a")
    journal = batch.add_mutually_exclusive_group()
    journal.add_argument(
        "--journal",
        metavar="PATH",
        help="SQLite journal: run again with the same file to resume (default: beside the "
        "--out folder, else beside the prompts file, named on the first line of output)",
    )
    journal.add_argument(
        "--no-journal",
        action="store_true",
        help="keep no journal: an interrupted run then cancels its running jobs, and the API "
        "does not refund them",
    )
    batch.add_argument(
        "--retry-failed",
        action="store_true",
        help="submit again the songs that failed in an earlier run of the journal",
    )
    batch.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help="at most N songs in flight (default: every free account slot)",
    )
    batch.add_argument(
        "--dry-run",
        action="store_true",
        help="validate every request and estimate the cost, the balances and the time the "
        "batch would take; sends nothing that costs credits",
    )
    batch.add_argument(
        "--budget",
        type=credits_amount,
        metavar="CREDITS",
        help="the most credits the batch may spend (compared with the estimate by --dry-run)",
    )
    _add_timeout(batch)

    jobs = command("jobs", "running jobs: list, get, cancel")
    jobs_sub = jobs.add_subparsers(dest="action", metavar="ACTION", required=True)
    _set_action_names(jobs, ("list", "get", "cancel"))
    action(jobs_sub, "list", "running jobs per account")
    action(jobs_sub, "get", "one job record").add_argument("jobid")
    action(jobs_sub, "cancel", "cancel a running job (credits are not refunded)").add_argument(
        "jobid"
    )

    wait = command(
        "wait", "wait for jobs already submitted (by anyone, e.g. an interrupted run) to finish"
    )
    wait.add_argument("jobids", nargs="+", metavar="JOBID")
    _add_download_options(wait, out_default=None)
    _add_timeout(wait)

    accounts = command(
        "accounts", "Flow Music accounts: list, get, usage, add, set-max-jobs, delete"
    )
    acc_sub = accounts.add_subparsers(dest="action", metavar="ACTION", required=True)
    _set_action_names(accounts, ("list", "get", "usage", "add", "set-max-jobs", "delete"))
    action(acc_sub, "list", "configured accounts")
    action(acc_sub, "get", "one account, with live balances").add_argument("email")
    action(acc_sub, "usage", "credit usage of an account").add_argument("email")
    add = action(acc_sub, "add", "add or refresh an account from its refresh token")
    add.add_argument("refresh_token", help="the flowmusic.app refresh token (never printed)")
    add.add_argument("--max-jobs", type=max_jobs, metavar="N", help="1-16 songs at once")
    set_max = action(acc_sub, "set-max-jobs", "change an account's maxJobs")
    set_max.add_argument("email")
    set_max.add_argument("max_jobs", type=max_jobs, metavar="N")
    action(acc_sub, "delete", "remove an account").add_argument("email")

    lyrics = command("lyrics", "write lyrics (and a matching sound prompt) without audio")
    lyrics.add_argument("prompt", help="the song concept")
    lyrics.add_argument("--structure", help="free-text section layout")
    lyrics.add_argument("--email", help="run on this account")

    edit = command("edit", "edit a clip: effect, extend, replace, cover, remix, stems")
    edit.add_argument("operation", choices=EDIT_OPERATIONS)
    edit.add_argument("clip", help="clip id (from a job, GET /music, or stems)")
    for flag, name, kind, help_text in _EDIT_PARAMS:
        edit.add_argument(flag, dest=name, type=kind, help=help_text)
    edit_lyrics = edit.add_mutually_exclusive_group()
    edit_lyrics.add_argument("--lyrics", help="remix: the new lyrics")
    edit_lyrics.add_argument("--lyrics-file", metavar="PATH", help="remix: read lyrics from a file")
    edit.add_argument("--model", choices=MODELS, help="extend/replace/cover/remix")
    _add_download_options(edit, out_default=None)
    _add_timeout(edit)

    download = command("download", "download a finished job's clips, or one clip")
    download.add_argument("id", metavar="ID_OR_JOBID", help="a jobid (all its clips) or a clip id")
    _add_download_options(download, out_default=".")

    simulate = command("simulate", "serve the Flow Music simulator over HTTP until Ctrl-C")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    simulate.add_argument(
        "--time-scale",
        dest="sim_time_scale",
        metavar="SCALE",
        type=positive_float,
        default=1.0,
        help="0.01 turns a 100 s song into 1 s",
    )
    simulate.add_argument(
        "--account",
        action="append",
        type=account_spec,
        default=[],
        metavar="EMAIL:MAXJOBS",
        help="a simulated account (repeatable)",
    )
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument(
        "--credits", type=positive_float, default=1000.0, help="credits per simulated account"
    )

    status = command(
        "status", "what the account slots are doing: ours, other processes', free, health"
    )
    status.add_argument(
        "--watch",
        type=positive_float,
        metavar="SECONDS",
        help="show it again every SECONDS until Ctrl-C (one screen on a terminal)",
    )
    status.add_argument(
        "--count", type=positive_int, metavar="N", help="with --watch: stop after N screens"
    )

    demo = command("demo", "generate a batch of songs on the embedded simulator (no token)")
    demo.add_argument("--songs", type=positive_int, default=24)
    demo.add_argument("--out", metavar="DIR", default="demo-songs")
    demo.add_argument(
        "--time-scale",
        dest="sim_time_scale",
        metavar="SCALE",
        type=positive_float,
        default=0.02,
        help="0.02: a song takes 0.8-3 s",
    )
    demo.add_argument("--seed", type=int, default=7)
    return parser


def _set_action_names(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    assert isinstance(parser, _Parser)  # every subparser is one (argparse copies the class)
    parser.action_names = names


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse a command line; argparse exits with code 2 on bad usage.

    Refuses global options a command would ignore (`flowmusic --token T demo`), and fills in
    the defaults of those left unset: progress "auto" (or "off" with --quiet). The time scale
    stays None when not given: the client then reads FLOWMUSIC_TIME_SCALE.
    """
    parser = build_parser()
    assert isinstance(parser, _Parser)
    parser.argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    local = _LOCAL_ONLY.get(args.command)
    if local is not None:
        ignored = [
            _OPTION_FLAGS[name]
            for name in GLOBAL_OPTIONS
            if name not in local and getattr(args, name) not in (None, False, 0)
        ]
        if ignored:
            parser.error(f"{args.command} does not use {', '.join(ignored)}")
    if args.verbose and args.quiet:
        parser.error("--verbose and --quiet cannot be used together")
    if args.progress is None:
        args.progress = "off" if args.quiet else "auto"
    return args
