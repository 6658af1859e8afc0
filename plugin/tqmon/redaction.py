"""Keeping the Redis password out of everything tqmon prints.

Shared by the exec plugin (cli) and the terminal commands (status, doctor): any text that may
carry a library's error message goes through `redact`, and a logging filter applies it to every
log line as the last line of defence."""

from __future__ import annotations

import logging
from urllib.parse import quote, quote_plus

Secret = str | tuple[str, ...] | None  # a password, or every password a run holds


def _spellings(secret: Secret) -> list[str]:
    """The passwords as they may appear in text: as is, and URL-encoded (fully, or with `/`
    left as is, as urllib does by default), longest first."""
    secrets = (secret,) if isinstance(secret, str) else secret or ()
    forms = {form for s in secrets if s
             for form in (s, quote(s, safe=""), quote(s), quote_plus(s))}
    return sorted(forms, key=len, reverse=True)


def redact(text: str, secret: Secret) -> str:
    for form in _spellings(secret):
        text = text.replace(form, "***")
    return text


def internal_error(prog: str, exc: BaseException, secret: Secret) -> str:
    """The one line printed for an unexpected error instead of a traceback, redacted."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{prog}: internal error: {type(exc).__name__}: {redact(text, secret)}"


class Redact(logging.Filter):
    """Last line of defence: the password never reaches stderr, whatever a library says."""

    def __init__(self, secret: Secret) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secret:
            message = record.getMessage()
            redacted = redact(message, self._secret)
            if redacted != message:
                record.msg, record.args = redacted, ()
        return True
