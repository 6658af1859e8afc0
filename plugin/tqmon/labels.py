"""Label values read from Redis, bounded in length yet distinct: one rule for every collector
and for pool names (docs/operations.md, Labels)."""

from __future__ import annotations

import hashlib

MAX_LABEL = 256  # characters of a label value read from Redis
CUT_HASH = 8  # hex digits of the whole value's SHA-256 ending a cut label value


def cut(text: str) -> str:
    """A label value of at most MAX_LABEL characters that stays distinct: a longer one keeps
    its first MAX_LABEL - 9 characters, then `~` and 8 hex digits of the SHA-256 of the whole
    value, so two values that share a long beginning stay two series."""
    if len(text) <= MAX_LABEL:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:CUT_HASH]
    return f"{text[:MAX_LABEL - CUT_HASH - 1]}~{digest}"
