"""FlowMusic: configuration, lifecycle, secrets, and the hooks the engine builds on."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from mock_api import TOKEN, MockAPI

from flowmusic_async._client import FlowMusic
from flowmusic_async._errors import (
    AuthenticationError,
    ClientClosedError,
    ConfigurationError,
    FlowMusicError,
    ValidationError,
)

pytestmark = pytest.mark.anyio


def test_token_defaults_to_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """USEAPI_TOKEN is the documented way to configure the token."""
    monkeypatch.setenv("USEAPI_TOKEN", TOKEN)
    assert FlowMusic()._token == TOKEN


def test_missing_token_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a token nothing works; the error must say how to provide one."""
    monkeypatch.delenv("USEAPI_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="USEAPI_TOKEN"):
        FlowMusic()
    with pytest.raises(ConfigurationError):
        FlowMusic(token="   ")


def test_token_with_whitespace_refused_without_echoing_it() -> None:
    """A pasted token with a newline would break the header; the error must not print it."""
    with pytest.raises(ConfigurationError) as info:
        FlowMusic(token="user:1-abc def")
    assert "abc def" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["http://api.useapi.net/v1/flowmusic", "http://10.0.0.5:8080", "ftp://localhost/x", "nonsense"],
)
def test_plain_http_to_remote_hosts_is_refused(url: str) -> None:
    """The token would travel in clear text; only loopback simulators may use http://."""
    with pytest.raises(ConfigurationError):
        FlowMusic(token=TOKEN, base_url=url)


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/v1/flowmusic",
        "http://127.0.0.1:8000",
        "http://127.8.9.10",
        "http://[::1]:9000/v1/flowmusic/",
        "https://api.useapi.net/v1/flowmusic",
    ],
)
def test_loopback_http_and_https_are_accepted(url: str) -> None:
    """The simulator runs on loopback over http://; https works everywhere."""
    assert FlowMusic(token=TOKEN, base_url=url).base_url == url.rstrip("/")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"http_timeout": 0},
        {"http_timeout": "30"},
        {"max_retries": -1},
        {"max_retries": True},
        {
            "transport": httpx.MockTransport(lambda r: httpx.Response(200)),
            "http_client": httpx.AsyncClient(),
        },
    ],
)
def test_bad_options_are_configuration_errors(kwargs: dict[str, Any]) -> None:
    """Nonsense options fail at construction, not on the first request."""
    with pytest.raises(ConfigurationError):
        FlowMusic(token=TOKEN, **kwargs)


async def test_repr_and_errors_never_show_the_token(api: MockAPI) -> None:
    """Reprs and error messages end up in logs and bug reports; the token must never."""
    api.reply(401, {"error": f"Invalid token {TOKEN}", "code": 401})
    fm = FlowMusic(token=TOKEN, transport=api.transport())
    assert TOKEN not in repr(fm) and "SeCrEt" not in repr(fm)
    async with fm:
        assert TOKEN not in repr(fm) and TOKEN not in repr(fm._http)
        with pytest.raises(AuthenticationError) as info:
            await fm.jobs.list()
    error = info.value
    for text in (str(error), repr(error), str(error.server_message), str(error.body)):
        assert TOKEN not in text
    assert "SeCrEt" not in str(error)


async def test_use_before_entering_is_a_clear_error(api: MockAPI) -> None:
    """Calling without `async with` must explain the fix, and send nothing."""
    fm = FlowMusic(token=TOKEN, transport=api.transport())
    with pytest.raises(ClientClosedError, match="async with"):
        await fm.jobs.list()
    assert api.requests == []


async def test_use_after_close_is_refused(api: MockAPI) -> None:
    """A closed client has no connection pool; using it must fail clearly, not hang."""
    fm = FlowMusic(token=TOKEN, transport=api.transport())
    async with fm:
        pass
    assert fm.closed
    with pytest.raises(ClientClosedError, match="closed"):
        await fm.jobs.get("job:1")
    with pytest.raises(ClientClosedError):
        await fm.__aenter__()
    assert api.requests == []


async def test_cannot_enter_twice(api: MockAPI) -> None:
    """One client owns one task group; entering twice would orphan the first."""
    async with FlowMusic(token=TOKEN, transport=api.transport()) as fm:
        with pytest.raises(FlowMusicError):
            await fm.__aenter__()


async def test_user_http_client_is_used_and_left_open(api: MockAPI) -> None:
    """The caller owns a client it passed in; closing it would break their other code."""
    api.reply(200, {})
    async with httpx.AsyncClient(transport=api.transport()) as http_client:
        async with FlowMusic(token=TOKEN, http_client=http_client) as fm:
            assert fm._http.client is http_client
            assert await fm.jobs.list() == {}
        assert not http_client.is_closed
    assert api.last.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in http_client.headers


async def test_owned_http_client_is_closed_and_carries_no_token(api: MockAPI) -> None:
    """Media downloads reuse fm._http.client: it must not send the token by default."""
    fm = FlowMusic(token=TOKEN, transport=api.transport())
    async with fm:
        client = fm._http.client
        assert "authorization" not in client.headers
    assert client.is_closed


async def test_errors_in_the_body_propagate_unwrapped(api: MockAPI) -> None:
    """Callers catch ValidationError et al.; the task group must not wrap them in a group."""
    with pytest.raises(ValidationError):
        async with FlowMusic(token=TOKEN, transport=api.transport()) as fm:
            await fm.music.create("")
    assert fm.closed
