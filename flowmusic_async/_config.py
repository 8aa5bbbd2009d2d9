"""`FlowMusic`'s keyword arguments checked, and defaults read from the environment, in one place.

`client_config` refuses, with a `ConfigurationError` naming the argument, whatever cannot work
(no token, plain http:// to a remote host, a wrong type that would otherwise fail later as an
AttributeError) and returns a `ClientConfig` the client takes its settings from. Nothing here
keeps or logs the token, and no message quotes it, even a malformed one.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from ._bodies import DEFAULT_MAX_DOWNLOAD_BYTES, DEFAULT_MAX_RESPONSE_BYTES
from ._errors import ConfigurationError, ValidationError
from ._events import EventHook
from ._lanes import HttpBackend, check_http_backend
from ._spend import SpendLedger
from ._telemetry import TelemetrySetting
from ._telemetry import check_setting as check_telemetry
from ._timing import Timing
from ._validation import MAX_SECONDS, check_reply_url

__all__ = ["BASE_URL_ENV", "DEFAULT_BASE_URL", "TOKEN_ENV", "ClientConfig", "client_config"]

DEFAULT_BASE_URL = "https://api.useapi.net/v1/flowmusic"
TOKEN_ENV = "USEAPI_TOKEN"
BASE_URL_ENV = "FLOWMUSIC_BASE_URL"


@dataclass(frozen=True, slots=True, repr=False)
class ClientConfig:
    """Every argument of `FlowMusic`, checked, with the environment's defaults applied."""

    token: str
    base_url: str
    http_timeout: httpx.Timeout
    transport: httpx.AsyncBaseTransport | None
    http_client: httpx.AsyncClient | None
    max_retries: int
    timing: Timing
    event_hooks: tuple[EventHook, ...]
    reply_url: str | None
    max_response_bytes: int
    max_download_bytes: int
    http_backend: HttpBackend
    tenant_weights: Mapping[str, float] | None = None
    tenant_max_jobs: int | Mapping[str, int] | None = None
    telemetry: TelemetrySetting = None
    # The spend limits and prices, as the ledger that enforces them (a new one per client).
    spend: SpendLedger = field(default_factory=SpendLedger)
    min_credits_left: float | None = None

    def __repr__(self) -> str:  # never the token
        return f"<ClientConfig base_url={self.base_url!r}>"


def client_config(
    *,
    token: str | None = None,
    base_url: str | None = None,
    http_timeout: float | httpx.Timeout = 30.0,
    transport: httpx.AsyncBaseTransport | None = None,
    http_client: httpx.AsyncClient | None = None,
    max_retries: int = 4,
    timing: Timing | None = None,
    event_hooks: Iterable[EventHook] = (),
    reply_url: str | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    http_backend: HttpBackend = "auto",
    tenant_weights: Mapping[str, float] | None = None,
    tenant_max_jobs: int | Mapping[str, int] | None = None,
    spend_limit: float | None = None,
    tenant_spend_limit: float | None = None,
    tenant_spend_limits: Mapping[str, float] | None = None,
    costs: Mapping[str, float] | None = None,
    min_credits_left: float | None = None,
    telemetry: TelemetrySetting = None,
) -> ClientConfig:
    """`FlowMusic`'s arguments checked in the order a caller reads them; see `FlowMusic`.

    Raises:
        ConfigurationError: the first argument that cannot work, named; or an invalid
            ``FLOWMUSIC_TIME_SCALE`` when `timing` is not given.
    """
    token = _check_token(token if token is not None else os.environ.get(TOKEN_ENV))
    if base_url is None:
        base_url = os.environ.get(BASE_URL_ENV, "").strip() or DEFAULT_BASE_URL
    base_url = _check_base_url(base_url)
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError(f"max_retries must be an integer >= 0, got {max_retries!r}")
    # Checked here, so that a wrong type is named now rather than an AttributeError later.
    _check_type("transport", transport, httpx.AsyncBaseTransport, "httpx.AsyncBaseTransport")
    _check_type("http_client", http_client, httpx.AsyncClient, "httpx.AsyncClient")
    _check_type("timing", timing, Timing, "flowmusic_async.Timing")
    if transport is not None and http_client is not None:
        raise ConfigurationError("pass transport= or http_client=, not both")
    http_backend = check_http_backend(http_backend, transport=transport, http_client=http_client)
    if reply_url is not None:
        try:
            check_reply_url("reply_url", reply_url)
        except ValidationError as error:
            raise ConfigurationError(str(error)) from None
    hooks = _check_hooks(event_hooks)
    for name, cap in (
        ("max_response_bytes", max_response_bytes),
        ("max_download_bytes", max_download_bytes),
    ):
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ConfigurationError(f"{name} must be an integer >= 1, got {cap!r}")
    return ClientConfig(
        token=token,
        base_url=base_url,
        http_timeout=_check_http_timeout(http_timeout),
        transport=transport,
        http_client=http_client,
        max_retries=max_retries,
        timing=timing if timing is not None else Timing.from_env(),
        event_hooks=hooks,
        reply_url=reply_url,
        max_response_bytes=max_response_bytes,
        max_download_bytes=max_download_bytes,
        http_backend=http_backend,
        tenant_weights=_check_tenant_weights(tenant_weights),
        tenant_max_jobs=_check_tenant_max_jobs(tenant_max_jobs),
        telemetry=check_telemetry(telemetry),
        spend=_spend_ledger(
            spend_limit=spend_limit,
            tenant_spend_limit=tenant_spend_limit,
            tenant_spend_limits=tenant_spend_limits,
            costs=costs,
        ),
        min_credits_left=_check_min_credits_left(min_credits_left),
    )


def _check_tenant_weights(weights: object) -> dict[str, float] | None:
    """A copy of `tenant_weights`: tenant keys (str) -> a positive, finite share."""
    if weights is None:
        return None
    if not isinstance(weights, Mapping):
        raise ConfigurationError(
            f"tenant_weights must be a mapping of tenant -> weight, got {type(weights).__name__}"
        )
    checked: dict[str, float] = {}
    for tenant, weight in weights.items():
        if not isinstance(tenant, str):
            raise ConfigurationError(
                f"tenant_weights keys must be tenant strings, got {type(tenant).__name__}"
            )
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not (math.isfinite(weight) and weight > 0)
        ):
            raise ConfigurationError(
                f"tenant_weights[{tenant!r}] must be a positive number, got {weight!r}"
            )
        checked[tenant] = float(weight)
    return checked


def _check_tenant_max_jobs(caps: object) -> int | dict[str, int] | None:
    """`tenant_max_jobs`: one cap >= 1 for every tenant, or a mapping tenant -> cap >= 1."""
    if caps is None:
        return None
    if isinstance(caps, Mapping):
        checked: dict[str, int] = {}
        for tenant, cap in caps.items():
            if not isinstance(tenant, str):
                raise ConfigurationError(
                    f"tenant_max_jobs keys must be tenant strings, got {type(tenant).__name__}"
                )
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise ConfigurationError(
                    f"tenant_max_jobs[{tenant!r}] must be an integer >= 1, got {cap!r}"
                )
            checked[tenant] = cap
        return checked
    if isinstance(caps, bool) or not isinstance(caps, int) or caps < 1:
        raise ConfigurationError(
            "tenant_max_jobs must be an integer >= 1 or a mapping of tenant -> integer, "
            f"got {caps!r}"
        )
    return caps


def _check_type(name: str, value: object, kind: type, shown: str) -> None:
    if value is not None and not isinstance(value, kind):
        raise ConfigurationError(f"{name} must be {shown} or None, got {type(value).__name__}")


def _check_hooks(hooks: object) -> tuple[EventHook, ...]:
    if callable(hooks) or isinstance(hooks, (str, bytes)):
        raise ConfigurationError("event_hooks must be an iterable of callables, not one")
    if not isinstance(hooks, Iterable):
        raise ConfigurationError(
            f"event_hooks must be an iterable of callables, got {type(hooks).__name__}"
        )
    found: tuple[EventHook, ...] = tuple(hooks)
    for hook in found:
        if not callable(hook):
            raise ConfigurationError(f"event_hooks holds a {type(hook).__name__}, not a callable")
    return found


def _check_http_timeout(value: float | httpx.Timeout) -> httpx.Timeout:
    if isinstance(value, httpx.Timeout):
        return value
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value <= MAX_SECONDS  # also refuses NaN, inf and ints too big for a float
    ):
        raise ConfigurationError(
            f"http_timeout must be a positive number of seconds or an httpx.Timeout, got {value!r}"
        )
    return httpx.Timeout(float(value))


def _check_token(token: object) -> str:
    # No message here ever quotes the token, even a malformed one: it is still a secret.
    if token is not None and not isinstance(token, str):
        raise ConfigurationError(f"token must be a string, got {type(token).__name__}")
    if token is None or not token.strip():
        raise ConfigurationError(
            f"no API token: pass token= or set the {TOKEN_ENV} environment variable"
        )
    token = token.strip()
    # A header value with control characters or spaces would be refused by httpx with an error
    # quoting the header; say it here without repeating the token.
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        raise ConfigurationError("the API token contains whitespace or control characters")
    # httpx encodes header values as ASCII; anything else fails at the first request with a
    # UnicodeEncodeError whose args hold "Bearer <token>".
    if not token.isascii():
        raise ConfigurationError("the API token contains non-ASCII characters")
    return token


def _check_base_url(base_url: object) -> str:
    if not isinstance(base_url, str):
        raise ConfigurationError(f"base_url must be a string, got {type(base_url).__name__}")
    try:
        parts = urlsplit(base_url)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
        httpx.URL(base_url)  # what will really be used: refuse what httpx cannot parse now
    except (ValueError, httpx.InvalidURL) as error:  # "https://[::1", ":99999", a surrogate
        raise ConfigurationError(f"base_url is not a valid URL ({error}): {base_url!r}") from None
    if parts.scheme not in ("https", "http") or not hostname:
        raise ConfigurationError(f"base_url must be an https:// URL, got {base_url!r}")
    if parts.scheme == "http" and not _is_loopback(hostname):
        raise ConfigurationError(
            f"base_url {base_url!r} uses plain http:// to a non-loopback host; the token would "
            "travel unencrypted. Use https://, or http:// only for localhost/127.0.0.1/::1"
        )
    return base_url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _spend_ledger(
    *,
    spend_limit: float | None,
    tenant_spend_limit: float | None,
    tenant_spend_limits: Mapping[str, float] | None,
    costs: Mapping[str, float] | None,
) -> SpendLedger:
    """The client's spend limits and prices, checked (docs/concepts/spending.md).

    Raises:
        ConfigurationError: a limit or a cost that is not a finite number >= 0, or an
            operation the API does not have.
    """
    try:
        return SpendLedger(
            limit=spend_limit,
            tenant_limit=tenant_spend_limit,
            tenant_limits=tenant_spend_limits,
            costs=costs,
        )
    except ValidationError as error:
        raise ConfigurationError(str(error)) from None


def _check_min_credits_left(value: float | None) -> float | None:
    """The credit floor: None (no floor), or a finite number of credits >= 0."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(
            f"min_credits_left must be a finite number of credits >= 0, got {value!r}"
        )
    return float(value)
