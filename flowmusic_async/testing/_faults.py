"""Fault injection knobs (all off by default) and the seeded dice that roll them."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Keys of the per-endpoint dicts are endpoint keys such as "POST /music" or "GET /jobs/{jobid}";
# "*" applies to every endpoint that has no entry of its own.
WILDCARD = "*"


@dataclass
class Faults:
    """Mutable fault knobs; change them mid-run (`sim.faults.burst_429 = 3`).

    Args:
        latency_s: real seconds added to every request.
        error_rate: endpoint key -> share answered 500; the request is NOT processed.
        drop_rate: endpoint key -> share whose connection drops before processing.
        malformed_rate: endpoint key -> share of successful answers whose JSON body is broken
            (the request IS processed, the success status is kept).
        burst_429: the next N job POSTs are answered 429 whatever the capacity (counts down).
        account_error_after: email -> the account turns to error state (596) once it has
            accepted N jobs in total.
        lost_response_rate: share of accepted POST /music and /music/edit jobs whose response
            is lost: the job exists, the connection drops.
    """

    latency_s: float = 0.0
    error_rate: dict[str, float] = field(default_factory=dict)
    drop_rate: dict[str, float] = field(default_factory=dict)
    malformed_rate: dict[str, float] = field(default_factory=dict)
    burst_429: int = 0
    account_error_after: dict[str, int] = field(default_factory=dict)
    lost_response_rate: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Set the named knobs from JSON values; ValueError names a bad one (nothing changes)."""
        known = {f.name for f in fields(self)}
        staged: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"Unknown fault {name}")
            staged[name] = _checked(name, value)
        for name, value in staged.items():
            setattr(self, name, value)


def _checked(name: str, value: Any) -> Any:
    if name in ("latency_s", "lost_response_rate"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"Fault {name} must be a number >= 0")
        return float(value)
    if name == "burst_429":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"Fault {name} must be an integer >= 0")
        return value
    if not isinstance(value, dict):
        raise ValueError(f"Fault {name} must be an object")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, (int, float)) or item < 0:
            raise ValueError(f"Fault {name}[{key}] must be a number >= 0")
        out[str(key)] = int(item) if name == "account_error_after" else float(item)
    return out


class Dice:
    """Seeded randomness for faults, separate from the job draws so faults don't shift them."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"faults:{seed}")

    def chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def hit(self, rates: Mapping[str, float], key: str) -> bool:
        return self.chance(rates.get(key, rates.get(WILDCARD, 0.0)))
