"""Bad input from the caller: refused with a typed error naming the parameter, before any request.

Every case here was a crash, a hang or a paid POST before it was refused. The transport counts
what would have left: a refusal must send nothing (for a paid POST, nothing means no credits).
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from flowmusic_async import (
    ConfigurationError,
    Failed,
    FlowMusic,
    SongRequest,
    ValidationError,
)
from flowmusic_async.testing import Simulator

pytestmark = pytest.mark.anyio

TOKEN = "user:1-secret-token-value"
SURROGATE = "bad \ud800 text"


class Counting:
    """A transport that records every request and answers 500 (nothing should get here)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(500, json={"error": "nothing should have been sent"})


@pytest.fixture
def sent() -> Counting:
    return Counting()


@pytest.fixture
async def fm(sent: Counting) -> AsyncIterator[FlowMusic]:
    async with FlowMusic(token=TOKEN, transport=httpx.MockTransport(sent)) as client:
        yield client


BAD_SECONDS = [0, -1, -0.5, math.nan, math.inf, -math.inf, True, False, "10", 10**400]


@pytest.mark.parametrize("bad", BAD_SECONDS, ids=repr)
async def test_bad_deadline_is_refused_on_every_entry_point_before_sending(
    fm: FlowMusic, sent: Counting, bad: Any
) -> None:
    """0/negative/NaN deadlines used to send the paid POST and then time out at once."""
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "generate": lambda: fm.generate("a song", deadline=bad),
        "submit": lambda: fm.submit("a song", deadline=bad),
        "edit": lambda: fm.edit("effect", "clip:1", effect="Gain", gain_db=1, deadline=bad),
        "submit_edit": lambda: fm.submit_edit(
            "effect", "clip:1", effect="Gain", gain_db=1, deadline=bad
        ),
        "extend": lambda: fm.extend("clip:1", instruction="more", deadline=bad),
        "wait": lambda: fm.wait("job:1", deadline=bad),
    }
    for name, call in calls.items():
        with pytest.raises(ValidationError) as caught:
            await call()
        assert caught.value.field == "deadline", name
    with pytest.raises(ValidationError, match="deadline"):
        fm.generate_many(["a song"], deadline=bad)
    assert sent.requests == []


async def test_the_removed_timeout_spelling_is_refused_before_sending(
    fm: FlowMusic, sent: Counting
) -> None:
    """`deadline=` and `http_timeout=` are the only names: `timeout=` is a TypeError."""
    old: dict[str, Any] = {"timeout": 10}
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "generate": lambda: fm.generate("a song", **old),
        "submit": lambda: fm.submit("a song", **old),
        "edit": lambda: fm.edit("effect", "clip:1", effect="Gain", gain_db=1, **old),
        "submit_edit": lambda: fm.submit_edit("effect", "clip:1", effect="Gain", **old),
        "wait": lambda: fm.wait("job:1", **old),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError, match="timeout"):
            await call()
        assert sent.requests == [], name
    with pytest.raises(TypeError, match="timeout"):
        fm.generate_many(["a song"], **old)
    with pytest.raises(TypeError, match="timeout"):
        FlowMusic(token=TOKEN, **old)
    assert sent.requests == []


async def test_bad_deadline_on_result_is_refused() -> None:
    """`handle.result(deadline=)` is a public entry point like the others."""
    sim = Simulator(time_scale=0.001, seed=1)
    async with sim.client() as fm:
        handle = await fm.submit("a song")
        bad: Any
        for bad in (0, math.nan, math.inf, True, "1"):
            with pytest.raises(ValidationError, match="deadline"):
                await handle.result(deadline=bad)
        old: dict[str, Any] = {"timeout": 10}  # the removed spelling
        with pytest.raises(TypeError, match="timeout"):
            await handle.result(**old)
        await handle.cancel()


@pytest.mark.parametrize(
    "bad_request",
    [5, None, b"bytes", {"lyrics": "no prompt"}, {"prompt": "x", "ref_images": 7}, 1.5],
    ids=repr,
)
async def test_one_bad_batch_request_is_its_own_failed_outcome(bad_request: object) -> None:
    """The docs promise one failure never ends a batch; a bad request used to kill it."""
    sim = Simulator(time_scale=0.001, seed=2)
    async with sim.client(
        reply_url="https://hooks.example.com/x",  # the default is merged into every request
    ) as fm:
        outcomes = []
        async with fm.generate_many(["first", bad_request, "last"]) as run:  # type: ignore[list-item]
            async for outcome in run:
                outcomes.append(outcome)
    by_index = {o.index: o for o in outcomes}
    assert sorted(by_index) == [0, 1, 2]
    assert by_index[0].ok and by_index[2].ok
    failed = by_index[1]
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, ValidationError)
    assert sim.stats.jobs_created == 2


@pytest.mark.parametrize("bad", [1.5, True, 0, -1, "2"], ids=repr)
async def test_bad_batch_concurrency_is_refused(fm: FlowMusic, sent: Counting, bad: Any) -> None:
    """concurrency=1.5 or True is a bug in the caller, not a number of slots."""
    with pytest.raises(ValidationError) as caught:
        fm.generate_many(["a song"], concurrency=bad)
    assert caught.value.field == "concurrency"
    assert sent.requests == []


@pytest.mark.parametrize("bad", [3, b"journal.db", ["journal.db"], "", "  "], ids=repr)
async def test_bad_batch_journal_is_refused(fm: FlowMusic, sent: Counting, bad: Any) -> None:
    """A journal that is not a path or a Journal is refused before anything is sent; an empty
    path would be SQLite's throwaway database, and the promise to resume would be silently
    broken."""
    with pytest.raises(ValidationError) as caught:
        fm.generate_many(["a song"], journal=bad)
    assert caught.value.field == "journal"
    assert sent.requests == []


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("prompt", {"prompt": SURROGATE}),
        ("lyrics", {"prompt": "p", "lyrics": SURROGATE}),
        ("reply_ref", {"prompt": "p", "reply_ref": SURROGATE}),
        ("reply_url", {"prompt": "p", "reply_url": "https://x.example/\ud800"}),
        ("email", {"prompt": "p", "email": "a\udc80@example.com"}),
        ("ref_images", {"prompt": "p", "ref_images": ["img\ud800"]}),
        ("ref_images", {"prompt": "p", "ref_images": 5}),
        ("ref_audios", {"prompt": "p", "ref_audios": 5}),
        ("ref_audios", {"prompt": "p", "ref_audios": b"ab"}),
    ],
)
async def test_unsendable_song_fields_are_refused_before_the_paid_post(
    fm: FlowMusic, sent: Counting, field: str, kwargs: dict[str, Any]
) -> None:
    """A lone surrogate raised UnicodeEncodeError (and an int a TypeError) mid-submission."""
    prompt = kwargs.pop("prompt")
    with pytest.raises(ValidationError) as caught:
        await fm.generate(prompt, **kwargs)
    assert caught.value.field == field
    assert sent.requests == []


async def test_none_references_mean_not_sent(fm: FlowMusic) -> None:
    """None is "not sent" for every optional field (SongRequest's docstring): not a crash."""
    from flowmusic_async._validation import music_body

    body = music_body(SongRequest(prompt="p", ref_images=None, ref_audios=None))  # type: ignore[arg-type]
    assert body == {"prompt": "p"}


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("instruction", {"instruction": SURROGATE}),
        ("title", {"instruction": "ok", "title": SURROGATE}),
        ("reply_ref", {"instruction": "ok", "reply_ref": SURROGATE}),
        ("clip", {"instruction": "ok", "clip": "clip:\ud800"}),
    ],
)
async def test_unsendable_edit_fields_are_refused_before_sending(
    fm: FlowMusic, sent: Counting, field: str, kwargs: dict[str, Any]
) -> None:
    """Every text field of an edit, not only the prompt."""
    clip = kwargs.pop("clip", "clip:1")
    with pytest.raises(ValidationError) as caught:
        await fm.extend(clip, **kwargs)
    assert caught.value.field == field
    with pytest.raises(ValidationError):
        await fm.music.extend(clip, **kwargs)
    assert sent.requests == []


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"token": 12345}, "token"),
        ({"token": b"bytes-token-1234"}, "token"),
        ({"base_url": 5}, "base_url"),
        ({"base_url": "https://[::1"}, "base_url"),
        ({"base_url": "https://api.example:99999"}, "base_url"),
        ({"http_timeout": math.nan}, "http_timeout"),
        ({"http_timeout": -1}, "http_timeout"),
        ({"http_timeout": True}, "http_timeout"),
        ({"http_timeout": math.inf}, "http_timeout"),
        ({"timing": {"poll_interval": 1}}, "timing"),
        ({"transport": "http://localhost"}, "transport"),
        ({"transport": httpx.AsyncClient}, "transport"),
        ({"http_client": httpx.MockTransport(lambda r: httpx.Response(200))}, "http_client"),
        ({"event_hooks": 5}, "event_hooks"),
        ({"event_hooks": [5]}, "event_hooks"),
        ({"event_hooks": print}, "event_hooks"),
        ({"reply_url": 5}, "reply_url"),
        ({"reply_url": "https://[::1"}, "reply_url"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
    ],
    # Without the objects' addresses, which differ between pytest-xdist's workers.
    ids=lambda v: re.sub(r" at 0x[0-9a-f]+", "", repr(v)) if isinstance(v, dict) else "",
)
def test_bad_constructor_arguments_are_configuration_errors(
    kwargs: dict[str, Any], names: str
) -> None:
    """They used to be accepted and fail later with AttributeError, far from the mistake."""
    kwargs.setdefault("token", TOKEN)
    with pytest.raises(ConfigurationError) as caught:
        FlowMusic(**kwargs)
    assert names in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_non_ascii_token_is_refused_without_echoing_it() -> None:
    """httpx failed on it later with a UnicodeEncodeError holding "Bearer <token>"."""
    secret = "user:1-sécrét-tökén-42"
    with pytest.raises(ConfigurationError) as caught:
        FlowMusic(token=secret)
    assert "non-ASCII" in str(caught.value)
    for text in (str(caught.value), repr(caught.value), repr(caught.value.args)):
        assert secret not in text
        assert "tökén" not in text
