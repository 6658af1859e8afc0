"""Text bound for a terminal, made inert: names tqmon prints come from Redis, where anyone who
can write a worker id, a queue name or a Celery event chooses them. A control character would
move the cursor, set the title or clear the screen (ESC, CSI), a newline would forge a row, a
bidi override would reorder what follows. Each such character is shown escaped instead (`\\n`,
`\\x1b`, `\\u202e`), so the text stays readable and nothing in it acts.

Applied where lines are put together for a person (status, doctor, stderr), before cutting,
padding and colouring; `status --json` stays exact (JSON escapes what it must).
"""

from __future__ import annotations

import logging
from typing import Any

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# U+061C ALM, U+200E/F LRM/RLM, U+202A-E embeddings and overrides, U+2066-9 isolates;
# U+2028/9 line and paragraph separators (a terminal or a pager may break the line there).
_BIDI = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029]
_TABLE: dict[int, str] = {
    **{c: f"\\x{c:02x}" for c in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))},
    **{ord(k): v for k, v in _NAMED.items()},
    **{c: f"\\u{c:04x}" for c in _BIDI},
}


def clean(text: str) -> str:
    """`text` with every C0/C1 control, DEL, newline and bidi control shown escaped."""
    return text.translate(_TABLE)


def clean_all(value: Any) -> Any:
    """Every string inside a JSON-like document (dicts, lists, tuples) cleaned; keys too."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean_all(k): clean_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_all(v) for v in value]
    return value


class CleanLog(logging.Filter):
    """For a handler that writes to a terminal (stderr): every log line cleaned."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True
