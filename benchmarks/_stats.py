"""Reading the simulator's GET /_sim/stats snapshot into what the metrics need.

The snapshot (flowmusic_async.testing SimStats.snapshot()) counts requests as
{"POST /music 201": n, ...} and gives each job its real wall-clock `created` and `finished`
times; a job's simulated duration is their difference divided by the time scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmarks._metrics import SimJob


def _is_api(endpoint: str) -> bool:
    """API calls count towards requests per song; the simulator's own /_sim/... paths
    (stats, faults, public media URLs) are not API calls."""
    _method, _, rest = endpoint.partition(" ")
    return not rest.startswith("/_sim")


@dataclass
class ParsedStats:
    jobs: dict[str, SimJob] = field(default_factory=dict)
    api_requests: dict[str, int] = field(default_factory=dict)
    other_requests: dict[str, int] = field(default_factory=dict)
    responses_429: int = 0
    duplicate_submissions: int = 0
    accepted_prompts: dict[str, int] = field(default_factory=dict)
    raw_counters: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The scalar counters and request counts, for the JSON file."""
        return self.raw_counters | {
            "api_requests": self.api_requests,
            "other_requests": self.other_requests,
        }


def parse_stats(snapshot: dict[str, Any], *, time_scale: float) -> ParsedStats:
    parsed = ParsedStats()
    for key, count in snapshot.get("requests", {}).items():
        endpoint = key.rsplit(" ", 1)[0]
        target = parsed.api_requests if _is_api(endpoint) else parsed.other_requests
        target[key] = int(count)
    for jobid, times in snapshot.get("jobs", {}).items():
        created, finished = float(times["created"]), float(times["finished"])
        parsed.jobs[jobid] = SimJob(
            jobid=jobid,
            created_at=created,
            finished_at=finished,
            duration_s=(finished - created) / time_scale,
        )
    parsed.responses_429 = int(snapshot.get("responses_429", 0))
    parsed.duplicate_submissions = int(snapshot.get("duplicate_submissions", 0))
    parsed.accepted_prompts = {k: int(v) for k, v in snapshot.get("accepted_prompts", {}).items()}
    parsed.raw_counters = {
        k: v for k, v in snapshot.items() if isinstance(v, int | float) or k == "peak_running"
    }
    return parsed
