"""The simulator's own request/response values and the errors handlers raise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

_ENCODE = msgspec.json.Encoder().encode


class ConnectionDropped(Exception):
    """Raised out of the ASGI app: the connection must close without an answer."""


@dataclass
class Request:
    """One HTTP request, path segments already percent-decoded exactly once."""

    method: str
    segments: tuple[str, ...]
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    origin: str  # "http://localhost", where media URLs point


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> Response:
        head = [("content-type", "application/json"), *(headers or [])]
        return cls(status, _ENCODE(obj), head)

    @property
    def is_json(self) -> bool:
        return any(k == "content-type" and v == "application/json" for k, v in self.headers)


class ApiError(Exception):
    """An error answer: `{"error": message, "code": status}` plus optional extra fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers: list[tuple[str, str]] = headers or []
        self.body = body

    def response(self) -> Response:
        body = self.body if self.body is not None else {"error": self.message, "code": self.status}
        return Response.json(self.status, body, self.headers)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, message)


def account_error(email: str, reason: str) -> ApiError:
    return ApiError(596, f"Account {email} in error state: {reason}")
