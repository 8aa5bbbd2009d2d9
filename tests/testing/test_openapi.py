"""docs/openapi.yaml is sound, covers every endpoint, and the simulator's answers conform to it.

The full schemathesis run is `nox -s conformance`; this is the fast guard in every test run,
so drift between the document and the simulator is caught without that session.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator

from flowmusic_async.testing import Simulator

ROOT = Path(__file__).resolve().parents[2]
DOC: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text("utf-8"))
SEED = ROOT.parent / "shared" / "api" / "seed-post-music.txt"
ENDPOINTS = {
    ("post", "/accounts"),
    ("get", "/accounts"),
    ("get", "/accounts/{email}"),
    ("delete", "/accounts/{email}"),
    ("get", "/accounts/usage"),
    ("post", "/music"),
    ("get", "/music"),
    ("post", "/music/edit"),
    ("post", "/music/lyrics"),
    ("get", "/music/download"),
    ("post", "/files"),
    ("post", "/files/generate"),
    ("get", "/jobs"),
    ("get", "/jobs/{jobid}"),
    ("delete", "/jobs/{jobid}"),
}


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for one schema of the document, its `#/components/...` refs resolvable."""
    root = {**schema, "components": DOC["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    methods = ("get", "post", "delete", "put", "patch")
    return [
        (m, path, op)
        for path, item in DOC["paths"].items()
        for m, op in item.items()
        if m in methods
    ]


def _response_schema(method: str, path: str, status: int) -> dict[str, Any]:
    response = DOC["paths"][path][method]["responses"][str(status)]
    if "$ref" in response:
        response = DOC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    return schema


def test_the_document_is_openapi_3_1_and_covers_every_endpoint() -> None:
    """Every endpoint of the API is described, and nothing else."""
    assert DOC["openapi"] == "3.1.0"
    assert {(m, p) for m, p, _ in _operations()} == ENDPOINTS


def test_every_schema_is_valid_json_schema_and_every_ref_resolves() -> None:
    """A broken schema or a dangling $ref would make the conformance run meaningless."""
    for name, schema in DOC["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        assert isinstance(name, str)
    text = json.dumps(DOC)
    for ref in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
        node: Any = DOC
        for part in ref.split("/"):
            node = node[part]  # KeyError: a dangling reference


def test_every_operation_documents_auth_and_every_answer_has_a_body_shape() -> None:
    """401 everywhere; every non-204 answer names its content and schema."""
    for method, path, op in _operations():
        assert "401" in op["responses"], (method, path)
        for status, response in op["responses"].items():
            if "$ref" in response:
                response = DOC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
            if status != "204":
                assert response.get("content"), (method, path, status)


def test_post_music_links_to_its_job() -> None:
    """Stateful testing follows POST /music -> GET /jobs/{jobid}."""
    responses = DOC["paths"]["/music"]["post"]["responses"]
    for status in ("200", "201"):
        link = responses[status]["links"]["GetJob"]["$ref"].rsplit("/", 1)[1]
        assert DOC["components"]["links"][link] == {
            "operationId": "getJob",
            "parameters": {"jobid": "$response.body#/jobid"},
        }


@pytest.mark.skipif(
    not SEED.is_file(),
    reason="needs the API's POST /music page, which only the project's CI has "
    "(docs/api-notes.md#the-seed-page)",
)
def test_the_seed_pages_examples_conform_to_the_document() -> None:
    """The POST /music page's own bodies validate against the document's schemas."""
    from test_seed_examples import ERRORS, RECORDS, REQUESTS, STATUS_OF  # only with the seed

    request_schema = DOC["paths"]["/music"]["post"]["requestBody"]["content"]["application/json"]
    for body in REQUESTS:
        _validator(request_schema["schema"]).validate(body)

    for record in RECORDS:
        _validator(_response_schema("post", "/music", STATUS_OF[record["status"]])).validate(record)
    for error in ERRORS:
        _validator(_response_schema("post", "/music", error["code"])).validate(error)


async def _answers(sim: Simulator) -> list[tuple[str, str, httpx.Response]]:
    headers = {"Authorization": f"Bearer {sim.token}"}
    async with httpx.AsyncClient(
        transport=sim.transport(), base_url=sim.base_url, headers=headers
    ) as http:
        out: list[tuple[str, str, httpx.Response]] = []

        async def call(method: str, template: str, url: str, **kw: Any) -> httpx.Response:
            r = await http.request(method.upper(), url, **kw)
            out.append((method, template, r))
            return r

        song = (await call("post", "/music", "/music", json={"prompt": "a"})).json()
        pending = await call("post", "/music", "/music", json={"prompt": "b", "mode": "async"})
        await call("get", "/jobs", "/jobs")
        await call("get", "/jobs/{jobid}", f"/jobs/{pending.json()['jobid']}")
        await call("post", "/music", "/music", json={"prompt": "[moderate] no"})
        await call("post", "/music", "/music", json={})
        await call("get", "/music", "/music")
        await call("get", "/accounts", "/accounts")
        await call("get", "/accounts/{email}", "/accounts/alpha%40example.com")
        await call(
            "get", "/accounts/usage", "/accounts/usage", params={"email": "alpha@example.com"}
        )
        clip = song["clips"][0]["clip"]
        body = {"operation": "stems", "clip": clip}
        await call("post", "/music/edit", "/music/edit", json=body)
        body = {"operation": "cover", "clip": clip, "mode": "async"}
        await call("post", "/music/edit", "/music/edit", json=body)
        await call("post", "/music/lyrics", "/music/lyrics", json={"prompt": "x"})
        await call("post", "/music/lyrics", "/music/lyrics", json={"prompt": "[moderate]"})
        await call("post", "/files/generate", "/files/generate", json={"prompt": "x"})
        await call("get", "/jobs/{jobid}", "/jobs/job:nope-user:1001-x-bot:flowmusic")
        sim.set_account_error("alpha@example.com", "refresh token rejected")
        await call("post", "/music", "/music", json={"prompt": "c"})
        await call("post", "/accounts", "/accounts", json={"refresh_token": "abcdefghijkl"})
        return out


@pytest.mark.anyio
async def test_simulator_answers_conform_to_the_document() -> None:
    """A spread of real simulator answers, 2xx and errors, validate against their schemas."""
    # Songs of 80-300 ms: at 0.0005 (20 ms) a loaded machine could build an async POST's
    # answer after its job had already ended, and the answer read "completed".
    sim = Simulator(time_scale=0.002)
    answers = await _answers(sim)
    statuses = set()
    for method, template, r in answers:
        schema = _response_schema(method, template, r.status_code)
        _validator(schema).validate(r.json())
        statuses.add(r.status_code)
    assert statuses == {200, 201, 400, 404, 422, 596}  # the spread really was a spread
