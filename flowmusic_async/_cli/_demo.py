"""`flowmusic demo` and `flowmusic simulate`: the library on the shipped simulator, no token needed.

The demo is the README's first command: it starts the simulator in-process with a few
accounts of different sizes, runs a real batch through the same code as `flowmusic batch`
(scheduler, poller, downloads, progress) at a time scale where a song takes a second or two,
and ends with what a user would want to know: how long it took, how many requests each song
cost, whether anything was throttled, and which files were written.
"""

from __future__ import annotations

from typing import Any

import anyio

from .._download import Format
from .._timing import Timing
from ..testing import SimAccount, Simulator
from ._commands import Context
from ._exit import CommandError, ExitCode
from ._inputs import BatchItem
from ._output import Output
from ._runner import BatchSummary, print_summary, run_batch

# Sizes differ on purpose, so the slot bars show the scheduler filling uneven accounts.
DEMO_ACCOUNTS = (
    ("ada@example.com", 4, "plus"),
    ("grace@example.com", 3, "starter"),
    ("alan@example.com", 3, "starter"),
    ("edsger@example.com", 2, "free"),
)
DEMO_FORMATS: tuple[Format, ...] = ("m4a", "wav")

_STYLES = (
    "lo-fi hip hop, mellow Rhodes piano, vinyl crackle, 80 bpm",
    "warm indie folk ballad, fingerpicked acoustic guitar, soft female vocals, 70 bpm",
    "energetic synthwave, driving analog bass, gated drums, 118 bpm",
    "soulful R&B, lush keys, airy male falsetto, 90 bpm",
    "cinematic orchestral trailer, booming taiko, rising strings",
    "bossa nova, nylon guitar, brushed drums, breathy vocals, 130 bpm",
    "dark techno, rolling 303 bassline, industrial percussion, 132 bpm",
    "bluegrass breakdown, banjo and fiddle trading licks, 150 bpm",
    "dreamy shoegaze, walls of reverb guitar, whispered vocals",
    "afrobeat groove, horn section, polyrhythmic percussion, 104 bpm",
    "solo cello elegy, slow and spacious, concert hall",
    "sunny reggae, offbeat skank guitar, dub echoes, 76 bpm",
    "jazz trio ballad, upright bass, late-night piano, 60 bpm",
    "pop punk anthem, fast power chords, shouted gang vocals, 170 bpm",
    "ambient drone, evolving pads, field recordings of rain",
    "chiptune boss battle, square-wave arpeggios, 160 bpm",
    "flamenco rumba, palmas claps, passionate Spanish vocals",
    "trap beat, rolling hi-hats, 808 slides, moody bells, 140 bpm",
    "baroque harpsichord minuet, playful and ornate",
    "k-pop dance track, glossy synths, bright chorus hook, 124 bpm",
    "delta blues, slide guitar, stomping foot, gravelly voice",
    "drum and bass, liquid pads, fast breakbeats, 174 bpm",
    "Celtic jig, tin whistle, bodhran, 120 bpm",
    "gospel choir crescendo, Hammond organ, handclaps",
)


def demo_items(songs: int) -> list[BatchItem]:
    """`songs` varied requests: every third instrumental, some with the pro ghostwriter,
    one with its own lyrics, cycling through the styles if more are asked for."""
    items = []
    for i in range(songs):
        request: dict[str, Any] = {"prompt": _STYLES[i % len(_STYLES)]}
        if i % 3 == 2:
            request["instrumental"] = True
        elif i % 5 == 1:
            request["ghostwriter"] = "pro"
        elif i == 3:
            request["lyrics"] = "[Verse]\nNeon rivers, midnight train\n[Chorus]\nHold on, hold on"
        if i >= len(_STYLES):
            request["prompt"] += f" (take {i // len(_STYLES) + 1})"
        items.append(BatchItem(line=i + 1, request=request))
    return items


async def demo(ctx: Context) -> ExitCode:
    """Batch-generate songs on the embedded simulator and summarise the run."""
    args = ctx.args
    scale = args.sim_time_scale
    sim = Simulator(
        accounts=tuple(SimAccount(email=e, max_jobs=n, tier=t) for e, n, t in DEMO_ACCOUNTS),
        time_scale=scale,
        seed=args.seed,
    )
    timing = Timing.scaled(scale)
    items = demo_items(args.songs)
    ctx.out.line(
        f"Simulator: {len(DEMO_ACCOUNTS)} accounts, "
        f"{sum(n for _, n, _ in DEMO_ACCOUNTS)} slots, time scale {scale:g} "
        f"(a 95 s song takes {95 * scale:.1f} s; song times below are simulated "
        f"seconds). Generating {len(items)} songs..."
    )
    async with sim.client(timing=timing) as fm:
        summary = await run_batch(
            fm,
            items,
            out=ctx.out,
            progress_mode=args.progress,
            timing=timing,
            dest=args.out,
            formats=DEMO_FORMATS,
            json_lines=False,
        )
    stats = sim.stats.snapshot()
    report = demo_report(summary, stats, out_dir=args.out)
    if ctx.out.json_mode:
        ctx.out.json(report)
    else:
        print_summary(ctx.out, summary, dest=args.out)
        _print_demo_totals(ctx.out, report)
    return summary.exit_code


def demo_report(summary: BatchSummary, stats: dict[str, Any], *, out_dir: str) -> dict[str, Any]:
    """The demo's numbers, as one JSON-able document."""
    requests = _total_requests(stats)
    songs = max(summary.total, 1)
    return {
        "songs": summary.total,
        "ok": summary.ok,
        "failed": summary.failed,
        "makespan_s": round(summary.makespan_s, 3),
        "requests": requests,
        "requests_per_song": round(requests / songs, 2),
        "responses_429": stats.get("responses_429", 0),
        "duplicate_submissions": stats.get("duplicate_submissions", 0),
        "peak_running": stats.get("peak_running", {}),
        "files_written": len(summary.files),
        "out": out_dir,
        "outcomes": [r.to_json() for r in summary.reports],
        "exit_code": int(summary.exit_code),
    }


def _total_requests(stats: dict[str, Any]) -> int:
    # Keys look like "GET /jobs 200"; media fetches (/_sim/media) are downloads, not API calls.
    counted: dict[str, int] = stats.get("requests", {})
    return sum(n for key, n in counted.items() if "/_sim/" not in key)


def _print_demo_totals(out: Output, report: dict[str, Any]) -> None:
    out.table(
        ("measure", "value"),
        [
            ("songs", f"{report['ok']} ok, {report['failed']} failed"),
            ("makespan", f"{report['makespan_s']:.1f} s"),
            (
                "API requests per song",
                f"{report['requests_per_song']:.1f} "
                f"({report['requests']} in all, polling included)",
            ),
            ("429 responses", report["responses_429"]),
            (
                "peak jobs per account",
                ", ".join(
                    f"{e.split('@')[0]} {n}" for e, n in sorted(report["peak_running"].items())
                ),
            ),
            ("files written", f"{report['files_written']} in {report['out']}"),
        ],
        title="Demo summary",
        header=False,
    )


async def simulate(ctx: Context) -> ExitCode:
    """Serve the simulator on a real socket until Ctrl-C; print how to point a client at it."""
    args = ctx.args
    scale = args.sim_time_scale
    accounts = args.account or [(e, n) for e, n, _ in DEMO_ACCOUNTS]
    sim = Simulator(
        accounts=tuple(SimAccount(email=e, max_jobs=n, credits=args.credits) for e, n in accounts),
        time_scale=scale,
        seed=args.seed,
    )
    try:
        async with sim.serve(host=args.host, port=args.port) as base_url:
            _announce(ctx, sim, base_url, accounts, scale)
            await anyio.sleep_forever()
    except BaseException as exc:
        # A socket that cannot be bound (port taken, no such address) is a usage problem:
        # one line, exit 2. sleep_forever() raises nothing else but cancellation.
        error = _unwrap(exc)
        if isinstance(error, OSError):
            reason = error.strerror or str(error)
            hint = "; pick another --port (0 picks a free one)" if args.port else ""
            raise CommandError(
                f"cannot listen on {args.host}:{args.port}: {reason}{hint}", code=ExitCode.USAGE
            ) from None
        raise
    return ExitCode.OK  # not reached: sleep_forever ends only by cancellation


def _announce(
    ctx: Context, sim: Simulator, base_url: str, accounts: list[tuple[str, int]], scale: float
) -> None:
    """How to point a client at the simulator: the environment and a first command."""
    # The simulator's own token is printed on purpose: it is not a secret, and the point
    # of this command is to hand it to another client.
    if ctx.out.json_mode:
        ctx.out.json(
            {
                "base_url": base_url,
                "token": sim.token,
                "accounts": dict(accounts),
                "time_scale": scale,
            }
        )
        return
    ctx.out.line(f"Flow Music simulator listening on {base_url}")
    ctx.out.line(f"  accounts:   {', '.join(f'{e} (maxJobs {n})' for e, n in accounts)}")
    ctx.out.line(f"  time scale: {scale:g}")
    ctx.out.line("Point a client at it (the library and the CLI read these variables):")
    ctx.out.line(f"  export USEAPI_TOKEN='{sim.token}'")
    ctx.out.line(f"  export FLOWMUSIC_BASE_URL='{base_url}'")
    # The client's waits must match the simulator's clock, or a 1-second song is noticed
    # only at the real API's first look (20 s). At scale 1 the default timing is right.
    ctx.out.line(f"  export FLOWMUSIC_TIME_SCALE='{scale:g}'")
    ctx.out.line("  flowmusic generate 'lo-fi piano'")
    ctx.out.line("Press Ctrl-C to stop.")


def _unwrap(error: BaseException) -> BaseException:
    # The server's task group wraps a bind error in an exception group of one.
    while True:
        inner = getattr(error, "exceptions", None)
        if not (isinstance(inner, tuple) and len(inner) == 1):
            return error
        error = inner[0]
