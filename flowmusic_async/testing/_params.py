"""Strict request parsing: JSON or form bodies, string coercion, the documented 400 messages.

Form bodies (the Postman collection sends everything as multipart) carry numbers and booleans as
strings, so every field accepts its value either typed or as a string. Unknown fields are refused:
the simulator is strict so that it catches client bugs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from ._wire import Request, bad_request

STR, INT, FLOAT, BOOL = "string", "integer", "number", "boolean"
ANY = "any"  # accepted and ignored


@dataclass(frozen=True)
class Field:
    """One accepted parameter: its type, whether required, and its range or choices."""

    kind: str = STR
    required: bool = False
    lo: float | None = None  # numbers: minimum; strings: minimum length
    hi: float | None = None  # numbers: maximum; strings: maximum length
    choices: tuple[str, ...] = ()


def body_fields(req: Request) -> dict[str, Any]:
    """The raw fields of a JSON, multipart or urlencoded body ({} when empty)."""
    ctype = req.headers.get("content-type", "")
    base = ctype.split(";", 1)[0].strip().lower()
    if base == "multipart/form-data":
        return _multipart(req.body, ctype)
    if base == "application/x-www-form-urlencoded":
        return _single(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
    if not req.body.strip():
        return {}
    try:
        data = msgspec.json.decode(req.body)
    except msgspec.DecodeError:
        raise bad_request("Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise bad_request("Request body must be a JSON object")
    return data


def query_fields(req: Request) -> dict[str, Any]:
    return _single((k, v) for k, vs in req.query.items() for v in vs)


def validate(raw: Mapping[str, Any], spec: Mapping[str, Field]) -> dict[str, Any]:
    """Check `raw` against `spec`: unknown, missing, wrong type or out of range -> 400."""
    for name in raw:
        if name not in spec:
            raise bad_request(f"Unknown parameter {name}")
    out: dict[str, Any] = {}
    for name, rule in spec.items():
        if name not in raw:
            if rule.required:
                raise bad_request(f"Parameter {name} is required")
            continue
        out[name] = coerce(name, raw[name], rule)
    return out


def coerce(name: str, value: Any, rule: Field) -> Any:
    if rule.kind == ANY:
        return value
    if rule.kind == STR:
        return _string(name, value, rule)
    if rule.kind == BOOL:
        return _boolean(name, value)
    number = _number(name, value, integer=rule.kind == INT)
    if (rule.lo is not None and number < rule.lo) or (rule.hi is not None and number > rule.hi):
        raise bad_request(f"Parameter {name} must be between {_num(rule.lo)} and {_num(rule.hi)}")
    return number


def _string(name: str, value: Any, rule: Field) -> str:
    if not isinstance(value, str):
        raise bad_request(f"Parameter {name} must be a string")
    if rule.required and not value.strip():
        raise bad_request(f"Parameter {name} is required")
    if rule.choices and value not in rule.choices:
        raise bad_request(f"Parameter {name} must be one of: {', '.join(rule.choices)}")
    if rule.lo is not None and len(value) < rule.lo:
        raise bad_request(f"Parameter {name} must be at least {int(rule.lo)} characters")
    if rule.hi is not None and len(value) > rule.hi:
        raise bad_request(f"Parameter {name} must be at most {int(rule.hi)} characters")
    return value


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "false", "0"):
        return value.strip().lower() in ("true", "1")
    raise bad_request(f"Parameter {name} must be a boolean")


def _number(name: str, value: Any, *, integer: bool) -> Any:
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool):
        raise bad_request(f"Parameter {name} must be {kind}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise bad_request(f"Parameter {name} must be {kind}") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_request(f"Parameter {name} must be {kind}")
    if integer:
        if value != int(value):
            raise bad_request(f"Parameter {name} must be {kind}")
        return int(value)
    return float(value)


def _num(x: float | None) -> str:
    if x is None:
        return "any"
    return str(int(x)) if x == int(x) else str(x)


def _single(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise bad_request(f"Parameter {name} given more than once")
        out[name] = value
    return out


def _multipart(body: bytes, ctype: str) -> dict[str, Any]:
    boundary = ""
    for param in ctype.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise bad_request("multipart/form-data without a boundary")
    pairs: list[tuple[str, str]] = []
    for part in body.split(b"--" + boundary.encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        name = _part_name(head.decode("utf-8", "replace"))
        if name is None:
            raise bad_request("multipart part without a name")
        pairs.append((name, data.removesuffix(b"\r\n").decode("utf-8", "replace")))
    return _single(pairs)


def _part_name(head: str) -> str | None:
    for line in head.split("\r\n"):
        if line.lower().startswith("content-disposition:"):
            for param in line.split(";")[1:]:
                key, _, value = param.strip().partition("=")
                if key.lower() == "name":
                    return value.strip('"')
    return None
