"""Keeping the Redis password out of everything tqmon prints.

Shared by the exec plugin (cli) and the terminal commands (status, doctor): any text that may
carry a library's error message goes through `redact`, and a logging filter applies it to every
log line as the last line of defence."""

from __future__ import annotations

import logging
from urllib.parse import quote, quote_plus


def _spellings(secret: str | None) -> list[str]:
    """The password as it may appear in text: as is, and URL-encoded (fully, or with `/` left
    as is, as urllib does by default), longest first."""
    if not secret:
        return []
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    return sorted(forms, key=len, reverse=True)


def redact(text: str, secret: str | None) -> str:
    for form in _spellings(secret):
        text = text.replace(form, "***")
    return text


def internal_error(prog: str, exc: BaseException, secret: str | None) -> str:
    """The one line printed for an unexpected error instead of a traceback, redacted."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{prog}: internal error: {type(exc).__name__}: {redact(text, secret)}"


class Redact(logging.Filter):
    """Last line of defence: the password never reaches stderr, whatever a library says."""

    def __init__(self, secret: str | None) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secret:
            message = record.getMessage()
            redacted = redact(message, self._secret)
            if redacted != message:
                record.msg, record.args = redacted, ()
        return True
