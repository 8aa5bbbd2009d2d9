"""The subcommands that talk to the API: one async function each, returning an exit code.

Errors are not caught here: a typed error propagates to `_cli.run`, which prints its message
and maps it to an exit code in one place.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from .._client import FlowMusic
from .._dry_run import estimate_batch
from .._errors import FlowMusicError
from .._models import Clip, Job, Stems
from .._resources import account_of_id
from .._timing import Timing
from . import _render
from ._args import EDIT_PARAM_NAMES, TOKEN_ENV
from ._exit import CommandError, ExitCode, exit_code_for, worst
from ._inputs import read_batch_file
from ._interrupt import Interrupt
from ._output import Output
from ._progress import BatchProgress, showing_progress
from ._runner import error_document, print_summary, run_batch


@dataclass
class Context:
    """What every command gets: parsed arguments, the output, an optional test transport, and
    the interrupt record whose tracker follows the client's jobs (for the Ctrl-C report)."""

    args: argparse.Namespace
    out: Output
    transport: httpx.AsyncBaseTransport | None = None
    interrupt: Interrupt = field(default_factory=Interrupt)

    @property
    def timing(self) -> Timing:
        """The client's timing: --time-scale, else FLOWMUSIC_TIME_SCALE, else the real API's.

        Raises ConfigurationError (exit 2, naming the variable) for an invalid variable.
        """
        scale = self.args.time_scale
        if scale is None:
            return Timing.from_env()
        return Timing() if scale == 1.0 else Timing.scaled(scale)

    def client(self) -> FlowMusic:
        """A FlowMusic client for the token (--token, else USEAPI_TOKEN) and --base-url (else
        FLOWMUSIC_BASE_URL, else the real API), its events followed by the interrupt tracker."""
        token = self.args.token or os.environ.get(TOKEN_ENV)
        if not token:
            raise CommandError(
                f"no API token: set {TOKEN_ENV} (or pass --token); "
                "get one at https://useapi.net/docs/start-here/setup-useapi",
                code=ExitCode.AUTH,
            )
        self.out.add_secret(token)
        return FlowMusic(
            token=token,
            base_url=self.args.base_url,
            transport=self.transport,
            timing=self.timing,
            event_hooks=[self.interrupt.tracker.on_event],
        )


Command = Callable[[Context], Awaitable[ExitCode]]


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {what} from {path}: {exc}") from None


def _music_params(args: argparse.Namespace) -> dict[str, Any]:
    """fm.music.create keywords from the generate options; unset ones left out."""
    params: dict[str, Any] = {
        "instrumental": args.instrumental,
        "lyrics": _read_text(args.lyrics_file, "lyrics") if args.lyrics_file else args.lyrics,
        "ghostwriter": args.ghostwriter,
        "model": args.model,
        "email": args.email,
    }
    if args.ref_images:
        params["ref_images"] = tuple(args.ref_images)
    if args.ref_audios:
        params["ref_audios"] = tuple(args.ref_audios)
    return {k: v for k, v in params.items() if v is not None}


async def generate(ctx: Context) -> ExitCode:
    """One song: submit, wait with live progress, download when --out is given."""
    args = ctx.args
    params = _music_params(args)
    async with ctx.client() as fm, _one_song(ctx, fm) as progress:
        job = await fm.generate(args.prompt, deadline=args.timeout, **params)
        files = await fm.download(job, args.out, formats=args.formats) if args.out else []
        progress.on_outcome(True, resumed=False, text=f"ok: {job.jobid}")
    _render.job(ctx.out, job, files=files)
    return ExitCode.OK


def _one_song(
    ctx: Context, fm: FlowMusic, *, total: int = 1
) -> AbstractAsyncContextManager[BatchProgress]:
    """Progress for a single job (or a few): bars on a terminal; no plain lines unless asked
    for, since the result follows at once."""
    return showing_progress(
        fm,
        ctx.out,
        ctx.args.progress,
        total=total,
        expected_s=ctx.timing.typical_job_seconds,
        plain_by_default=False,
    )


async def batch(ctx: Context) -> ExitCode:
    """Every prompt of a file, as many at once as the accounts allow."""
    args = ctx.args
    items = read_batch_file(args.file, input_format=args.input_format)
    if args.dry_run:
        async with ctx.client() as fm:
            estimate = await estimate_batch(
                fm.accounts, [item.request for item in items], budget=args.budget, timing=ctx.timing
            )
        _render.batch_estimate(ctx.out, estimate)
        return ExitCode.OK
    ctx.interrupt.total = len(items)
    journal = None if args.no_journal else args.journal or default_journal(args.file, args.out)
    if journal is not None:
        # Paid jobs of an interrupted run stay running for the rerun to collect, rather than
        # being cancelled (which frees their slots but refunds nothing).
        ctx.out.note(f"journal: {journal} (run the same command again to resume)")
    ctx.interrupt.journal = journal
    async with ctx.client() as fm:
        summary = await run_batch(
            fm,
            items,
            out=ctx.out,
            progress_mode=args.progress,
            timing=ctx.timing,
            dest=args.out,
            formats=args.formats,
            journal=journal,
            retry_failed=args.retry_failed,
            concurrency=args.concurrency,
            song_timeout=args.timeout,
            budget=args.budget,
        )
    if ctx.out.json_mode:
        ctx.out.json(summary.to_json())
    print_summary(ctx.out, summary, dest=args.out)
    return summary.exit_code


def default_journal(prompts: str, out: str | None) -> str:
    """Where `flowmusic batch` journals unless told otherwise: beside the output folder
    (``songs`` -> ``songs.journal.db``), else beside the prompts file, else (prompts from
    standard input) in the current folder. The same command finds the same journal again."""
    if out:
        folder = Path(out)
        if not folder.name:  # ".": name the folder by its real name
            folder = folder.resolve()
        if folder.name:
            return str(folder.with_name(folder.name + ".journal.db"))
    if prompts != "-":
        return prompts + ".journal.db"
    return "flowmusic-batch.journal.db"


async def wait(ctx: Context) -> ExitCode:
    """Wait for jobs submitted earlier (by this CLI, another process or an interrupted run)."""
    args = ctx.args
    jobids: list[str] = list(dict.fromkeys(args.jobids))
    results: dict[str, Job | FlowMusicError] = {}
    async with ctx.client() as fm, _one_song(ctx, fm, total=len(jobids)) as progress:

        async def one(jobid: str) -> None:
            try:
                job = await fm.wait(jobid, deadline=args.timeout)
            except FlowMusicError as error:
                results[jobid] = error
                progress.on_outcome(False, resumed=False, text=f"failed: {jobid}", jobid=jobid)
                return
            results[jobid] = job
            progress.on_outcome(True, resumed=False, text=f"ok: {jobid}", jobid=jobid)

        async with anyio.create_task_group() as tg:
            for jobid in jobids:
                tg.start_soon(one, jobid)
        files: dict[str, list[Path]] = {}
        for jobid in jobids:
            result = results[jobid]
            if isinstance(result, Job) and args.out:
                files[jobid] = await fm.download(result, args.out, formats=args.formats)
    codes = [ExitCode.OK]
    for jobid in jobids:
        result = results[jobid]
        if isinstance(result, Job):
            _render.job(ctx.out, result, files=files.get(jobid, ()))
        else:
            if ctx.out.json_mode:
                ctx.out.json({"jobid": jobid, "error": error_document(result)})
            ctx.out.error(f"{jobid}: {result}")
            codes.append(exit_code_for(result))
    return worst(codes)


async def jobs(ctx: Context) -> ExitCode:
    """jobs list | get JOBID | cancel JOBID."""
    args = ctx.args
    async with ctx.client() as fm:
        if args.action == "list":
            _render.running_jobs(ctx.out, await fm.jobs.list())
        elif args.action == "get":
            _render.job(ctx.out, await fm.jobs.get(args.jobid))
        else:
            await fm.jobs.cancel(args.jobid)
            _render.simple(
                ctx.out,
                f"cancelled {args.jobid} (credits are not refunded)",
                {"cancelled": args.jobid},
            )
    return ExitCode.OK


async def accounts(ctx: Context) -> ExitCode:
    """accounts list | get | usage | add | set-max-jobs | delete."""
    args = ctx.args
    if args.action == "add":
        ctx.out.add_secret(args.refresh_token)
    async with ctx.client() as fm:
        if args.action == "list":
            _render.accounts(ctx.out, await fm.accounts.list())
        elif args.action == "get":
            _render.account(ctx.out, await fm.accounts.get(args.email))
        elif args.action == "usage":
            _render.usage(ctx.out, await fm.accounts.usage(args.email))
        elif args.action == "add":
            _render.account(
                ctx.out, await fm.accounts.add(args.refresh_token, max_jobs=args.max_jobs)
            )
        elif args.action == "set-max-jobs":
            _render.account(ctx.out, await fm.accounts.set_max_jobs(args.email, args.max_jobs))
        else:
            await fm.accounts.delete(args.email)
            _render.simple(ctx.out, f"deleted {args.email}", {"deleted": args.email})
    return ExitCode.OK


async def lyrics(ctx: Context) -> ExitCode:
    """Lyrics and a sound prompt for a concept, without audio."""
    args = ctx.args
    async with ctx.client() as fm:
        result = await fm.music.lyrics(args.prompt, structure=args.structure, email=args.email)
    _render.lyrics(ctx.out, result)
    return ExitCode.OK


async def edit(ctx: Context) -> ExitCode:
    """An edit of a clip; waits for the new clip(s) and downloads them with --out."""
    args = ctx.args
    params = {name: getattr(args, name) for name in EDIT_PARAM_NAMES}
    params["lyrics"] = _read_text(args.lyrics_file, "lyrics") if args.lyrics_file else args.lyrics
    params["model"] = args.model
    params = {k: v for k, v in params.items() if v is not None}
    async with ctx.client() as fm:
        record: Job | Stems
        targets: list[Job | Clip]
        if args.operation == "stems":
            # Stems are synchronous and return all four clips at once; there is no job to watch.
            record = await fm.music.stems(args.clip)
            targets = list(record.clips)
        else:
            async with _one_song(ctx, fm) as progress:
                record = await fm.edit(args.operation, args.clip, deadline=args.timeout, **params)
                progress.on_outcome(True, resumed=False, text=f"ok: {record.jobid}")
            targets = [record]
        files: list[Path] = []
        if args.out:
            for target in targets:
                files += await fm.download(target, args.out, formats=args.formats)
    _render.job(ctx.out, record, files=files)
    return ExitCode.OK


async def download(ctx: Context) -> ExitCode:
    """A job's clips (by jobid) or one clip (by clip id) into --out."""
    args = ctx.args
    _check_download_id(args.id)
    async with ctx.client() as fm:
        if args.id.startswith("job:"):
            job = await fm.jobs.get(args.id)
            if not job.is_completed:
                state = f"failed ({job.error.code})" if job.error else job.status
                raise CommandError(
                    f"{args.id} is {state}; only a completed job has files", code=ExitCode.FAILED
                )
            files = await fm.download(job, args.out, formats=args.formats)
        else:
            clip = await _find_clip(fm, args.id, needs_urls=set(args.formats) != {"mp3"})
            files = await fm.download(clip, args.out, formats=args.formats)
    if ctx.out.json_mode:
        ctx.out.json({"id": args.id, "files": [str(p) for p in files]})
    else:
        for path in files:
            ctx.out.line(f"wrote {path}")
    return ExitCode.OK


def _check_download_id(some_id: str) -> None:
    """Refuse, before anything is sent, an id that is a mistyped jobid.

    Anything not starting with 'job:' is looked up as a clip (ids are otherwise opaque), so a
    mistyped jobid (`jbo:...`, `Job:...`) used to be searched for as a clip, and the error
    spoke of clips and libraries to someone who had pasted a jobid.
    """
    if some_id.startswith("job:") or "-clip:" in some_id:
        return
    if "job" in some_id.lower() or some_id.endswith("-bot:flowmusic"):
        raise CommandError(
            f"{some_id!r} is not a jobid: a jobid starts with 'job:' "
            "(job:<uuid>-user:<id>-<email>-bot:flowmusic); check it for a typo"
        )


async def _find_clip(fm: FlowMusic, clip_id: str, *, needs_urls: bool) -> Clip:
    """A Clip for a bare clip id. m4a, wav and image need the clip's public URLs, which only
    the library listing (GET /music) has, so the clip's account is searched for it."""
    if not needs_urls:
        return Clip(clip=clip_id)
    async for found in fm.music.iter_all(email=account_of_id(clip_id)):
        if found.clip == clip_id:
            return Clip(
                clip=found.clip,
                title=found.title,
                lyrics=found.lyrics,
                duration_s=found.duration_s,
                audio_url=found.audio_url,
                wav_url=found.wav_url,
                image_url=found.image_url,
            )
    if "-clip:" not in clip_id:  # not shaped like a clip id either: say what ids look like
        raise CommandError(
            f"{clip_id!r} is neither a jobid (job:<uuid>-...-bot:flowmusic) nor a clip id in "
            "the library (user:<id>-<email>-clip:<uuid>); check it for a typo",
            code=ExitCode.FAILED,
        )
    raise CommandError(
        f"clip {clip_id} is not in its account's library, so only mp3 can be fetched by id "
        "(--formats mp3), or download by jobid",
        code=ExitCode.FAILED,
    )


async def status(ctx: Context) -> ExitCode:
    """The capacity snapshot, once or every --watch seconds (a fresh client each time, so that
    other processes' jobs are counted from a new GET /jobs)."""
    args = ctx.args
    shown = 0
    while True:
        async with ctx.client() as fm:
            snapshot = await fm.refresh_capacity()
        _render.capacity(ctx.out, snapshot, clear=args.watch is not None and shown > 0)
        shown += 1
        if args.watch is None or (args.count is not None and shown >= args.count):
            return ExitCode.OK
        await anyio.sleep(args.watch)


COMMANDS: dict[str, Command] = {
    "generate": generate,
    "batch": batch,
    "wait": wait,
    "jobs": jobs,
    "accounts": accounts,
    "lyrics": lyrics,
    "edit": edit,
    "download": download,
    "status": status,
}
