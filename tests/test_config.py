"""The checked configuration: FlowMusic's arguments in one object that never shows the token."""

from __future__ import annotations

import httpx

from flowmusic_async._config import DEFAULT_BASE_URL, client_config

TOKEN = "user:8-ConfigSecretToken"


def test_the_checked_configuration_carries_the_token_but_its_repr_never_shows_it() -> None:
    """A config object logged or printed while debugging must not be a way for the token out."""
    config = client_config(token=f"  {TOKEN}\n", http_timeout=5)
    assert config.token == TOKEN and config.base_url == DEFAULT_BASE_URL
    assert config.http_timeout == httpx.Timeout(5.0)
    assert TOKEN not in repr(config) and TOKEN not in str(config)
