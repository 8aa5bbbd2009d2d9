"""sniffio is a dependency because httpcore looks for it on every request.

httpcore asks `current_async_library()` several times per request (its lock, event and
cancellation-shield setup); the function does `import sniffio` each time. Without sniffio
installed every such import fails after walking `sys.path`, which cost 18-24 % of the client's
CPU in a native profile (issue 27). These tests keep the dependency declared and prove that,
once warmed up, requests over a real loopback socket import nothing.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from types import ModuleType

import pytest
from packaging.requirements import Requirement

from flowmusic_async import FlowMusic, Timing
from flowmusic_async.testing import Simulator

REQUESTS = 20
SCALE = 0.01  # the simulator's time scale; the client is told, so it does not warn


class ImportRecorder:
    """A meta path finder placed first: it sees every import that misses `sys.modules`.

    It finds nothing itself (the finders after it do the work), unless told to hide a module,
    for which it raises ModuleNotFoundError as an uninstalled package would.
    """

    def __init__(self, hide: frozenset[str] = frozenset()) -> None:
        self.looked_up: list[str] = []
        self._hide = hide

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        self.looked_up.append(fullname)
        if fullname in self._hide:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


@contextmanager
def recording_imports(hide: frozenset[str] = frozenset()) -> Iterator[ImportRecorder]:
    recorder = ImportRecorder(hide)
    sys.meta_path.insert(0, recorder)
    try:
        yield recorder
    finally:
        sys.meta_path.remove(recorder)


async def imports_during_requests(hide: frozenset[str] = frozenset()) -> list[str]:
    """The module lookups during REQUESTS sequential GETs over loopback, after a warm-up."""
    sim = Simulator(time_scale=SCALE)
    with recording_imports(hide):  # hidden from the first request on
        async with (
            sim.serve() as url,
            FlowMusic(token=sim.token, base_url=url, timing=Timing.scaled(SCALE)) as fm,
        ):
            for _ in range(3):  # first use imports whatever httpx and httpcore import lazily
                await fm.accounts.list()
            with recording_imports() as recorder:
                for _ in range(REQUESTS):
                    await fm.accounts.list()
    return recorder.looked_up


def test_sniffio_is_a_declared_runtime_dependency() -> None:
    """Without it in our metadata a user's environment (no trio) pays the failed imports."""
    requirements = [
        Requirement(text) for text in importlib.metadata.requires("flowmusic-async") or []
    ]
    core = {r.name.lower() for r in requirements if r.marker is None}
    assert "sniffio" in core


@pytest.mark.anyio
async def test_requests_import_nothing_once_warmed_up() -> None:
    """A module looked up on every request means a failed import (a sys.path walk) each time."""
    assert await imports_during_requests() == []


@pytest.mark.anyio
async def test_the_recorder_sees_httpcore_look_for_a_missing_sniffio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check above can fail: with sniffio hidden, every request looks it up again."""
    monkeypatch.delitem(sys.modules, "sniffio", raising=False)
    looked_up = await imports_during_requests(hide=frozenset({"sniffio"}))
    assert looked_up.count("sniffio") >= REQUESTS
