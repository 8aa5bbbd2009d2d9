"""The checked configuration: FlowMusic's arguments in one object that never shows the token."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from flowmusic_async import ConfigurationError
from flowmusic_async._config import DEFAULT_BASE_URL, client_config

TOKEN = "user:8-ConfigSecretToken"


def test_the_checked_configuration_carries_the_token_but_its_repr_never_shows_it() -> None:
    """A config object logged or printed while debugging must not be a way for the token out."""
    config = client_config(token=f"  {TOKEN}\n", http_timeout=5)
    assert config.token == TOKEN and config.base_url == DEFAULT_BASE_URL
    assert config.http_timeout == httpx.Timeout(5.0)
    assert TOKEN not in repr(config) and TOKEN not in str(config)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"tenant_weights": [("a", 2)]}, "tenant_weights must be a mapping"),
        ({"tenant_weights": {"a": 0}}, r"tenant_weights\['a'\] must be a positive number"),
        ({"tenant_weights": {"a": float("nan")}}, r"tenant_weights\['a'\]"),
        ({"tenant_weights": {"a": True}}, r"tenant_weights\['a'\]"),
        ({"tenant_weights": {1: 2.0}}, "tenant_weights keys must be tenant strings"),
        ({"tenant_max_jobs": 0}, "tenant_max_jobs must be an integer >= 1"),
        ({"tenant_max_jobs": 2.5}, "tenant_max_jobs must be an integer >= 1"),
        ({"tenant_max_jobs": {"a": 0}}, r"tenant_max_jobs\['a'\] must be an integer >= 1"),
        ({"tenant_max_jobs": {None: 3}}, "tenant_max_jobs keys must be tenant strings"),
    ],
)
def test_tenant_settings_that_cannot_work_are_refused_naming_the_field(
    arguments: dict[str, Any], message: str
) -> None:
    """A zero weight would starve a tenant and a zero cap would queue it forever: refused at
    construction, with the argument (and the tenant) named."""
    with pytest.raises(ConfigurationError, match=message):
        client_config(token=TOKEN, **arguments)


def test_tenant_settings_are_copied_and_checked() -> None:
    """The client keeps its own copy: a caller's mapping changed later changes nothing."""
    weights = {"guild-1": 2}
    config = client_config(token=TOKEN, tenant_weights=weights, tenant_max_jobs={"guild-1": 4})
    weights["guild-1"] = 100
    assert config.tenant_weights == {"guild-1": 2.0}
    assert config.tenant_max_jobs == {"guild-1": 4}
    assert client_config(token=TOKEN, tenant_max_jobs=3).tenant_max_jobs == 3
