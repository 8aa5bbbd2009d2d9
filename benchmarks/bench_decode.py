"""Decode micro-benchmark: one job record into msgspec Structs vs pydantic v2 vs json.loads.

The payloads are the two records a client decodes most: a completed song job with two clips
(lyrics and lyrics timing included) and a pending job. Each implementation runs in its own
process (`python -m benchmarks.bench_decode --impl NAME`), timeit-style: the best of `repeat`
rounds of `number` decodes, reported per decode. The parent prints ratios against msgspec.

- msgspec: `flowmusic_async._models.JOB_DECODER`, the decoder the library uses.
- pydantic: v2 models of the same shape (same fields, aliases, Literal status),
  `Job.model_validate_json(bytes)`, pydantic's fastest path from JSON.
- json: stdlib `json.loads` into plain dicts (no validation, no attribute access).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._harness import run_json

IMPLEMENTATIONS = ("msgspec", "pydantic", "json")

_LYRICS = "\n".join(
    f"[{part}]\n" + "\n".join(f"line {n} of the {part.lower()}, and more words" for n in range(4))
    for part in ("Verse", "Chorus", "Verse", "Chorus", "Bridge", "Chorus")
)


def _clip(n: int) -> dict[str, Any]:
    clip = f"user:1001-bench@example.com-clip:0000000{n}-aaaa-bbbb-cccc-dddddddddddd"
    return {
        "clip": clip,
        "title": f"Neon Rain ({'AB'[n]})",
        "duration_s": 173.03 + n,
        "lyrics": _LYRICS,
        "seed": 123456789 + n,
        "lyrics_timing": [[i * 4.0, i * 4.0 + 3.5] for i in range(24)],
        "created_at": "2026-05-31T19:59:43.118Z",
        "audio_url": f"https://media.example.com/{clip}.m4a?sig=abcdef0123456789",
        "wav_url": f"https://media.example.com/{clip}.wav?sig=abcdef0123456789",
        "image_url": f"https://media.example.com/{clip}.png?sig=abcdef0123456789",
    }


_JOBID = "job:56ef7890-1234-4abc-9def-0123456789ab-user:1001-bench@example.com-bot:flowmusic"
_REQUEST = {"prompt": "warm lo-fi beat, vinyl crackle, 84 bpm", "mode": "async", "replyRef": "r-1"}

PAYLOADS: dict[str, bytes] = {
    "completed": json.dumps(
        {
            "jobid": _JOBID,
            "email": "bench@example.com",
            "status": "completed",
            "created_at": "2026-05-31T19:57:23.954Z",
            "completed_at": "2026-05-31T19:59:43.118Z",
            "duration_ms": 139164,
            "request": _REQUEST,
            "replyRef": "r-1",
            "clips": [_clip(0), _clip(1)],
        }
    ).encode(),
    "pending": json.dumps(
        {
            "jobid": _JOBID,
            "email": "bench@example.com",
            "status": "pending",
            "created_at": "2026-05-31T19:57:23.954Z",
            "request": _REQUEST,
        }
    ).encode(),
}


def _msgspec_decoder() -> Callable[[bytes], Any]:
    from flowmusic_async._models import JOB_DECODER

    return JOB_DECODER.decode


def _pydantic_decoder() -> Callable[[bytes], Any]:
    from typing import Literal

    from pydantic import BaseModel, ConfigDict, Field

    class _Model(BaseModel):
        # Same contract as the Structs: frozen, unknown fields ignored, aliases for camelCase.
        model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    class JobError(_Model):
        code: str
        message: str = ""

    class Clip(_Model):
        clip: str
        title: str | None = None
        duration_s: float | None = None
        lyrics: str | None = None
        seed: int | None = None
        lyrics_timing: tuple[tuple[float, float], ...] | None = None
        created_at: str | None = None
        audio_url: str | None = None
        wav_url: str | None = None
        image_url: str | None = None

    class Job(_Model):
        jobid: str
        email: str
        status: Literal["pending", "completed", "failed"]
        created_at: str | None = None
        operation: str | None = None
        completed_at: str | None = None
        duration_ms: float | None = None
        clips: tuple[Clip, ...] = ()
        error: JobError | None = None
        request: dict[str, Any] = Field(default_factory=dict)
        reply_ref: str | None = Field(default=None, alias="replyRef")

    return Job.model_validate_json


def _json_decoder() -> Callable[[bytes], Any]:
    return json.loads


_DECODERS: dict[str, Callable[[], Callable[[bytes], Any]]] = {
    "msgspec": _msgspec_decoder,
    "pydantic": _pydantic_decoder,
    "json": _json_decoder,
}


def measure(impl: str, *, number: int, repeat: int) -> dict[str, float]:
    """Microseconds per decode of each payload: the best of `repeat` rounds of `number`."""
    decode = _DECODERS[impl]()
    results: dict[str, float] = {}
    for name, payload in PAYLOADS.items():
        decode(payload)  # warm up (and fail loudly on a shape mismatch before timing)
        timer = timeit.Timer(functools.partial(decode, payload))
        best = min(timer.repeat(repeat=repeat, number=number))
        results[name] = best / number * 1e6
    return results


def run_all(*, number: int, repeat: int) -> dict[str, dict[str, float]]:
    """Every implementation in its own fresh interpreter; {impl: {payload: us}} or an error."""
    out: dict[str, dict[str, float]] = {}
    for impl in IMPLEMENTATIONS:
        cmd = [sys.executable, "-m", "benchmarks.bench_decode", "--impl", impl,
               "--number", str(number), "--repeat", str(repeat)]  # fmt: skip
        result = run_json(cmd, f"decode bench {impl}")
        if result is not None:
            out[impl] = result
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--impl", choices=IMPLEMENTATIONS, help="one implementation, JSON out (default: all)"
    )
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="also write the results (and the machine) to this file")
    ns = parser.parse_args(argv)
    if ns.impl:
        print(json.dumps(measure(ns.impl, number=ns.number, repeat=ns.repeat)))
        return
    from benchmarks import _report

    info = _report.print_machine()
    decode = run_all(number=ns.number, repeat=ns.repeat)
    print("\n".join(_report.decode_table(decode)))
    if ns.json:
        result = {"machine": info, "number": ns.number, "repeat": ns.repeat, "decode": decode}
        _report.write_json(Path(ns.json), result)


if __name__ == "__main__":
    main()
