"""The one registry of secrets (the API tokens of this process's clients) and the blanking of them.

`FlowMusic` registers its token once, after every argument is accepted; error messages, server
text and bodies (`_errors`), the exceptions they are chained to, and the records of the log
handler (`_logs`) are all blanked from this one registry, so no path can miss a token another
path knows. Library messages never contain a token in the first place: this is the last line of
defence against a server that echoes one back.
"""

from __future__ import annotations

__all__ = ["REDACTED", "redact", "redact_bytes", "remember_secret"]

REDACTED = "<redacted>"

# Longest first, so a secret that contains another is blanked whole. Replaced, never mutated,
# so a reader in another thread sees either the old tuple or the new one.
_secrets: tuple[str, ...] = ()


def remember_secret(secret: str) -> None:
    """Blank `secret` out of every error, body and log record from now on (a client's token)."""
    global _secrets
    if secret and secret not in _secrets:
        _secrets = tuple(sorted((*_secrets, secret), key=len, reverse=True))


def redact(text: str, *, blank: str = REDACTED) -> str:
    """`text` with every remembered secret replaced by `blank`."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, blank)
    return text


def redact_bytes(raw: bytes, *, blank: str = REDACTED) -> bytes:
    """`raw` with every remembered secret (as UTF-8) replaced by `blank`."""
    for secret in _secrets:
        encoded = secret.encode()
        if encoded in raw:
            raw = raw.replace(encoded, blank.encode())
    return raw
