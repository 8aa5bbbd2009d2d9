"""The library's log output: off unless asked for, with FLOWMUSIC_LOG=debug|info (like OPENAI_LOG).

Every module logs to the ``flowmusic_async`` logger and never configures logging itself, so
an application's own logging setup decides what is shown. `configure_from_env` (called when a
client is created) and the CLI's -v/-q add one stderr handler to that logger. The handler
blanks out the API tokens of the clients created in this process (the `_redact` registry), as
a last line of defence: library messages never contain a token.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from ._redact import redact

__all__ = ["LOG_ENV", "configure_from_env", "enable", "enabled"]

LOG_ENV = "FLOWMUSIC_LOG"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}
REDACTED = "***"

logger = logging.getLogger("flowmusic_async")


class _Redact(logging.Filter):
    """Blanks registered secrets out of a record's message before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad %-arguments: the handler's own error report deals with them
            return True
        cleaned = redact(message, blank=REDACTED)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_redactor = _Redact()
_handler: logging.StreamHandler[TextIO] | None = None


def enable(
    level: int,
    *,
    fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s",
    stream: TextIO | None = None,
) -> None:
    """Show the library's records from `level` up on stderr (one handler, however often called).

    Args:
        level: a `logging` level, e.g. `logging.INFO`.
        fmt: the record format.
        stream: where to write; default the current sys.stderr.
    """
    global _handler
    stream = stream if stream is not None else sys.stderr
    if _handler is None:
        _handler = logging.StreamHandler(stream)
        _handler.addFilter(_redactor)
        logger.addHandler(_handler)
    else:
        _handler.setStream(stream)
    _handler.setFormatter(logging.Formatter(fmt))
    _handler.setLevel(level)
    logger.setLevel(level)


@contextmanager
def enabled(level: int, *, fmt: str, stream: TextIO | None = None) -> Iterator[None]:
    """`enable` for the length of a block, then put back what was there (the CLI's run)."""
    global _handler
    had = _handler
    saved_level = logger.level
    saved = (had.level, had.formatter, had.stream) if had is not None else None
    enable(level, fmt=fmt, stream=stream)
    try:
        yield
    finally:
        logger.setLevel(saved_level)
        if had is None or saved is None:
            if _handler is not None:
                logger.removeHandler(_handler)
                _handler = None
        else:
            had.setLevel(saved[0])
            had.setFormatter(saved[1])
            had.setStream(saved[2])


_env_applied = False


def configure_from_env(*, apply: bool = True) -> int | None:
    """Turn on logging if FLOWMUSIC_LOG says so ("debug" or "info"); the level it asks for.

    Only the first call in a process acts (every new client calls it), so a level chosen
    afterwards, such as the CLI's -q, is not undone by the next client. Any other value is
    ignored with a warning, so a typo does not pass silently.

    Args:
        apply: install the handler; False only reads the level (the CLI applies it itself,
            combined with -v/-q).
    """
    global _env_applied
    if _env_applied:
        return None
    _env_applied = True
    value = os.environ.get(LOG_ENV, "").strip().lower()
    if not value:
        return None
    level = LEVELS.get(value)
    if level is None:
        logger.warning("%s=%r is not one of %s; ignored", LOG_ENV, value, ", ".join(LEVELS))
        return None
    if apply:
        enable(level)
    return level
