"""Timing: how long Flow Music jobs take and how often the engine looks at them.

Every duration the engine uses comes from one `Timing`, so a test or a benchmark that runs the
simulator at `time_scale=0.01` passes `Timing.scaled(0.01)` and the whole engine speeds up in step.
A client given no `timing=` reads the scale from ``FLOWMUSIC_TIME_SCALE`` (`Timing.from_env`).
"""

from __future__ import annotations

import math
import os

import msgspec

from ._errors import ConfigurationError
from ._retry import RetryPolicy

TIME_SCALE_ENV = "FLOWMUSIC_TIME_SCALE"

# A job's record is judged to have run on a faster clock than ours only when its own
# timestamps span more than this many times the real seconds we saw pass (plus a margin for
# the POST's round trip): a mismatch of 2x or less is not worth a warning.
_CLOCK_RATIO = 2.0
_CLOCK_MARGIN_S = 5.0

# A fraction, and bounds on real network round trips (a DELETE, a POST's answer, the first
# connection to a server), which a simulator's clock does not make any faster.
_UNSCALED = frozenset({"poll_jitter", "cleanup_timeout", "close_timeout", "first_contact_budget"})


class Timing(msgspec.Struct, frozen=True, kw_only=True):
    """Durations in seconds; the defaults suit the real API (songs take 40-150 s).

    Args:
        poll_interval: time between two sweeps of GET /jobs while jobs are pending. One sweep
            serves every pending job, so this bounds how late a completion is noticed.
        poll_jitter: fraction of `poll_interval` added or removed at random, so that many
            clients sharing a token do not sweep in lockstep.
        first_check_after: a job is not looked for before it is this old. Songs take at least
            40 s; half of that still notices early failures while saving idle sweeps.
        min_job_seconds: the shortest a generation job runs. Reconciling a POST whose answer
            was lost relies on it: a job created by that POST is still listed as running when
            we look within this window, so "not listed" proves "not created".
        typical_job_seconds: expected duration, for progress displays.
        max_job_seconds: the longest a song normally takes.
        job_timeout: default deadline for a job, counted from its acceptance.
        accounts_refresh: how old the account list (GET /accounts) may get before it is read again.
        backoff_base: first delay after a 429 without Retry-After (the official script waits 10 s).
        backoff_cap: the longest single wait after a 429, Retry-After included.
        retry_base: first delay before retrying a safe request after a 5xx or transport error.
        reconcile_delay: pause before the second look when reconciling a lost POST, to let a
            request the server was still processing show up.
        connect_budget: how long connections may keep failing (the request never leaves)
            before a request gives up with `TransportError` naming the host, once the client
            has had an answer from the API (an outage).
        first_contact_budget: the same, before the client has ever had an answer from the API
            (at most `connect_budget`): then a connection that cannot be opened is most likely
            a wrong URL, port or host, so the request gives up within seconds, with an error
            naming the URL and the cause (`TransportError.never_reached`). Not scaled: it
            bounds real connection attempts.
        cleanup_timeout: how long a cancelled caller waits for its cleanup (the DELETE of its
            job) before its cancellation is re-raised; the cleanup itself goes on in the client.
        close_timeout: how long closing the client waits for work in flight (paid POSTs whose
            answer is on its way, DELETEs of cancelled jobs) before it stops anyway.
        webhook_sweep_interval: time between sweeps while every pending job has a `replyUrl`
            (webhook-only mode): callbacks end the waits; this slow sweep is the safety net
            for a callback that never arrives.
    """

    poll_interval: float = 3.0
    poll_jitter: float = 0.1
    first_check_after: float = 20.0
    min_job_seconds: float = 40.0
    typical_job_seconds: float = 95.0
    max_job_seconds: float = 150.0
    job_timeout: float = 1200.0
    accounts_refresh: float = 60.0
    backoff_base: float = 10.0
    backoff_cap: float = 60.0
    retry_base: float = 0.5
    reconcile_delay: float = 2.0
    connect_budget: float = 30.0
    # 4 s of retries, so that a command against a wrong URL ends within 5 s all told.
    first_contact_budget: float = 4.0
    cleanup_timeout: float = 5.0
    close_timeout: float = 15.0
    webhook_sweep_interval: float = 60.0

    @classmethod
    def scaled(cls, factor: float) -> Timing:
        """The default timing with every duration multiplied by `factor`.

        The jitter stays a fraction, and `cleanup_timeout`, `close_timeout` and
        `first_contact_budget` stay as they are: they bound real round trips, which a faster
        simulated clock does not shorten.

        Args:
            factor: the simulator's time scale, e.g. 0.01 when a 100 s song takes 1 s.
        """
        if not factor > 0:
            raise ValueError(f"Timing.scaled: factor must be > 0, got {factor!r}")
        defaults = cls()
        fields = {
            name: getattr(defaults, name) * factor
            for name in cls.__struct_fields__
            if name not in _UNSCALED
        }
        return cls(**fields)

    @classmethod
    def from_env(cls) -> Timing:
        """The default timing, scaled by ``FLOWMUSIC_TIME_SCALE`` when it is set.

        What a client uses when it is given no `timing=`: exporting the variable that
        ``flowmusic simulate --time-scale 0.01`` prints makes every client in the shell match
        that simulator.

        Raises:
            ConfigurationError: the variable is set but is not a number > 0.
        """
        raw = os.environ.get(TIME_SCALE_ENV, "").strip()
        if not raw:
            return cls()
        try:
            factor = float(raw)
        except ValueError:
            factor = math.nan
        if not (factor > 0 and math.isfinite(factor)):
            raise ConfigurationError(
                f"{TIME_SCALE_ENV} must be a number > 0 (a simulator's time scale, e.g. 0.01; "
                f"unset for the real API), got {raw!r}"
            )
        return cls() if factor == 1.0 else cls.scaled(factor)

    def retry_policy(self, *, max_retries: int) -> RetryPolicy:
        """The retry policy of a client with this timing (scaled timings scale every delay)."""
        return RetryPolicy(
            max_retries=max_retries,
            base=self.retry_base,
            cap=self.backoff_cap,
            retry_after_cap=self.backoff_cap,
            connect_budget=self.connect_budget,
            first_contact_budget=self.first_contact_budget,
        )

    def scale(self) -> float:
        """The time scale this timing was made for: 1 for the real API, f for `scaled(f)`."""
        return self.min_job_seconds / Timing().min_job_seconds

    def too_slow_for(self, *, server_seconds: float, observed_seconds: float) -> float | None:
        """The server's time scale (at most), when this timing is clearly too slow for it.

        `server_seconds` is how long a job ran by the server's own timestamps (`completed_at`
        minus `created_at`); `observed_seconds` the real time from its acceptance to our read
        of its final record. A server whose jobs span far more of its own seconds than of ours
        runs a compressed clock (a simulator at a time scale below 1); if this timing is
        scaled for a clock more than twice slower, every job is noticed late. None otherwise,
        including at the real API, whose jobs never outrun the real clock.
        """
        if server_seconds <= _CLOCK_RATIO * observed_seconds + _CLOCK_MARGIN_S:
            return None
        server_scale = observed_seconds / server_seconds  # an upper bound: we noticed late
        return server_scale if self.scale() > _CLOCK_RATIO * server_scale else None
