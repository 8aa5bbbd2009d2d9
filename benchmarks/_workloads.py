"""The workloads every variant runs: a big batch, a bot-like stream, and a single song."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

# The simulator draws song durations uniformly from 40-150 simulated seconds.
MEAN_SONG_S = 95.0


@dataclass(frozen=True)
class Workload:
    """One scenario: how many songs, on which accounts, arriving how.

    `rate_per_s` is None for "everything at once"; otherwise songs arrive one by one at that
    many songs per *simulated* second (the variants convert with the time scale).
    """

    name: str
    songs: int
    accounts: tuple[tuple[str, int], ...]
    rate_per_s: float | None = None

    @property
    def slots(self) -> int:
        return sum(max_jobs for _, max_jobs in self.accounts)

    def arrival_offsets(self, time_scale: float) -> list[float]:
        """Real seconds after the start at which song i is requested."""
        if self.rate_per_s is None:
            return [0.0] * self.songs
        gap = time_scale / self.rate_per_s
        return [i * gap for i in range(self.songs)]

    def prompt(self, index: int) -> str:
        # Unique per song, so the simulator's accepted_prompts counter exposes duplicates.
        return f"bench {self.name} song {index:05d}: warm lo-fi beat, vinyl crackle, 84 bpm"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Workload:
        raw = json.loads(text)
        raw["accounts"] = tuple((email, int(n)) for email, n in raw["accounts"])
        return cls(**raw)


def accounts(count: int, max_jobs: tuple[int, ...]) -> tuple[tuple[str, int], ...]:
    """`count` accounts whose maxJobs cycle through `max_jobs` (a mix sums like the real thing)."""
    return tuple((f"bench{i:02d}@example.com", max_jobs[i % len(max_jobs)]) for i in range(count))


# Ten accounts, a mix of tiers, 100 slots in all (8+12 averages to 10).
TEN_ACCOUNTS = accounts(10, (8, 12))


def stream_rate(slots: int, utilisation: float) -> float:
    """Songs per simulated second that keep `utilisation` of the slots busy on average."""
    return utilisation * slots / MEAN_SONG_S


def plan(*, quick: bool) -> list[Workload]:
    """The workloads of one run."""
    slots = sum(n for _, n in TEN_ACCOUNTS)
    batch = 200 if quick else 1000
    stream = 150 if quick else 600
    return [
        Workload(name="batch", songs=batch, accounts=TEN_ACCOUNTS),
        Workload(
            name="stream",
            songs=stream,
            accounts=TEN_ACCOUNTS,
            rate_per_s=stream_rate(slots, 0.7),
        ),
        Workload(name="single", songs=1, accounts=TEN_ACCOUNTS),
    ]
