"""Do the native schema's streams and consumer groups exist."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis

from ..model import describe_error
from .base import Checkup, Finding, ok, problem, warning
from .keys import _run_on_owners


def check_streams(c: Checkup) -> Iterator[Finding]:
    config, topology, reached = c.config, c.topology, c.reached
    if config.schema != "native" or "queues" not in config.collectors:
        return
    streams = config.streams
    replies = _run_on_owners(config, topology, reached,
                             [("XINFO", "GROUPS", s) for _, s in streams])
    for (name, stream), reply in zip(streams, replies, strict=True):
        if isinstance(reply, redis.ResponseError) and "no such key" in str(reply).lower():
            yield warning("streams", f"{name}: stream {stream} does not exist (nothing queued "
                          "yet, or the wrong --queue / --prefix)")
        elif isinstance(reply, BaseException):
            yield warning("streams", f"{name}: {stream}: {describe_error(reply)}")
        else:
            present = [str(_fields(g).get("name")) for g in reply]
            missing = [g for g in config.groups if g not in present]
            if missing:
                yield problem("streams", f"{name}: {stream} has no group {', '.join(missing)}"
                              f" (groups: {', '.join(map(str, present)) or 'none'})",
                              *(f"--group {g}" for g in present[:1]))
            else:
                yield ok("streams", f"{name}: {stream} with group(s) {', '.join(config.groups)}")


def _fields(reply: Any) -> dict[Any, Any]:
    """A RESP2 map (a flat list of names and values) as a dict."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=False)) if isinstance(reply, list) else {}
