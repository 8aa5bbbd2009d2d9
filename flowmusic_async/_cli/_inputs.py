"""Batch input files: plain text, JSON lines, CSV/TSV, or the JSON list useapi's own script reads.

Every request is checked here, before anything is sent, so a typo on line 40 stops the batch
with "prompts.csv:40: ..." (exit 2) instead of after 39 paid songs. Field names may be the
Python ones (`ref_images`) or the API's (`refImage1`..`refImage10`, `replyUrl`); keys starting
with "__" are comments, as in useapi's `prompts.json`.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ._exit import CommandError, ExitCode

InputFormat = Literal["text", "jsonl", "csv", "tsv", "json"]
INPUT_FORMATS: tuple[str, ...] = ("text", "jsonl", "csv", "tsv", "json")

MAX_PROMPT = 10_000
MAX_LYRICS = 10_000
MAX_REFS = 10
GHOSTWRITERS = ("standard", "pro")
MODELS = ("lyria-3.5", "lyria-3-pro")

_EXTENSIONS: dict[str, InputFormat] = {
    ".txt": "text",
    ".text": "text",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
}


@dataclass(frozen=True)
class BatchItem:
    """One request of a batch and the line of the input file it came from (1-based)."""

    line: int
    request: dict[str, Any]  # keyword names of fm.music.create, unset fields left out

    @property
    def prompt(self) -> str:
        return str(self.request["prompt"])


class BatchInputError(CommandError):
    """The input file cannot be read as a batch; the message names the file and line."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {problem}", code=ExitCode.USAGE)
        self.source = source
        self.line = line
        self.problem = problem


def read_batch_file(path: str | Path, *, input_format: str = "auto") -> list[BatchItem]:
    """Read and validate every request of a batch file.

    Args:
        path: the file to read (UTF-8; a byte-order mark is tolerated); "-" reads stdin.
        input_format: "auto" (by extension, then by content) or one of INPUT_FORMATS.
    """
    source = str(path)
    if source == "-":
        text = sys.stdin.read().removeprefix("\ufeff")
        return parse_batch(text, source="<stdin>", input_format=input_format)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BatchInputError(source, None, "no such file") from None
    except UnicodeDecodeError as exc:
        raise BatchInputError(source, None, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise BatchInputError(source, None, exc.strerror or str(exc)) from None
    return parse_batch(text, source=source, input_format=input_format)


def parse_batch(
    text: str, *, source: str = "<input>", input_format: str = "auto"
) -> list[BatchItem]:
    """Parse the text of a batch file (see read_batch_file)."""
    fmt = detect_format(source, text) if input_format == "auto" else input_format
    parsers: dict[str, Callable[[str, str], list[BatchItem]]] = {
        "text": _parse_text,
        "jsonl": _parse_jsonl,
        "csv": lambda t, s: _parse_csv(t, s, delimiter=","),
        "tsv": lambda t, s: _parse_csv(t, s, delimiter="\t"),
        "json": _parse_json_list,
    }
    if fmt not in parsers:
        raise BatchInputError(source, None, f"unknown input format {fmt!r}")
    items = parsers[fmt](text, source)
    if not items:
        raise BatchInputError(source, None, "no prompts found")
    return items


def detect_format(source: str, text: str) -> InputFormat:
    """The format of a batch file: the extension decides, else the first characters do."""
    suffix = Path(source).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    start = text.lstrip()[:1]
    if start == "[":
        return "json"
    if start == "{":  # one object per line; also what many tools write into a ".json" file
        return "jsonl"
    if suffix == ".json":
        raise BatchInputError(source, None, "expected a JSON array of objects or JSON lines")
    first_line = next((ln for ln in text.splitlines() if ln.strip()), "")
    delimited: tuple[tuple[str, InputFormat], ...] = (("\t", "tsv"), (",", "csv"))
    for delimiter, fmt in delimited:
        cells = [c.strip().strip('"').lower() for c in first_line.split(delimiter)]
        if len(cells) > 1 and "prompt" in cells:
            return fmt
    return "text"


def _parse_text(text: str, source: str) -> list[BatchItem]:
    # One prompt per line; blank lines and "#" comments are skipped.
    items = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            items.append(BatchItem(number, normalize_request({"prompt": line}, source, number)))
    return items


def _parse_jsonl(text: str, source: str) -> list[BatchItem]:
    items = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BatchInputError(source, number, f"not valid JSON ({exc.msg})") from None
        items.append(BatchItem(number, _request_from_json(value, source, number)))
    return items


def _parse_json_list(text: str, source: str) -> list[BatchItem]:
    # json.loads gives no positions; decoding element by element keeps each one's line number.
    decoder = json.JSONDecoder()
    try:
        pos = _skip_space(text, 0)
        if text[pos : pos + 1] != "[":
            raise BatchInputError(source, _line_at(text, pos), "expected a JSON array of objects")
        pos = _skip_space(text, pos + 1)
        items: list[BatchItem] = []
        if text[pos : pos + 1] == "]":
            return items
        while True:
            line = _line_at(text, pos)
            value, pos = decoder.raw_decode(text, pos)
            items.append(BatchItem(line, _request_from_json(value, source, line)))
            pos = _skip_space(text, pos)
            separator = text[pos : pos + 1]
            pos = _skip_space(text, pos + 1)
            if separator == "]":
                break
            if separator != ",":
                raise BatchInputError(source, _line_at(text, pos), "expected ',' or ']'")
        if pos < len(text):
            raise BatchInputError(source, _line_at(text, pos), "unexpected text after the array")
        return items
    except json.JSONDecodeError as exc:
        raise BatchInputError(source, exc.lineno, f"not valid JSON ({exc.msg})") from None


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _request_from_json(value: Any, source: str, line: int) -> dict[str, Any]:
    if isinstance(value, str):
        return normalize_request({"prompt": value}, source, line)
    if not isinstance(value, dict):
        problem = f"expected an object with a 'prompt', got {type(value).__name__}"
        raise BatchInputError(source, line, problem)
    return normalize_request(value, source, line)


def _parse_csv(text: str, source: str, *, delimiter: str) -> list[BatchItem]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            return []
        names = [name.strip() for name in header]
        if "prompt" not in {name.lower() for name in names}:
            raise BatchInputError(source, 1, "the header row has no 'prompt' column")
        items = []
        end_of_previous = reader.line_num
        for row in reader:
            # A quoted cell may span lines: the record starts just after the previous one.
            line = end_of_previous + 1
            end_of_previous = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(names):
                raise BatchInputError(source, line, f"{len(row)} cells but {len(names)} columns")
            raw = {
                name: cell
                for name, cell in zip(names, row, strict=False)
                if name and cell.strip() != ""
            }
            items.append(BatchItem(line, normalize_request(raw, source, line, from_text=True)))
        return items
    except csv.Error as exc:
        raise BatchInputError(source, reader.line_num, f"bad CSV ({exc})") from None


# Accepted spellings -> fm.music.create keyword names.
_ALIASES = {
    "prompt": "prompt",
    "instrumental": "instrumental",
    "lyrics": "lyrics",
    "ghostwriter": "ghostwriter",
    "model": "model",
    "email": "email",
    "ref_images": "ref_images",
    "refimages": "ref_images",
    "ref_audios": "ref_audios",
    "refaudios": "ref_audios",
    "reply_url": "reply_url",
    "replyurl": "reply_url",
    "reply_ref": "reply_ref",
    "replyref": "reply_ref",
}
_NUMBERED_REF = re.compile(r"^ref_?(image|audio)_?(\d+)$")
_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def normalize_request(
    raw: Mapping[str, Any], source: str, line: int, *, from_text: bool = False
) -> dict[str, Any]:
    """Check one request and return it with fm.music.create's keyword names.

    Args:
        raw: the fields as read (JSON values, or strings from a CSV cell when from_text).
        source: file name, for error messages.
        line: line number, for error messages.
        from_text: values are strings (CSV) and booleans/lists must be parsed from text.
    """

    def fail(problem: str) -> BatchInputError:
        return BatchInputError(source, line, problem)

    request: dict[str, Any] = {}
    numbered: dict[str, dict[int, str]] = {"image": {}, "audio": {}}
    for key, value in raw.items():
        if key.startswith("__") or value is None:
            continue  # useapi's prompts.json convention: "__" keys are comments
        folded = key.strip().lower()
        match = _NUMBERED_REF.match(folded)
        if match:
            kind, number = match.group(1), int(match.group(2))
            if not 1 <= number <= MAX_REFS:
                raise fail(f"{key}: reference numbers run from 1 to {MAX_REFS}")
            numbered[kind][number] = _text(value, key, fail)
            continue
        name = _ALIASES.get(folded)
        if name is None:
            known = ", ".join(sorted(set(_ALIASES.values())))
            raise fail(f"unknown field {key!r} (known: {known})")
        if name == "instrumental":
            request[name] = _boolean(value, key, fail, from_text=from_text)
        elif name in ("ref_images", "ref_audios"):
            request[name] = _id_list(value, key, fail)
        else:
            request[name] = _text(value, key, fail)
    for kind, name in (("image", "ref_images"), ("audio", "ref_audios")):
        if numbered[kind]:
            ordered = [numbered[kind][n] for n in sorted(numbered[kind])]
            request[name] = tuple(request.get(name, ())) + tuple(ordered)
    _check(request, fail)
    return request


def _check(request: dict[str, Any], fail: Callable[[str], BatchInputError]) -> None:
    prompt = request.get("prompt", "")
    if not isinstance(prompt, str) or not prompt.strip():
        raise fail("a non-empty 'prompt' is required")
    request["prompt"] = prompt.strip()
    if len(prompt) > MAX_PROMPT:
        raise fail(f"prompt is {len(prompt)} characters; the API takes at most {MAX_PROMPT}")
    if len(request.get("lyrics", "")) > MAX_LYRICS:
        raise fail(f"lyrics exceed {MAX_LYRICS} characters")
    if request.get("instrumental") and request.get("lyrics"):
        raise fail("'instrumental' and 'lyrics' contradict each other; give one of them")
    if request.get("ghostwriter", "standard") not in GHOSTWRITERS:
        raise fail(f"ghostwriter must be one of {', '.join(GHOSTWRITERS)}")
    if request.get("model", MODELS[0]) not in MODELS:
        raise fail(f"model must be one of {', '.join(MODELS)}")
    for name in ("ref_images", "ref_audios"):
        if len(request.get(name, ())) > MAX_REFS:
            raise fail(f"{name}: at most {MAX_REFS} references")


def _text(value: Any, key: str, fail: Callable[[str], BatchInputError]) -> str:
    if not isinstance(value, str):
        raise fail(f"{key} must be a string, got {type(value).__name__}")
    return value


def _boolean(
    value: Any, key: str, fail: Callable[[str], BatchInputError], *, from_text: bool
) -> bool:
    if isinstance(value, bool):
        return value
    if from_text and isinstance(value, str):
        folded = value.strip().lower()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
    raise fail(f"{key} must be true or false, got {value!r}")


def _id_list(value: Any, key: str, fail: Callable[[str], BatchInputError]) -> tuple[str, ...]:
    # A CSV cell holds several ids separated by ";", "|" or whitespace (ids themselves contain ":").
    if isinstance(value, str):
        return tuple(part for part in re.split(r"[;|\s]+", value) if part)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise fail(f"{key} must be a list of asset ids")
