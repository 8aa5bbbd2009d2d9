"""Everything the CLI prints: tables for people, JSON for machines, errors on stderr.

All text goes through `Output.write`, which blanks out the secrets it was given (the API token,
a refresh token being added) as a last line of defence: library messages never contain the
token, and this keeps it that way even if a server echoes something it should not.
Rich is imported lazily and used only when stdout is a terminal; otherwise (and with --wide)
tables are plain aligned text at full width, so pipes and logs stay greppable. Ids and URLs
are never shortened: rich wraps a long cell onto more lines instead of cutting it.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

import msgspec

# Server-side redacted already, but a CLI has no reason to show them at all.
_SECRET_FIELDS = frozenset({"access_token", "refresh_token"})
REDACTED = "***"


def to_jsonable(value: Any) -> Any:
    """A msgspec Struct (or anything msgspec knows) as plain JSON-able data, secrets dropped."""
    return _drop_secrets(msgspec.to_builtins(value))


def _drop_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_secrets(v) for k, v in value.items() if k not in _SECRET_FIELDS}
    if isinstance(value, list):
        return [_drop_secrets(v) for v in value]
    return value


def rich_available() -> bool:
    """True when the optional `rich` extra is installed."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


class Output:
    """Where and how a command prints; one per CLI run.

    Args:
        json_mode: print JSON documents instead of tables and sentences.
        secrets: strings that must never be printed (blanked to "***" if they ever are).
        stdout: results go here.
        stderr: errors, warnings and progress go here.
        quiet: drop notes (remarks for people on stderr); errors and warnings stay.
        wide: tables as plain full-width columns, free text never shortened.
    """

    def __init__(
        self,
        *,
        json_mode: bool = False,
        secrets: Iterable[str | None] = (),
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        quiet: bool = False,
        wide: bool = False,
    ) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.wide = wide
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        # Longest first, so a secret containing another is blanked whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def add_secret(self, secret: str | None) -> None:
        if secret and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def write(self, text: str, *, err: bool = False) -> None:
        stream = self.stderr if err else self.stdout
        stream.write(self.scrub(text))
        stream.flush()

    def line(self, text: str = "") -> None:
        """A line of human output (suppressed in JSON mode, where stdout is for JSON only)."""
        if not self.json_mode:
            self.write(text + "\n")

    def note(self, text: str) -> None:
        """A remark for people on stderr (kept in JSON mode, where stdout stays parseable);
        dropped with --quiet."""
        if not self.quiet:
            self.write(text + "\n", err=True)

    def warn(self, text: str) -> None:
        """Something people must see even with --quiet (what an interrupted run left behind)."""
        self.write(text + "\n", err=True)

    def short(self, text: str | None, width: int = 48) -> str:
        """Free text (prompts, titles) capped at `width`, or whole with --wide."""
        if self.wide:
            return " ".join((text or "").split())
        return short(text, width)

    def error(self, message: str) -> None:
        self.write(f"flowmusic: error: {message}\n", err=True)

    def json(self, document: Any) -> None:
        """One JSON document on one line (so a batch's lines form valid JSON lines)."""
        self.write(json.dumps(document, ensure_ascii=False, default=str) + "\n")

    def table(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        title: str | None = None,
        header: bool = True,
    ) -> None:
        """A table of rows; rich when stdout is a terminal, plain aligned text otherwise."""
        cells = [["" if v is None else str(v) for v in row] for row in rows]
        if self._use_rich():
            self.write(_rich_table(columns, cells, title, header))
        else:
            self.write(_plain_table(columns, cells, title, header))

    def _use_rich(self) -> bool:
        if self.wide:
            return False
        isatty = getattr(self.stdout, "isatty", None)
        return bool(isatty and isatty()) and rich_available()


def _plain_table(
    columns: Sequence[str], rows: list[list[str]], title: str | None, header: bool
) -> str:
    widths = [len(c) for c in columns]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    out = io.StringIO()
    if title:
        out.write(title + "\n")
    for row in [list(columns), *rows] if header else rows:
        padded = (cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        out.write("  ".join(padded).rstrip() + "\n")
    return out.getvalue()


def _rich_table(
    columns: Sequence[str], rows: list[list[str]], title: str | None, header: bool
) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=header)
    for i, column in enumerate(columns):
        # Narrow columns keep their width (rich would otherwise shrink all columns evenly);
        # long free text wraps when the terminal is too narrow.
        longest = max((len(row[i]) for row in rows if i < len(row)), default=0)
        # fold: a cell too long for its column (an id, a URL) wraps onto the next line
        # character by character instead of being cut with an ellipsis.
        table.add_column(column, min_width=max(len(column), min(longest, 22)), overflow="fold")
    for row in rows:
        table.add_row(*row)
    # Rendered to a string so Output.write can scrub it like everything else.
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=True, width=_terminal_width()).print(table)
    return buffer.getvalue()


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


def short(text: str | None, width: int = 48) -> str:
    """A one-line, length-capped rendering of free text (prompts, titles)."""
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}s"


def mapping_rows(data: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Key/value rows of a record, skipping empty fields (for `accounts get` and friends)."""
    return [(k, v) for k, v in data.items() if v not in (None, "", [], {})]
