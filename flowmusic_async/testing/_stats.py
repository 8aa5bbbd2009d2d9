"""What the simulator saw: counters a test or benchmark can assert on."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class JobTimes:
    """Real wall-clock times (`time.time()`) of one job: when accepted and when it ends.

    `finished` is when the job's simulated end falls in real time (or when it was cancelled),
    so `notice_time - finished` is how late a client noticed.
    """

    created: float
    finished: float


@dataclass
class SimStats:
    """Observation of one simulator run. Mutated by the simulator; read it, don't write it.

    `requests` counts (endpoint key, status); status 0 means the connection was dropped.
    `credits_spent` is what each account was charged (account email -> credits): every paid
    job when accepted (a cancelled or failed one included), and any operation given a cost.
    """

    requests: Counter[tuple[str, int]] = field(default_factory=Counter)
    peak_running: dict[str, int] = field(default_factory=dict)
    responses_429: int = 0
    duplicate_submissions: int = 0
    accepted_prompts: Counter[str] = field(default_factory=Counter)
    jobs_created: int = 0
    lost_responses: int = 0
    webhooks_delivered: int = 0
    webhooks_failed: int = 0
    jobs: dict[str, JobTimes] = field(default_factory=dict)
    credits_spent: dict[str, float] = field(default_factory=dict)

    @property
    def total_credits_spent(self) -> float:
        """Credits charged over every account."""
        return sum(self.credits_spent.values())

    def snapshot(self) -> dict[str, Any]:
        """A plain, JSON-able copy (`requests` keys become "POST /music 201")."""
        return {
            "requests": {f"{k} {status}": n for (k, status), n in sorted(self.requests.items())},
            "peak_running": dict(self.peak_running),
            "responses_429": self.responses_429,
            "duplicate_submissions": self.duplicate_submissions,
            "accepted_prompts": dict(self.accepted_prompts),
            "jobs_created": self.jobs_created,
            "lost_responses": self.lost_responses,
            "webhooks_delivered": self.webhooks_delivered,
            "webhooks_failed": self.webhooks_failed,
            "credits_spent": dict(self.credits_spent),
            "jobs": {
                jobid: {"created": t.created, "finished": t.finished}
                for jobid, t in self.jobs.items()
            },
        }
