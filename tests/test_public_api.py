"""The public surface: one sorted __all__ that matches what the package exposes."""

from __future__ import annotations

import subprocess
import sys

import flowmusic_async
from flowmusic_async import Timing


def test_all_is_sorted_and_lists_every_public_name() -> None:
    """Private by default: __all__ is the contract, so it must be complete and nothing more."""
    # "@py_builtins"-style names: pytest rewrites asserts in packages with a pytest11 plugin.
    public = {name for name in vars(flowmusic_async) if not name.startswith(("_", "@"))}
    modules = {"testing"}  # subpackages show up as attributes once imported
    assert flowmusic_async.__all__ == sorted(flowmusic_async.__all__)
    assert public - modules == set(flowmusic_async.__all__) - {"__version__"}


def test_the_core_imports_without_optional_extras() -> None:
    """The core depends on httpx, anyio, msgspec and backoff only: no rich, pydantic or trio."""
    code = (
        "import sys\n"
        "for extra in ('rich', 'pydantic', 'trio', 'uvicorn', 'matplotlib'):\n"
        "    sys.modules[extra] = None  # importing it now raises ImportError\n"
        "import flowmusic_async, flowmusic_async.testing\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_scaled_timing_multiplies_every_duration_but_jitter() -> None:
    """One knob speeds the whole engine up in step with a simulator's time scale."""
    fast = Timing.scaled(0.01)
    assert fast.poll_interval == Timing().poll_interval * 0.01
    assert fast.min_job_seconds == Timing().min_job_seconds * 0.01
    assert fast.poll_jitter == Timing().poll_jitter
