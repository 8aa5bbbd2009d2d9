"""The argparse definition of every `flowmusic` subcommand and option.

Global options (--token, --base-url, --json, --progress) are accepted both before and after
the subcommand: each subparser gets a copy whose default is SUPPRESS, so a value given after
the subcommand wins and one given before it is not overwritten by the subparser's default.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._exit import EPILOG
from ._inputs import GHOSTWRITERS, INPUT_FORMATS, MODELS

FORMATS = ("m4a", "wav", "mp3", "image")
EDIT_OPERATIONS = ("effect", "extend", "replace", "cover", "remix", "stems")
EFFECTS = ("Trim", "Fade", "Gain", "Reverb", "Pan", "Equalizer")
DEFAULT_BASE_URL = "https://api.useapi.net/v1/flowmusic"

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


def account_spec(text: str) -> tuple[str, int]:
    """argparse type for simulate --account EMAIL:MAXJOBS."""
    email, _, jobs = text.rpartition(":")
    if not email or "@" not in email:
        raise argparse.ArgumentTypeError(f"expected EMAIL:MAXJOBS, got {text!r}")
    return email, max_jobs(jobs)


def _add_global_options(
    parser: argparse.ArgumentParser, *, suppress: bool, time_scale: bool = True
) -> None:
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("global options")
    group.add_argument(
        "--token",
        default=default(None),
        help="useapi.net API token (default: $USEAPI_TOKEN; the variable is safer, since "
        "arguments show in the process list). Never printed.",
    )
    group.add_argument(
        "--base-url",
        default=default(DEFAULT_BASE_URL),
        help=f"API base URL (default: {DEFAULT_BASE_URL})",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine-readable output: one JSON document (JSON lines for batch)",
    )
    group.add_argument(
        "--progress",
        choices=("auto", "rich", "plain", "off"),
        default=default("auto"),
        help="live progress on stderr: rich bars when stderr is a terminal and rich is "
        "installed (auto), plain lines, or none",
    )
    if time_scale:  # demo and simulate have their own --time-scale, for the simulator
        group.add_argument(
            "--time-scale",
            type=positive_float,
            default=default(1.0),
            help="scale the client's waits (polling, backoff) to match a simulator started "
            "with the same --time-scale (default: 1, the real API)",
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
    parser = argparse.ArgumentParser(
        prog="flowmusic",
        description="Generate songs with useapi.net's Flow Music API (Google Lyria).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_global_options(sub, suppress=True, time_scale=name not in ("demo", "simulate"))
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
        "'prompt' column), or .json (a list of objects, as useapi's script reads)",
    )
    batch.add_argument(
        "--input-format",
        choices=("auto", *INPUT_FORMATS),
        default="auto",
        help="override detection by extension and content",
    )
    _add_download_options(batch, out_default=None, formats_default="m4a")
    batch.add_argument(
        "--journal", metavar="PATH", help="SQLite journal: run again with the same file to resume"
    )
    batch.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --journal: submit again the songs that failed last time",
    )
    batch.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help="at most N songs in flight (default: every free account slot)",
    )
    _add_timeout(batch)

    jobs = command("jobs", "running jobs: list, get, cancel")
    jobs_sub = jobs.add_subparsers(dest="action", metavar="ACTION", required=True)
    jobs_sub.add_parser("list", help="running jobs per account")
    jobs_sub.add_parser("get", help="one job record").add_argument("jobid")
    jobs_sub.add_parser(
        "cancel", help="cancel a running job (credits are not refunded)"
    ).add_argument("jobid")

    accounts = command(
        "accounts", "Flow Music accounts: list, get, usage, add, set-max-jobs, delete"
    )
    acc_sub = accounts.add_subparsers(dest="action", metavar="ACTION", required=True)
    acc_sub.add_parser("list", help="configured accounts")
    acc_sub.add_parser("get", help="one account, with live balances").add_argument("email")
    acc_sub.add_parser("usage", help="credit usage of an account").add_argument("email")
    add = acc_sub.add_parser("add", help="add or refresh an account from its refresh token")
    add.add_argument("refresh_token", help="the flowmusic.app refresh token (never printed)")
    add.add_argument("--max-jobs", type=max_jobs, metavar="N", help="1-16 songs at once")
    set_max = acc_sub.add_parser("set-max-jobs", help="change an account's maxJobs")
    set_max.add_argument("email")
    set_max.add_argument("max_jobs", type=max_jobs, metavar="N")
    acc_sub.add_parser("delete", help="remove an account").add_argument("email")

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
        "--time-scale", type=positive_float, default=1.0, help="0.01 turns a 100 s song into 1 s"
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

    demo = command("demo", "generate a batch of songs on the embedded simulator (no token)")
    demo.add_argument("--songs", type=positive_int, default=24)
    demo.add_argument("--out", metavar="DIR", default="demo-songs")
    demo.add_argument(
        "--time-scale", type=positive_float, default=0.02, help="0.02: a song takes 0.8-3 s"
    )
    demo.add_argument("--seed", type=int, default=7)
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse a command line; argparse exits with code 2 on bad usage."""
    return build_parser().parse_args(argv)
