"""What the terminal commands share: marks and colours for a person (only on a terminal, never
with NO_COLOR), and the run's warnings kept to be shown in the output rather than on stderr."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import TextIO

from .redaction import Redact, Secret


@dataclass(frozen=True)
class Style:
    """How to mark things: ANSI colours and symbols on a terminal, plain words elsewhere."""

    color: bool
    tty: bool = False  # a terminal (--watch redraws in place), coloured or not

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and text else text

    def ok(self, text: str) -> str:
        return self.paint(text, "32")

    def warn(self, text: str) -> str:
        return self.paint(text, "33")

    def bad(self, text: str) -> str:
        return self.paint(text, "1;31")

    def dim(self, text: str) -> str:
        return self.paint(text, "2")

    def bold(self, text: str) -> str:
        return self.paint(text, "1")

    def mark(self, level: str) -> str:
        """A fixed-width marker: a symbol on a terminal, a word otherwise (grep-able)."""
        if self.color:
            return {"ok": self.ok("✔"), "warning": self.warn("!"), "problem": self.bad("✘")
                    }.get(level, " ")
        return {"ok": "ok", "warning": "WARN", "problem": "FAIL"}.get(level, "")


def style_for(stream: TextIO) -> Style:
    """Colour only for a terminal, and never with NO_COLOR set (https://no-color.org)."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return Style(color=tty and not os.environ.get("NO_COLOR") and
                 os.environ.get("TERM", "") != "dumb", tty=tty)


class Captured(logging.Handler):
    """Keeps the run's warnings (one per failed node or collector) to show them in the output,
    where the person looks, instead of on stderr (which would tear a --watch screen)."""

    def __init__(self, secret: Secret) -> None:
        super().__init__(logging.WARNING)
        self.addFilter(Redact(secret))
        self._lock_lines = threading.Lock()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_lines:
            if len(self.lines) < 100:
                self.lines.append(record.getMessage())

    def take(self) -> list[str]:
        with self._lock_lines:
            lines, self.lines = self.lines, []
        return list(dict.fromkeys(lines))
