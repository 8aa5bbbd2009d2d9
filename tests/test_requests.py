"""The typed surface: requests defined once, timeout names, reply_url, records as JSON."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any, get_args

import httpx
import msgspec
import pytest

from flowmusic_async import (
    Completed,
    ConfigurationError,
    EditRequest,
    EffectName,
    Event,
    Failed,
    FlowMusic,
    Job,
    JobTimeout,
    Music,
    SongRequest,
    ValidationError,
)
from flowmusic_async._edits import EditHelpers, JobEditHelpers
from flowmusic_async._journal import fingerprint
from flowmusic_async._validation import EFFECTS
from flowmusic_async.testing.pytest_plugin import MakeClient, MakeSim

SCALE = 0.002
# The simulators this module's tests build (flowmusic_make_sim) start from these.
pytestmark = pytest.mark.flowmusic_sim(
    time_scale=SCALE, seed=3, account_email="acct{i}@example.com"
)


def fields_of(struct: type[msgspec.Struct]) -> dict[str, tuple[str, object]]:
    # Defaults belong to the last fields; the first ones (no default) are left out by strict=False.
    names, values = struct.__struct_fields__[::-1], struct.__struct_defaults__[::-1]
    defaults = dict(zip(names, values, strict=False))
    return {
        name: (struct.__annotations__[name], defaults.get(name, inspect.Parameter.empty))
        for name in struct.__struct_fields__
    }


def params_of(function: Callable[..., Any], *, skip: tuple[str, ...]) -> dict[str, Any]:
    return {
        name: (str(p.annotation), p.default)
        for name, p in inspect.signature(function).parameters.items()
        if name not in ("self", *skip)
    }


SONG_SIGNATURES = [
    (FlowMusic.submit, ("deadline", "client_ref", "on_submitting", "timeout", "tenant")),
    (FlowMusic.generate, ("deadline", "timeout", "tenant")),
    (Music.create, ("mode",)),
]
EDIT_SIGNATURES = [
    (FlowMusic.submit_edit, ("deadline", "timeout", "tenant")),
    (FlowMusic.edit, ("deadline", "timeout", "tenant")),
    (Music.edit, ("mode",)),
]


@pytest.mark.parametrize(("method", "extra"), SONG_SIGNATURES + EDIT_SIGNATURES)
def test_every_signature_is_its_request_struct(method: Any, extra: tuple[str, ...]) -> None:
    """One definition: a field added to SongRequest/EditRequest must reach every method."""
    struct = SongRequest if (method, extra) in SONG_SIGNATURES else EditRequest
    assert params_of(method, skip=extra) == fields_of(struct)


@pytest.mark.parametrize("helpers", [EditHelpers, JobEditHelpers])
@pytest.mark.parametrize("operation", ["effect", "extend", "replace", "cover", "remix"])
def test_edit_helpers_take_only_fields_of_edit_request(helpers: type, operation: str) -> None:
    """Per-operation helpers are typed subsets of the one edit definition."""
    own = params_of(getattr(helpers, operation), skip=("clip", "mode", "deadline"))
    fields = fields_of(EditRequest)
    for name, (annotation, _default) in own.items():
        assert name in fields
        assert annotation in (fields[name][0], fields[name][0].removesuffix(" | None"))


def test_effect_names_are_the_validation_table() -> None:
    """The Literal a checker sees and the table validation reads cannot drift apart."""
    assert tuple(EFFECTS) == get_args(EffectName)


def test_fingerprint_is_the_request_and_ignores_where_it_is_delivered() -> None:
    """A journal resumes whether requests were given as Structs or mappings, or a hook moved."""
    plain = fingerprint({"prompt": "x", "instrumental": True})
    assert fingerprint(SongRequest(prompt="x", instrumental=True)) == plain
    assert fingerprint(SongRequest(prompt="x", instrumental=True, reply_url="https://a/b")) == plain
    assert fingerprint(SongRequest(prompt="x")) != plain


@pytest.mark.anyio
async def test_a_misspelt_keyword_is_refused_before_anything_is_sent(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """`instrumentl=True` is a TypeError at once (and a checker error), not a silent no-op."""
    sim = flowmusic_make_sim(2)
    async with flowmusic_make_client(sim) as fm:
        with pytest.raises(TypeError):
            await fm.generate("x", instrumentl=True)  # type: ignore[call-arg]
        with pytest.raises(ValidationError) as info:
            await fm.generate("x", model="lyria-4")  # type: ignore[arg-type]
    assert info.value.field == "model"
    assert sum(sim.stats.requests.values()) == 0


@pytest.mark.anyio
async def test_outcomes_are_completed_or_failed(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """A batch yields narrowable types: Completed has a Job, Failed a typed error."""
    sim = flowmusic_make_sim(2)
    async with flowmusic_make_client(sim) as fm:
        requests: list[str | SongRequest | dict[str, Any]] = [
            SongRequest(prompt="ok", instrumental=True),
            {"prompt": "bad", "model": "lyria-4"},
        ]
        async with fm.generate_many(requests) as outcomes:
            got = {o.index: o async for o in outcomes}
    assert isinstance(got[0], Completed) and got[0].ok and got[0].job.is_completed
    assert got[0].request == {"prompt": "ok", "instrumental": True}
    assert isinstance(got[1], Failed) and not got[1].ok and got[1].job is None
    assert isinstance(got[1].error, ValidationError)
    as_json = msgspec.json.decode(msgspec.json.encode([got[0].to_dict(), got[1].to_dict()]))
    assert [d["ok"] for d in as_json] == [True, False]
    assert as_json[0]["job"]["jobid"] == got[0].job.jobid
    assert as_json[1]["error_type"] == "ValidationError" and "model" in as_json[1]["error"]


@pytest.mark.anyio
async def test_new_names_do_not_warn_and_http_timeout_takes_an_httpx_timeout(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """`http_timeout` (float or httpx.Timeout) and `deadline` are the names to use."""
    sim = flowmusic_make_sim(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        async with flowmusic_make_client(sim, http_timeout=httpx.Timeout(5.0, read=None)) as fm:
            assert fm.music._long_timeout().read is None  # no limit stays no limit
            with pytest.raises(JobTimeout):
                await fm.generate("slow", deadline=0.001)
            assert (await fm.generate("x", deadline=30)).is_completed
    with pytest.raises(ConfigurationError):
        FlowMusic(token="t", http_timeout=0)


@pytest.mark.anyio
async def test_a_fastapi_route_returns_records_as_json(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """Records convert in one call, so a web route can return them as is."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    sim = flowmusic_make_sim(2)
    async with flowmusic_make_client(sim) as fm:
        job = await fm.generate("for the web", instrumental=True)

    app = FastAPI()

    @app.get("/songs/{jobid}")
    def song(jobid: str) -> dict[str, Any]:
        assert jobid == job.jobid
        return job.to_dict()

    response = TestClient(app).get(f"/songs/{job.jobid}")
    assert response.status_code == 200
    assert msgspec.convert(response.json(), Job) == job
    assert response.json()["clips"][0]["audio_url"] == job.clips[0].audio_url


@pytest.mark.anyio
async def test_per_operation_helpers_on_the_client_run_each_edit_to_its_end(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """fm.extend / fm.cover / fm.effect wait like generate, on the clip's own account."""
    sim = flowmusic_make_sim(2)
    async with flowmusic_make_client(sim) as fm:
        song = await fm.generate("source")
        clip = song.clips[0].clip
        extended = await fm.extend(clip, "add an outro", extend_s=20, deadline=30)
        covered = await fm.cover(clip, instruction="bossa nova", strength=0.5)
        louder = await fm.effect(clip, "Gain", gain_db=3)
    assert [j.operation for j in (extended, covered, louder)] == ["extend", "cover", "effect"]
    assert all(j.is_completed and j.email == song.email for j in (extended, covered, louder))


def test_events_carry_typed_errors_and_convert_to_json() -> None:
    """A hook reads `event.error.jobid` without a cast and can log `event.to_dict()`."""
    error = JobTimeout("job:1", email="a@example.com", timeout=3)
    event = Event(kind="timeout", at=1.0, jobid="job:1", error=error)
    assert event.error is not None and event.error.jobid == "job:1"
    data = event.to_dict()
    assert data["error_type"] == "JobTimeout" and data["kind"] == "timeout"
    assert msgspec.json.decode(msgspec.json.encode(data)) == data


def test_a_mapping_without_a_prompt_or_with_an_unknown_field_is_refused() -> None:
    """Batch items are checked against the one definition, naming the field."""
    from flowmusic_async._batch import normalize_request

    with pytest.raises(ValidationError) as missing:
        normalize_request({"instrumental": True})
    assert missing.value.field == "prompt"
    with pytest.raises(ValidationError) as unknown:
        normalize_request({"prompt": "x", "instrumentl": True})
    assert unknown.value.field == "instrumentl"
    assert normalize_request(SongRequest(prompt="x", ref_images=["a:1"])) == {
        "prompt": "x",
        "ref_images": ["a:1"],
    }
