"""A song leaves no reference cycles behind: what the client made for it goes when it ends.

Anything a request keeps in a cycle waits for CPython's cyclic garbage collector instead of
going by reference counting, and the collector's extra passes are paid for by every song: a
cycle of two retry objects per request cost the client about 2 % of its CPU
(docs/benchmarks.md, "2026-12-07, evening"). These tests count the library's own objects the
collector finds after a batch, against the number of songs.
"""

from __future__ import annotations

import gc
import types
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import flowmusic_async
from flowmusic_async.testing.pytest_plugin import MakeClient, MakeSim

pytestmark = [pytest.mark.anyio, pytest.mark.anyio_backends("asyncio", "trio")]

SCALE = 0.0005  # a 40-150 s song renders in 0.02-0.075 s
LIBRARY = Path(flowmusic_async.__file__).parent
SIMULATOR = LIBRARY / "testing"  # the stand-in server's own objects are not the client's


@contextmanager
def cyclic_garbage() -> Iterator[Counter[str]]:
    """Count, by kind, the library's objects that only the cyclic collector could free among
    what the block left behind (collector off inside the block, everything it found kept)."""
    found: Counter[str] = Counter()
    gc.collect()
    flags = gc.get_debug()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
        gc.collect()
        for thing in gc.garbage:
            kind = _library_kind(thing)
            if kind is not None:
                found[kind] += 1
    finally:
        gc.garbage.clear()
        gc.set_debug(flags)
        gc.enable()


def _library_kind(thing: object) -> str | None:
    """The name of `thing` if the client made it: an instance of a library class, or a
    running generator or coroutine of library code."""
    code = getattr(thing, "gi_code", None) or getattr(thing, "cr_code", None)
    code = code or getattr(thing, "ag_code", None)
    if isinstance(code, types.CodeType):
        where = Path(code.co_filename)
        name: str = code.co_name
    else:
        module = getattr(type(thing), "__module__", "") or ""
        if not module.startswith("flowmusic_async"):
            return None
        where = Path(__import__(module, fromlist=["_"]).__file__ or "")
        name = type(thing).__qualname__
    if not where.is_relative_to(LIBRARY) or where.is_relative_to(SIMULATOR):
        return None
    return name


async def _batch_garbage(make_sim: MakeSim, make_client: MakeClient, songs: int) -> Counter[str]:
    sim = make_sim(2, 2, time_scale=SCALE)
    async with make_client(sim) as fm:
        async with fm.generate_many(f"warm-up {i}" for i in range(2)) as outcomes:
            async for _ in outcomes:
                pass
        with cyclic_garbage() as found:
            completed = 0
            async with fm.generate_many(f"song {i}" for i in range(songs)) as outcomes:
                async for outcome in outcomes:
                    completed += outcome.job is not None
    assert completed == songs
    return found


async def test_a_batch_leaves_no_cycle_per_song(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Six times the songs, the same cyclic garbage: nothing per song (the batch's own few
    objects may form a cycle once). A cycle in every request's retry state fails it with
    hundreds of objects more (828 for the 25 extra songs)."""
    few = await _batch_garbage(flowmusic_make_sim, flowmusic_make_client, 5)
    many = await _batch_garbage(flowmusic_make_sim, flowmusic_make_client, 30)
    grown = {kind: many[kind] - few[kind] for kind in many if many[kind] > few[kind] + 2}
    assert grown == {}, f"cyclic garbage grows with the songs: {grown}"
