"""The simulated world: accounts, jobs, clips and assets, with credits and per-account capacity.

A job's status is never stored: it is derived from the clock whenever it is read (created, ends,
and whether it will fail or was cancelled are fixed at submission). Capacity is the set of an
account's jobs whose end is still ahead, pruned when read, so every request costs O(running jobs).
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ._clock import Bell, Clock
from ._faults import Faults
from ._stats import JobTimes, SimStats
from ._wire import ApiError, account_error, bad_request, forbidden, not_found

# docs/api-notes.md#q7-default-maxjobs: per-tier default maxJobs is not documented (example: plus ->
# 12).
TIER_MAX_JOBS = {"free": 2, "starter": 4, "plus": 12, "member": 16, "unknown": 4}
TIERS = tuple(TIER_MAX_JOBS)
MAX_ACCOUNTS = 50
TOKENS_PER_CREDIT = 12
# What each operation costs unless the simulator is told otherwise. A song's price in credits is
# not documented; extend/replace/cover/remix cost one generation, effect and stems nothing
# (docs/api-notes.md#q31-edit-costs), lyrics nothing (docs/api-notes.md#q24-lyrics-cost).
OPERATIONS = ("song", "extend", "replace", "cover", "remix", "effect", "stems", "lyrics")
PRICED_LIKE_A_SONG = ("song", "extend", "replace", "cover", "remix")


def operation_costs(song_credits: float, overrides: Mapping[str, float]) -> dict[str, float]:
    """Credits per operation: `song_credits` for a song and the edits priced like one, 0 for
    the rest, then `overrides` (unknown operations and negative costs are refused)."""
    unknown = set(overrides) - set(OPERATIONS)
    if unknown:
        raise ValueError(f"unknown operations {sorted(unknown)}; known: {list(OPERATIONS)}")
    costs = {op: (song_credits if op in PRICED_LIKE_A_SONG else 0.0) for op in OPERATIONS}
    costs.update({op: float(credits) for op, credits in overrides.items()})
    if any(not math.isfinite(c) or c < 0 for c in costs.values()):
        raise ValueError("operation costs must be finite and >= 0")
    return costs


MODERATION_CODE = "moderation_reject"
# The POST /music page's words (seed-post-music.txt), sent verbatim.
MODERATION_MESSAGE = "the model declined to generate audio for this prompt"
NO_CREDITS_MESSAGE = (
    'FlowMusic conversation failed (402): {"detail":"User has insufficient credits"}'
)
ACCOUNT_BUSY_MESSAGE = 'FlowMusic conversation failed (429): {"detail":"Too Many Requests"}'
# The seed shows the dash as mojibake ("β"): its UTF-8 bytes e2 80 94 are an EM DASH, U+2014.
ALL_BUSY_MESSAGE = (
    "All {n} FlowMusic accounts are at their maxJobs concurrency limit \u2014 retry shortly"
)
NO_ACCOUNT_MESSAGE = "No FlowMusic accounts configured, add one with POST /accounts"
TOKEN_ERROR = "refresh token rejected"


@dataclass(frozen=True, kw_only=True)
class SimAccount:
    """A Flow Music account configured in the simulator.

    Args:
        email: the account key.
        max_jobs: concurrent jobs (1-16).
        credits: Flow Music credits; each paid operation spends its cost, then 402.
        tier: free, starter, plus, member or unknown.
        error: when set, the account is in error state with this reason (596).
        refresh_token: a token that POST /accounts maps to this account (re-adding it clears
            `error`); other tokens derive a stable email of their own.
    """

    email: str
    max_jobs: int = 4
    credits: float = 1000.0
    tier: str = "plus"
    error: str | None = None
    refresh_token: str | None = None


@dataclass(eq=False)
class UsageRow:
    type: str
    conversation_id: str
    title: str
    day: float
    amount: float
    last: float


@dataclass(eq=False)
class AccountState:
    email: str
    max_jobs: int
    credits: float
    tier: str
    error: str | None
    refresh_token: str
    user_id: str
    session_id: str
    added: float
    refreshed_at: float
    refreshed_count: int = 1
    accepted: int = 0
    active: dict[str, Job] = field(default_factory=dict)
    usage: dict[tuple[str, str, float], UsageRow] = field(default_factory=dict)


@dataclass(eq=False)
class ClipRec:
    clip_id: str
    name: str  # the uuid; names its media files
    email: str
    uid: str
    title: str | None
    duration_s: float
    lyrics: str | None
    lyrics_timing: list[list[float]] | None
    seed: int
    prompt: str
    ready: float  # simulated time the clip appears (its job's end)
    hidden: bool = False  # its job was cancelled


@dataclass(frozen=True)
class ClipDraft:
    """A clip as the model makes it, before ids and times are assigned."""

    title: str | None
    duration_s: float
    lyrics: str | None
    lyrics_timing: list[list[float]] | None
    seed: int
    prompt: str


@dataclass(eq=False)
class Job:
    jobid: str
    uid: str
    email: str
    operation: str | None
    request: dict[str, Any]
    created: float
    ends: float
    failure: tuple[str, str] | None
    clips: list[ClipRec]
    origin: str
    reply_url: str | None = None
    reply_ref: str | None = None
    cancelled_at: float | None = None
    webhook_sent: bool = False
    refused: bool = False  # declined by moderation: renders, then ends failed; nothing charged

    def end_time(self) -> float:
        return self.cancelled_at if self.cancelled_at is not None else self.ends

    def running(self, now: float) -> bool:
        return self.cancelled_at is None and now < self.ends

    def status(self, now: float) -> str:
        if self.running(now):
            return "pending"
        return "failed" if self.error() is not None else "completed"

    def error(self) -> tuple[str, str] | None:
        if self.cancelled_at is not None:
            return ("user_cancelled", "Job cancelled by user")
        return self.failure


@dataclass(eq=False)
class Asset:
    asset_id: str
    name: str
    email: str
    uid: str
    kind: str  # "image" or "audio"
    ext: str


@dataclass(eq=False)
class Stems:
    job: Job
    ready: float


class World:
    """Everything the API stores, plus the rules that decide who may run what."""

    def __init__(
        self,
        *,
        accounts: Iterable[SimAccount],
        tokens: Iterable[str],
        clock: Clock,
        seed: int,
        moderate: Callable[[str], bool],
        job_failure_rate: float,
        costs: Mapping[str, float],
        retention_s: float,
        retry_after_s: float | None,
        faults: Faults,
        stats: SimStats,
    ) -> None:
        self.clock = clock
        self.bell: Bell = Bell()
        self.seed = seed
        self.moderate = moderate
        self.job_failure_rate = job_failure_rate
        self.costs: dict[str, float] = dict(costs)
        self.retention_s = retention_s
        self.retry_after_s = retry_after_s
        self.faults = faults
        self.stats = stats
        self.tokens: dict[str, str] = {token: _uid_of_token(token) for token in tokens}
        self.accounts: dict[str, AccountState] = {}
        self.library: dict[str, list[ClipRec]] = {}  # email -> clips, oldest first
        self.clips: dict[str, ClipRec] = {}
        self.media: dict[str, ClipRec | Asset] = {}
        self.assets: dict[str, Asset] = {}
        self.jobs: dict[str, Job] = {}
        self.stems: dict[str, Stems] = {}
        self.refresh_emails: dict[str, str] = {}  # refresh token -> email, survives deletes
        self.on_job_end: Callable[[Job], None] = lambda job: None  # webhook scheduling
        self._rng = random.Random(f"world:{seed}")
        self._job_count = 0
        self._seen_bodies: set[bytes] = set()
        self._errors_tripped: set[str] = set()  # accounts `account_error_after` has broken
        for acct in accounts:
            self.add_account(acct)

    # ids -------------------------------------------------------------------------------------

    def new_uuid(self, rng: random.Random | None = None) -> str:
        return str(uuid.UUID(int=(rng or self._rng).getrandbits(128), version=4))

    # accounts --------------------------------------------------------------------------------

    def add_account(self, cfg: SimAccount) -> AccountState:
        now = self.clock.now()
        token = cfg.refresh_token or hashlib.sha256(cfg.email.encode()).hexdigest()
        acct = AccountState(
            email=cfg.email,
            max_jobs=cfg.max_jobs,
            credits=cfg.credits,
            tier=cfg.tier,
            error=cfg.error,
            refresh_token=token,
            user_id=self.new_uuid(),
            session_id=self.new_uuid(),
            added=now,
            refreshed_at=now,
        )
        grant = UsageRow(
            "grant",
            self.new_uuid(),
            "Credit grant",
            _day(now),
            cfg.credits * TOKENS_PER_CREDIT,
            now,
        )
        acct.usage[(grant.type, grant.conversation_id, grant.day)] = grant
        self.accounts[cfg.email] = acct
        self.refresh_emails[token] = cfg.email
        self.library.setdefault(cfg.email, [])
        return acct

    def trip_account_errors(self) -> None:
        """Fault `account_error_after`: an account that has accepted N jobs turns to error state.

        Checked after every accepted job and before every request is answered, so N = 0 means
        at once (before any job), not after the first. It fires once per account: re-adding
        the account (POST /accounts) heals it for good, as the real API's re-add does.
        """
        limits = self.faults.account_error_after
        if not limits:
            return
        for email, limit in limits.items():
            acct = self.accounts.get(email)
            if acct is None or email in self._errors_tripped or acct.accepted < limit:
                continue
            self._errors_tripped.add(email)
            if acct.error is None:
                acct.error = TOKEN_ERROR

    def account(self, email: str) -> AccountState:
        acct = self.accounts.get(email)
        if acct is None:
            # docs/api-notes.md#q28-unknown-account: an email that is not configured -> 404.
            raise not_found(f"Account {email} not found")
        return acct

    def healthy(self, acct: AccountState) -> AccountState:
        if acct.error is not None:
            raise account_error(acct.email, acct.error)
        return acct

    def running(self, acct: AccountState) -> int:
        now = self.clock.now()
        done = [jobid for jobid, job in acct.active.items() if not job.running(now)]
        for jobid in done:
            del acct.active[jobid]
        return len(acct.active)

    def any_account(self, email: str | None) -> AccountState:
        """The named account, or the first healthy one (non-job endpoints), checked for 596.

        An empty `email` counts as omitted, on every endpoint that selects an account.
        """
        if email:
            return self.healthy(self.account(email))
        if not self.accounts:
            # The POST /music page: "no account configured" is a 400, like a bad parameter.
            # (A named account that is not configured stays 404:
            # docs/api-notes.md#q28-unknown-account.)
            raise bad_request(NO_ACCOUNT_MESSAGE)
        for acct in self.accounts.values():
            if acct.error is None:
                return acct
        return self.healthy(next(iter(self.accounts.values())))

    def job_account(self, email: str | None, cost: float) -> AccountState:
        """The account a job runs on: 400/404/596/429/402 when it cannot take it."""
        if email:
            acct = self.healthy(self.account(email))
            if self.running(acct) >= acct.max_jobs:
                # docs/api-notes.md#q5-429-named-account: a named full account answers 429 (not
                # queued).
                raise self.busy(named=True)
            return self._funded(acct, cost)
        healthy = [a for a in self.accounts.values() if a.error is None]
        if not healthy:
            self.any_account(None)  # raises 400 (none configured) or 596 (all in error)
        free = [(a.max_jobs - self.running(a), a) for a in healthy]
        free = [(n, a) for n, a in free if n > 0]
        if not free:
            raise self.busy(named=False)
        funded = [(n, a) for n, a in free if a.credits >= cost]
        if not funded:
            return self._funded(free[0][1], cost)
        return max(funded, key=lambda pair: pair[0])[1]  # most free slots; first on ties

    def cost(self, operation: str) -> float:
        """Credits `operation` ("song", "extend", ..., "lyrics") spends."""
        return self.costs[operation]

    def funded(self, acct: AccountState, cost: float) -> AccountState:
        """The account, if it can pay `cost` (402 otherwise; a free operation always can)."""
        return self._funded(acct, cost)

    def charge(self, acct: AccountState, cost: float, *, conversation: str, title: str) -> None:
        """Spend `cost` credits: the live balance, the usage report and `stats` all move.

        `conversation` keys the usage row (one per type, conversation and UTC day, as
        GET /accounts/usage reports them); a job's conversation is its jobid.
        """
        if cost <= 0:
            return
        now = self.clock.now()
        acct.credits -= cost
        key = ("producer-usage", conversation, _day(now))
        row = acct.usage.setdefault(key, UsageRow(key[0], self.new_uuid(), title, key[2], 0.0, now))
        row.amount += cost * TOKENS_PER_CREDIT
        row.last = now
        self.stats.credits_spent[acct.email] = self.stats.credits_spent.get(acct.email, 0.0) + cost

    def _funded(self, acct: AccountState, cost: float) -> AccountState:
        if cost > 0 and acct.credits < cost:
            raise ApiError(402, NO_CREDITS_MESSAGE)
        return acct

    def busy(self, *, named: bool) -> ApiError:
        """The 429 of the POST /music page, word for word, in its two cases.

        `named`: the request chose the account (`email`, or an edit's clip), so FlowMusic's own
        refusal is passed through; otherwise useapi's load balancer found every account full.
        Retry-After is whole seconds (HTTP allows nothing else), rounded up, at least 1;
        X-Sim-Retry-After carries the precise scaled value for clients of a fast simulator.
        """
        if named:
            message = ACCOUNT_BUSY_MESSAGE
        else:
            healthy = sum(1 for a in self.accounts.values() if a.error is None)
            message = ALL_BUSY_MESSAGE.format(n=healthy)
        headers = []
        if self.retry_after_s is not None:
            real = self.clock.real(self.retry_after_s)
            whole = max(1, math.ceil(round(real, 6)))  # round: 0.1 * 100 must stay 10
            headers.append(("retry-after", str(whole)))
            headers.append(("x-sim-retry-after", _decimal(real)))
        # docs/api-notes.md#q4-429-retry-after: the page gives the bodies; the header itself is our
        # assumption.
        return ApiError(429, message, headers=headers)

    # jobs ------------------------------------------------------------------------------------

    def submit(
        self,
        *,
        acct: AccountState,
        uid: str,
        operation: str | None,
        request: dict[str, Any],
        cost: float,
        duration: tuple[float, float],
        draft: Callable[[random.Random], list[ClipDraft]],
        origin: str,
        canonical: bytes,
        in_slot: bool = True,
        refused: bool = False,
    ) -> Job:
        """Accept a job: spend credits, take a slot, fix its duration, outcome and clips.

        `refused`: moderation declines the prompt. As on the POST /music page's 422 record
        (28 s between `created_at` and `completed_at`), the model renders for a song's time,
        holding its slot (docs/api-notes.md#q6-sync-jobs-hold-a-slot), then ends `failed` with
        `moderation_reject` and no clips. Nothing is charged and it is not counted as an
        accepted job, and a refusal must not look like a paid duplicate. Any other job is
        charged when accepted, whatever its end: one that fails while rendering
        (`job_failure_rate`) or is cancelled keeps its charge
        (docs/api-notes.md#q32-failed-job-cost).
        """
        self._job_count += 1
        rng = random.Random(f"{self.seed}:job:{self._job_count}")
        now = self.clock.now()
        ends = now + rng.uniform(*duration)
        failure = None
        # A refusal draws no failure roll, so the jobs after it keep their seeded draws.
        if refused or (in_slot and rng.random() < self.job_failure_rate):
            failure = (MODERATION_CODE, MODERATION_MESSAGE)
        jobid = f"job:{self.new_uuid(rng)}-user:{uid}-{acct.email}-bot:flowmusic"
        job = Job(
            jobid=jobid,
            uid=uid,
            email=acct.email,
            operation=operation,
            request=request,
            created=now,
            ends=ends,
            failure=failure,
            clips=[],
            origin=origin,
            reply_url=request.get("replyUrl"),
            reply_ref=request.get("replyRef"),
            refused=refused,
        )
        if failure is None:
            job.clips = [self._add_clip(d, acct.email, uid, ends, rng) for d in draft(rng)]
        self.jobs[jobid] = job
        if in_slot:
            acct.active[jobid] = job
            if not refused:
                self._account_job(acct, job, cost)
        if not refused:  # a refusal is not an accepted job, nor a paid duplicate
            self.stats.jobs[jobid] = JobTimes(
                created=time.time(), finished=self.clock.wall_at(ends)
            )
            if canonical in self._seen_bodies:
                self.stats.duplicate_submissions += 1
            self._seen_bodies.add(canonical)
        if job.reply_url:
            self.on_job_end(job)
        return job

    def _account_job(self, acct: AccountState, job: Job, cost: float) -> None:
        self.stats.jobs_created += 1
        running = len(acct.active)
        self.stats.peak_running[acct.email] = max(
            self.stats.peak_running.get(acct.email, 0), running
        )
        acct.accepted += 1
        self.trip_account_errors()
        title = job.clips[0].title if job.clips else str(job.request.get("prompt", ""))[:40]
        self.charge(acct, cost, conversation=job.jobid, title=title or "")

    def _add_clip(
        self, d: ClipDraft, email: str, uid: str, ready: float, rng: random.Random
    ) -> ClipRec:
        name = self.new_uuid(rng)
        clip = ClipRec(
            clip_id=f"user:{uid}-{email}-clip:{name}",
            name=name,
            email=email,
            uid=uid,
            title=d.title,
            duration_s=round(d.duration_s, 2),
            lyrics=d.lyrics,
            lyrics_timing=d.lyrics_timing,
            seed=d.seed,
            prompt=d.prompt,
            ready=ready,
        )
        self.clips[clip.clip_id] = clip
        self.media[name] = clip
        self.library.setdefault(email, []).append(clip)
        return clip

    def cancel(self, job: Job) -> None:
        now = self.clock.now()
        if not job.running(now):
            return
        job.cancelled_at = now
        for clip in job.clips:
            clip.hidden = True
        acct = self.accounts.get(job.email)
        if acct is not None:
            acct.active.pop(job.jobid, None)
        self.stats.jobs[job.jobid].finished = time.time()
        if job.reply_url:
            self.on_job_end(job)
        self.bell.ring()

    def job(self, jobid: str, uid: str) -> Job:
        """A job the caller may read: 403 for another user's jobid, 404 unknown or expired."""
        job = self.jobs.get(jobid)
        owner = job.uid if job is not None else _uid_in_id(jobid)
        if owner is not None and owner != uid:
            raise forbidden(f"Job {jobid} belongs to another user")
        if job is None:
            raise not_found(f"Job {jobid} not found")
        # docs/api-notes.md#q8-job-retention: after retention the job is gone: 404, not 410.
        if self.clock.now() > job.end_time() + self.retention_s:
            del self.jobs[jobid]
            raise not_found(f"Job {jobid} not found")
        return job

    async def wait_for_end(self, job: Job) -> None:
        """Hold until the job is terminal (a cancel or a clock jump rings the bell)."""
        while True:
            remaining = job.end_time() - self.clock.now()
            if remaining <= 0:
                return
            await self.bell.wait(self.clock.real(remaining))

    # clips and assets ------------------------------------------------------------------------

    def clip(self, clip_id: str, uid: str) -> ClipRec:
        clip = self.clips.get(clip_id)
        if clip is None or clip.hidden or clip.ready > self.clock.now():
            owner = _uid_in_id(clip_id)
            if owner is not None and owner != uid:
                raise forbidden(f"Clip {clip_id} belongs to another user")
            # docs/api-notes.md#q26-download-errors: an unknown clip id -> 404.
            raise not_found(f"Clip {clip_id} not found")
        if clip.uid != uid:
            # docs/api-notes.md#q30-another-users-clip: another user's clip -> 403, as for jobs.
            raise forbidden(f"Clip {clip_id} belongs to another user")
        return clip

    def visible_clips(self, email: str) -> list[ClipRec]:
        """The account's library, newest first."""
        now = self.clock.now()
        ready = [c for c in self.library.get(email, []) if not c.hidden and c.ready <= now]
        ready.sort(key=lambda c: c.ready, reverse=True)
        return ready

    def add_asset(self, *, email: str, uid: str, kind: str, ext: str) -> Asset:
        name = self.new_uuid()
        asset = Asset(f"user:{uid}-{email}-asset:{name}", name, email, uid, kind, ext)
        self.assets[asset.asset_id] = asset
        self.media[name] = asset
        return asset

    def canonical(self, path: str, fields: dict[str, Any]) -> bytes:
        return msgspec.json.encode([path, sorted(fields.items())])


def _uid_of_token(token: str) -> str:
    match = re.match(r"user:([^-\s]+)-", token)
    if match:
        return match.group(1)
    return str(int(hashlib.sha256(token.encode()).hexdigest()[:8], 16))


def _uid_in_id(some_id: str) -> str | None:
    match = re.search(r"user:([^-\s]+)-", some_id)
    return match.group(1) if match else None


def _day(t: float) -> float:
    return t - t % 86400


def _decimal(x: float) -> str:
    text = f"{x:.6f}".rstrip("0").rstrip(".")
    return text or "0"
