"""JSON read from Redis, bounded: what other programs wrote (a Celery event anyone with PUBLISH
can send, a Sidekiq job, a kombu `unacked` value) is parsed only if it is small and shallow
enough. Too large or too deep is a bad value (`BadJSON`), never a RecursionError that takes a
whole collector down.

The depth check costs two C-level `count`s on the common, shallow document; only a document with
more than MAX_DEPTH brackets is walked (iteratively) after parsing.
"""

from __future__ import annotations

import json
from typing import Any

MAX_BYTES = 1 << 20  # 1 MiB: far above any job or event a queue system writes
MAX_DEPTH = 64  # containers inside containers: real payloads nest a handful deep


class BadJSON(ValueError):
    """Not JSON, or larger or deeper than the bounds."""


def loads(raw: str | bytes | bytearray, max_bytes: int = MAX_BYTES,
          max_depth: int = MAX_DEPTH) -> Any:
    """json.loads with a size and a nesting bound; BadJSON for anything it refuses."""
    if len(raw) > max_bytes:
        raise BadJSON(f"longer than {max_bytes} bytes")
    opening = (raw.count(b"[") + raw.count(b"{") if isinstance(raw, (bytes, bytearray))
               else raw.count("[") + raw.count("{"))
    try:
        value = json.loads(raw)
    except RecursionError:
        raise BadJSON(f"nested deeper than {max_depth}") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
        raise BadJSON(str(exc)) from None
    if opening > max_depth and _depth(value, max_depth) > max_depth:
        raise BadJSON(f"nested deeper than {max_depth}")
    return value


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of parsed JSON, walked without recursion; stops once past `limit`."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level + 1) for child in item
                     if isinstance(child, (dict, list)))
    return deepest
