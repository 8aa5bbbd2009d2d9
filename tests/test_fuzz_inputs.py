"""Property-based tests over every public entry point's parameters.

Each example calls one entry point with values drawn from a hostile mix (wrong types, NaN and
infinities, huge ints, lone surrogates, bytes, containers) and plausible valid ones. Whatever
the mix, the outcome is success or a `FlowMusicError`, never another exception; and a local
refusal (`ValidationError`, `ConfigurationError`) sends nothing at all. The transport answers
every request 400, so a request that passed validation ends at once with `BadRequestError`
(and proves the request could be encoded and sent).

Seeded (``derandomize=True``) with bounded examples, so CI sees the same cases every run and
the whole file stays within a few seconds per entry point.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.from_thread
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowmusic_async import (
    APIStatusError,
    ConfigurationError,
    FlowMusic,
    FlowMusicError,
    JobTimeout,
    SongRequest,
    Timing,
    ValidationError,
)

EXAMPLES = settings(
    derandomize=True,
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TOKEN = "user:1-fuzz-secret-token"
CLIP = "user:1001-a@example.com-clip:0a1b2c3d-1111-4111-8111-111111111111"

# Any text, lone surrogates included (hypothesis leaves category Cs out unless told).
any_text = st.text(st.characters(exclude_categories=()), max_size=12)
hostile: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.sampled_from([10**400, -(10**400), 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
    st.binary(max_size=8),
    st.lists(any_text, max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.sampled_from([object(), print, math.inf, -0.0, 1e308]),
    # Drawn rarely by `any_text`, so given outright: lone surrogates, NUL, control characters.
    st.sampled_from(["\ud800", "ok \udc80 text", "\x00", "tab\there", "ünï"]),
)

# Values that may be right for a parameter of this name, so examples also get past validation.
PLAUSIBLE: dict[str, list[Any]] = {
    "prompt": ["a calm piano piece", "x" * 10_001, " ", ""],
    "lyrics": ["[Verse]\nla la", ""],
    "instruction": ["add a guitar solo"],
    "structure": ["verse chorus"],
    "title": ["Night Drive"],
    "instrumental": [True, False],
    "ghostwriter": ["standard", "pro", "Pro"],
    "model": ["lyria-3.5", "lyria-3-pro", "lyria-4"],
    "mode": ["sync", "async", "both"],
    "email": ["a@example.com", "nobody", " a@example.com"],
    "reply_url": ["https://hooks.example.com/x", "ftp://x", "https://[::1", "http://"],
    "reply_ref": ["ref-1"],
    "ref_images": [["img1"], ("img1", "img2"), ["x"] * 11, [""]],
    "ref_audios": [["aud1"], []],
    "clip": [CLIP, "clip:1", ""],
    "id": [CLIP, "job:1"],
    "jobid": ["job:1", ""],
    "operation": ["effect", "extend", "replace", "cover", "remix", "stems", "dance"],
    "effect": ["Trim", "fade", "Gain", "Reverb", "Pan", "Equalizer", "Echo"],
    "deadline": [1, 0.5, 600, 0, -1],
    "concurrency": [1, 2, 0],
    "limit": [1, 100, 101],
    "offset": [0, 5],
    "page_size": [1, 100],
    "max_jobs": [1, 16, 17],
    "refresh_token": ["a-long-refresh-token", "short"],
    "seed": [0, 42, -1],
    "format": ["mp3", "wav"],
    "content_type": ["image/png", "audio/mpeg", "text/plain", None],
    "strip_metadata": [True, False],
    "data_or_path": [b"\x89PNG....", b""],
    "retry_failed": [True, False],
    "formats": [("m4a",), ("flac",)],
}
# Text that only breaks when encoded: given to every text field with a good chance.
UNSENDABLE = "ok \udc80 text"
for _name in ("prompt", "lyrics", "instruction", "structure", "title", "reply_ref", "clip", "id"):
    PLAUSIBLE[_name].append(UNSENDABLE)
PLAUSIBLE["ref_images"].append([UNSENDABLE])
PLAUSIBLE["email"].append("a\ud800@example.com")
for _name in ("start_s", "end_s", "fade_in_s", "fade_out_s", "extend_s", "extend_from_s"):
    PLAUSIBLE[_name] = [0, 1.5, 10, -1]
for _name in ("mask_start_s", "mask_end_s", "gain_db", "bass_db", "mid_db", "treble_db"):
    PLAUSIBLE[_name] = [0, 3, -40]
for _name in ("mix", "room_size", "pan", "strength"):
    PLAUSIBLE[_name] = [0, 0.5, 1, 2]

# Parameters left out: callbacks and references (not data) and the journal (a file).
SKIPPED = frozenset({"on_submitting", "client_ref", "journal"})


def value_for(name: str) -> st.SearchStrategy[Any]:
    plausible = PLAUSIBLE.get(name)
    if plausible is None:
        return hostile
    return st.one_of(st.sampled_from(plausible), hostile)


def call_args(method: Callable[..., Any]) -> st.SearchStrategy[tuple[list[Any], dict[str, Any]]]:
    """Positional arguments all given, keyword-only ones each present or left out."""
    positional: list[st.SearchStrategy[Any]] = []
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for param in inspect.signature(method).parameters.values():
        if param.name in SKIPPED:
            continue
        if param.kind is param.POSITIONAL_OR_KEYWORD and param.default is param.empty:
            positional.append(value_for(param.name))
        elif param.kind is param.KEYWORD_ONLY and param.default is param.empty:
            required[param.name] = value_for(param.name)  # e.g. replace's mask_start_s
        elif param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
            optional[param.name] = value_for(param.name)
    return st.tuples(
        st.tuples(*positional).map(list), st.fixed_dictionaries(required, optional=optional)
    )


class Refusing:
    """Counts requests and refuses each (400; 404 for a job), so accepted input ends at once."""

    def __init__(self) -> None:
        self.sent = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        request.read()  # the body must have been encodable
        if request.method == "GET" and request.url.path.startswith("/v1/flowmusic/jobs/"):
            # A job that is not there: a wait ends at once (a 400 poll would wait out the
            # deadline, and the run would be spent sleeping).
            return httpx.Response(404, json={"error": "fuzz: no such job", "code": 404})
        return httpx.Response(400, json={"error": "fuzz: refused", "code": 400})


class Harness:
    """One event loop (a blocking portal) for a whole property; a fresh client per example.

    A fresh client, so that no background work of an earlier example (the poller, a cancel)
    is counted as sent by this one; one loop, because starting a loop per example would
    dominate the run.
    """

    def __enter__(self) -> Harness:
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._portal_cm.__exit__(None, None, None)

    def run(self, call: Callable[[FlowMusic], Awaitable[Any]]) -> tuple[BaseException | None, int]:
        """Run one call; return what it raised (or None) and how many requests it sent."""
        transport = Refusing()

        async def guarded() -> tuple[BaseException | None, int]:
            async with FlowMusic(
                token=TOKEN, transport=httpx.MockTransport(transport), timing=Timing.scaled(0.001)
            ) as fm:
                try:
                    with anyio.fail_after(10):
                        await call(fm)
                except Exception as error:  # the property under test: which exceptions escape
                    return error, transport.sent
            return None, transport.sent

        return self._portal.call(guarded)


def check(outcome: BaseException | None, sent: int) -> None:
    if outcome is None:
        return
    assert isinstance(outcome, FlowMusicError), f"{type(outcome).__name__}: {outcome}"
    assert TOKEN not in str(outcome)
    if isinstance(outcome, (ValidationError, ConfigurationError)):
        assert sent == 0, f"{sent} request(s) sent before the refusal {outcome}"
    else:
        # Every request is answered 400, so any other error must be that answer. Anything else
        # (an "internal error", a decode failure) is bad input that slipped past validation.
        # (A wait whose polls are all refused runs into its deadline: JobTimeout.)
        assert isinstance(outcome, (APIStatusError, JobTimeout)), (
            f"{type(outcome).__name__}: {outcome}"
        )
        assert sent > 0


async def _consume(iterator: Any) -> None:
    async for _ in iterator:
        break


ENTRY_POINTS: dict[str, Callable[[FlowMusic], Callable[..., Any]]] = {
    "generate": lambda fm: fm.generate,
    "submit": lambda fm: fm.submit,
    "edit": lambda fm: fm.edit,
    "submit_edit": lambda fm: fm.submit_edit,
    "wait": lambda fm: fm.wait,
    "fm.effect": lambda fm: fm.effect,
    "fm.extend": lambda fm: fm.extend,
    "fm.replace": lambda fm: fm.replace,
    "fm.cover": lambda fm: fm.cover,
    "fm.remix": lambda fm: fm.remix,
    "music.create": lambda fm: fm.music.create,
    "music.edit": lambda fm: fm.music.edit,
    "music.effect": lambda fm: fm.music.effect,
    "music.extend": lambda fm: fm.music.extend,
    "music.replace": lambda fm: fm.music.replace,
    "music.cover": lambda fm: fm.music.cover,
    "music.remix": lambda fm: fm.music.remix,
    "music.stems": lambda fm: fm.music.stems,
    "music.lyrics": lambda fm: fm.music.lyrics,
    "music.list": lambda fm: fm.music.list,
    "music.download_bytes": lambda fm: fm.music.download_bytes,
    "jobs.get": lambda fm: fm.jobs.get,
    "jobs.cancel": lambda fm: fm.jobs.cancel,
    "accounts.get": lambda fm: fm.accounts.get,
    "accounts.add": lambda fm: fm.accounts.add,
    "accounts.set_max_jobs": lambda fm: fm.accounts.set_max_jobs,
    "accounts.delete": lambda fm: fm.accounts.delete,
    "accounts.usage": lambda fm: fm.accounts.usage,
    "files.upload": lambda fm: fm.files.upload,
    "files.generate": lambda fm: fm.files.generate,
}
# Signatures are read from an unopened client; nothing is sent building the strategies.
_SIGNATURES = FlowMusic(token=TOKEN)


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_entry_point_ends_in_success_or_a_library_error(name: str) -> None:
    """Any argument values: a typed error or success, and nothing sent on a refusal."""
    pick = ENTRY_POINTS[name]

    with Harness() as harness:

        @EXAMPLES
        @given(call_args(pick(_SIGNATURES)))
        def prop(args: tuple[list[Any], dict[str, Any]]) -> None:
            positional, keywords = args
            check(*harness.run(lambda fm: pick(fm)(*positional, **keywords)))

        prop()


@EXAMPLES
@given(
    st.fixed_dictionaries(
        {}, optional={"page_size": value_for("page_size"), "email": value_for("email")}
    )
)
def test_iter_all_ends_in_success_or_a_library_error(keywords: dict[str, Any]) -> None:
    """An async generator checks its arguments before its first request, too."""
    with Harness() as harness:
        check(*harness.run(lambda fm: _consume(fm.music.iter_all(**keywords))))


song_fields = st.fixed_dictionaries(
    {"prompt": value_for("prompt")},
    optional={name: value_for(name) for name in SongRequest.__struct_fields__ if name != "prompt"},
)
batch_request = st.one_of(
    hostile,
    song_fields,
    song_fields.map(lambda fields: {k: v for k, v in fields.items() if k != "prompt"}),
    st.builds(lambda fields: SongRequest(**fields), song_fields),
)


@settings(EXAMPLES, max_examples=20)
@given(
    st.lists(batch_request, min_size=1, max_size=4),
    st.fixed_dictionaries(
        {}, optional={"concurrency": value_for("concurrency"), "deadline": value_for("deadline")}
    ),
)
def test_generate_many_gives_one_outcome_per_request(
    requests: list[Any], keywords: dict[str, Any]
) -> None:
    """One bad request is that request's failed outcome; it never ends the batch."""
    outcomes: list[Any] = []

    async def call(fm: FlowMusic) -> None:
        async with fm.generate_many(requests, **keywords) as run:
            async for outcome in run:
                outcomes.append(outcome)

    with Harness() as harness:
        outcome, sent = harness.run(call)
    check(outcome, sent)
    if outcome is None:
        assert sorted(o.index for o in outcomes) == list(range(len(requests)))
        for failed in outcomes:
            assert failed.ok or isinstance(failed.error, FlowMusicError)


@settings(EXAMPLES, max_examples=60)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            # No arbitrary strings: an accepted token is redacted from every later message of
            # this process, and a token "1" would blank every digit in other tests' errors.
            "token": st.one_of(
                st.sampled_from([TOKEN, "tök-én-1234", " ", "", "a token", "\x00ctl-1234"]),
                hostile.filter(lambda value: not isinstance(value, str)),
            ),
            "base_url": st.one_of(
                st.sampled_from(
                    [
                        "https://api.example/v1",
                        "http://127.0.0.1:9",
                        "http://api.example",
                        "https://[::1",
                    ]
                ),
                hostile,
            ),
            "http_timeout": st.one_of(st.sampled_from([1, 30.0, httpx.Timeout(5.0)]), hostile),
            "transport": st.one_of(
                st.just(httpx.MockTransport(lambda r: httpx.Response(200))), hostile
            ),
            "http_client": hostile,
            "max_retries": st.one_of(st.sampled_from([0, 4]), hostile),
            "timing": st.one_of(st.just(Timing.scaled(0.01)), hostile),
            "event_hooks": st.one_of(st.just([print]), hostile),
            "reply_url": value_for("reply_url"),
        },
    )
)
def test_constructor_ends_in_a_client_or_a_configuration_error(keywords: dict[str, Any]) -> None:
    """Wrong types used to pass here and fail later with AttributeError."""
    environ = {
        k: os.environ.pop(k) for k in ("USEAPI_TOKEN", "FLOWMUSIC_BASE_URL") if k in os.environ
    }
    try:
        FlowMusic(**keywords)
    except ConfigurationError as error:
        token = keywords.get("token")
        if isinstance(token, str) and len(token.strip()) > 3:
            assert token.strip() not in str(error)
    finally:
        os.environ.update(environ)


@settings(EXAMPLES, max_examples=40)
@given(
    st.one_of(st.binary(max_size=64), hostile, st.builds(str.encode, any_text.filter(str.isascii)))
)
def test_webhook_handle_answers_or_refuses_the_type(body: Any) -> None:
    """A callback body of any bytes gets a result; a non-bytes argument is a ValidationError."""
    results: list[Any] = []

    async def call(fm: FlowMusic) -> None:
        results.append(await fm.webhooks.handle(body))

    with Harness() as harness:
        outcome, sent = harness.run(call)
    check(outcome, sent)
    if isinstance(body, (bytes, bytearray, memoryview)):
        assert outcome is None and results and not results[0].accepted
