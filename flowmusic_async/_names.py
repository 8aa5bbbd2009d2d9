"""Safe file names: what the library writes (clip stems) and what a server proposes.

Safe on Windows, macOS and Linux: reserved and control characters removed, whitespace
collapsed, no trailing dots or spaces, no reserved device names, no path separators, capped
in length. Used by downloads (`_download.py`) and `DownloadStream.filename`.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["safe_file_name", "safe_title"]

_MAX_TITLE_CHARS = 80
# Names are limited in bytes (255 on most filesystems); 80 four-byte characters would not fit.
_MAX_TITLE_BYTES = 160

# An extension kept apart while the rest of a name is cleaned and capped.
_EXTENSION = re.compile(r"[A-Za-z0-9]{1,8}")
_UNSAFE_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{n}" for n in "123456789¹²³"}
    | {f"LPT{n}" for n in "123456789¹²³"}
)


def safe_title(title: str | None) -> str:
    """`title` cleaned into a file name part; ``"untitled"`` when nothing is left."""
    text = unicodedata.normalize("NFC", title or "")
    # Control and format characters (incl. bidi overrides that disguise extensions) and line
    # separators become spaces, like the characters Windows refuses.
    text = "".join(
        " " if unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} else ch for ch in text
    )
    text = _UNSAFE_CHARS.sub(" ", text)
    text = " ".join(text.split())
    text = text[:_MAX_TITLE_CHARS]
    while len(text.encode()) > _MAX_TITLE_BYTES:
        text = text[:-1]
    # Windows drops trailing dots and spaces; leading dots hide files on Unix.
    text = text.strip(" .")
    if not text:
        return "untitled"
    if text.split(".")[0].strip().upper() in _WINDOWS_RESERVED:
        text = f"_{text}"
    return text


def safe_file_name(name: str | None) -> str | None:
    """A server-proposed file name reduced to a safe base name, or None if nothing is left.

    Only the part after the last ``/`` or ``\\`` is kept, so ``../../../tmp/owned.mp3``
    becomes ``owned.mp3``: joining the result to a folder can never leave that folder.
    """
    if not name:
        return None
    base = re.split(r"[/\\]", name)[-1]
    stem, dot, ext = base.rpartition(".")
    if not (dot and stem.strip(" .") and _EXTENSION.fullmatch(ext)):
        stem, ext = base, ""
    cleaned = safe_title(stem)
    if cleaned == "untitled" and stem.strip(" .").lower() != "untitled":
        return None
    return f"{cleaned}.{ext}" if ext else cleaned
