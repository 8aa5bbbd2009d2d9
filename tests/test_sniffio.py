"""httpcore looks for sniffio on every request; where it is not installed, that must be cheap.

httpcore asks `current_async_library()` several times per request (its lock, event and
cancellation-shield setup); the function does `import sniffio` each time. Without sniffio
installed every such import failed after walking `sys.path`, which cost 18-24 % of the client's
CPU in a native profile (issue 27). The design card keeps sniffio out of the core's
dependencies, so `flowmusic_async._sniffio` records its absence instead. These tests prove
that, once warmed up, requests over a real loopback socket import nothing, with sniffio
installed or not.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from types import ModuleType

import pytest

from flowmusic_async import FlowMusic, Timing
from flowmusic_async._sniffio import remember_missing_sniffio
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


@pytest.mark.anyio
async def test_requests_import_nothing_once_warmed_up() -> None:
    """A module looked up on every request means a failed import (a sys.path walk) each time."""
    assert await imports_during_requests() == []


def skip_if_anyio_needs_sniffio() -> None:
    """anyio before 4.12 depends on sniffio and imports it again as a test starts: there,
    sniffio can never be missing (tests_lowest runs anyio 4.6)."""
    if sys.modules.get("sniffio") is not None:
        pytest.skip("this anyio depends on sniffio, so it cannot be missing")


@pytest.fixture
def sniffio_unloaded() -> Iterator[None]:
    """sys.modules without sniffio for one test, exactly as it was afterwards (the code under
    test may record it as absent, which must not leak into other tests)."""
    saved = sys.modules.pop("sniffio", None)
    try:
        yield
    finally:
        sys.modules.pop("sniffio", None)
        if saved is not None:
            sys.modules["sniffio"] = saved


@pytest.mark.anyio
@pytest.mark.usefixtures("sniffio_unloaded")
async def test_without_sniffio_installed_requests_do_not_look_for_it_again() -> None:
    """Where sniffio is missing, the client records its absence: no request looks it up."""
    skip_if_anyio_needs_sniffio()
    looked_up = await imports_during_requests(hide=frozenset({"sniffio"}))
    assert looked_up.count("sniffio") == 0


@pytest.mark.anyio
@pytest.mark.usefixtures("sniffio_unloaded")
async def test_the_recorder_sees_httpcore_look_for_a_missing_sniffio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check above can fail: without the record of its absence, every request looks
    sniffio up again."""
    skip_if_anyio_needs_sniffio()
    monkeypatch.setattr("flowmusic_async._lanes.remember_missing_sniffio", lambda: False)
    looked_up = await imports_during_requests(hide=frozenset({"sniffio"}))
    assert looked_up.count("sniffio") >= REQUESTS


@pytest.mark.usefixtures("sniffio_unloaded")
def test_an_installed_sniffio_is_left_alone() -> None:
    """Where sniffio is installed (trio requires it), nothing is recorded."""
    assert remember_missing_sniffio() is False
    assert "sniffio" not in sys.modules
