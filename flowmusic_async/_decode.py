"""Every JSON body the library reads is decoded here, so one broken byte is one known error.

msgspec reports a broken body in three ways: `msgspec.DecodeError` (not JSON, or not the
expected shape), `UnicodeDecodeError` (invalid UTF-8 inside a string) and `RecursionError`
(nesting deeper than its stack allows). A hostile or broken server can send any of them, so
every decode goes through `decode`, which turns all three into `Undecodable`; callers map that
to their own outcome (`DecodeError`, a webhook's 400, a tolerated odd body).
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

__all__ = ["Undecodable", "decode", "decode_any"]

T = TypeVar("T")

_ANY_DECODER = msgspec.json.Decoder()


class Undecodable(Exception):
    """The bytes are not JSON of the expected shape; the message says why, briefly."""


def decode(decoder: msgspec.json.Decoder[T], raw: bytes) -> T:
    """Decode `raw` with `decoder`.

    Raises:
        Undecodable: not JSON, the wrong shape, invalid UTF-8, or nested too deeply.
    """
    try:
        return decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise Undecodable(str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise Undecodable(f"invalid UTF-8 at byte {exc.start}") from exc
    except RecursionError as exc:
        raise Undecodable("JSON nested too deeply") from exc


def decode_any(raw: bytes) -> Any:
    """Decode `raw` as any JSON value.

    Raises:
        Undecodable: as for `decode`.
    """
    return decode(_ANY_DECODER, raw)
