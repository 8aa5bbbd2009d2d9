"""Makes httpcore's look-up of sniffio cheap where sniffio is not installed.

httpcore asks `current_async_library()` several times per request (its locks, events and
cancellation shields), and that function does ``import sniffio``, falling back to asyncio when
the import fails. Python remembers only imports that worked: where sniffio is not installed
(nothing pulls it in since httpx 0.28 and anyio 4.12; trio does), every one of those imports
walks ``sys.path`` again and fails, 18-24 % of the client's CPU in a profile (issue 27; figures
in docs/benchmarks.md).

The design card keeps the core to httpx, anyio, msgspec and backoff, so rather than depend on
sniffio we record its absence the way Python itself spells "this module is known not to be
importable": ``sys.modules["sniffio"] = None``. A later ``import sniffio`` then fails at once,
and httpcore takes its asyncio fallback as before. Nothing else changes: where sniffio is
installed (always, alongside trio, which requires it) this does nothing at all; the cost is
that a sniffio installed into the running process after this point is not seen until restart.
"""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["remember_missing_sniffio"]


def remember_missing_sniffio() -> bool:
    """Record sniffio as absent if it cannot be imported; True if this did so."""
    if "sniffio" in sys.modules:
        return False
    try:
        found = importlib.util.find_spec("sniffio") is not None
    except (ImportError, ValueError):  # a finder that refuses it: as good as absent
        found = False
    if found:
        return False
    sys.modules["sniffio"] = None  # type: ignore[assignment]
    return True
