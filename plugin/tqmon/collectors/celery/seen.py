"""Observed waiting age: Celery's messages carry no send time, so tqmon remembers when a run
first saw the message now at the head of each priority list (by its delivery tag). The age it
reports is `now - first seen`: a lower bound of how long that message has waited, with the
collection interval's resolution (it may have waited up to one interval more before the first
run that saw it, and all the time it spent behind other messages).

- writable (exec, --listen, --interval): lua/celery_seen.lua under tqmon's own
  {P}:celery:seen, atomically, so N collectors agree;
- --read-only with --listen / --interval: the process remembers;
- --read-only exec mode: no memory, no observed age (an eta message still has its age).
"""

from __future__ import annotations

import threading
from typing import Any

from ... import contract
from ...model import describe_error
from ..base import Context

_PROCESS_SEEN: dict[tuple[Any, ...], dict[bytes, tuple[bytes, float]]] = {}
_LOCK = threading.Lock()


def command(ctx: Context, heads: dict[bytes, bytes], empty: list[bytes]
            ) -> tuple[Any, ...] | None:
    """The EVAL that records this run's sightings in Redis (None when not writable, or when
    there is nothing to record), for the caller to pipeline."""
    if ctx.config.read_only or (not heads and not empty):
        return None
    args: list[Any] = [len(heads)]
    for name, tag in heads.items():
        args += [name, tag]
    key = contract.Keys(ctx.config.prefix).tag + ":celery:seen"
    return (b"EVAL", contract.CELERY_SEEN, 1, key, *args, *empty)


def first_seen(ctx: Context, now: float, heads: dict[bytes, bytes], empty: list[bytes],
               reply: Any) -> tuple[dict[bytes, float], str | None]:
    """List key -> when its head message was first seen (server seconds), for the lists with a
    head (delivery tag), from `command`'s reply or the process's memory; `empty` lists are
    forgotten. {} without memory; the error text if the memory could not be written."""
    cfg = ctx.config
    if not cfg.read_only:
        if isinstance(reply, Exception):  # e.g. NOPERM: no observed age this run
            return {}, describe_error(reply)
        return {name: float(since) for name, since in zip(heads, reply or [], strict=True)}, None
    if cfg.listen is None and cfg.interval is None:
        return {}, None
    key = (cfg.targets, cfg.db, cfg.celery_key_prefix)
    with _LOCK:
        memory = _PROCESS_SEEN.setdefault(key, {})
        for name in empty:
            memory.pop(name, None)
        out = {}
        for name, tag in heads.items():
            known = memory.get(name)
            if known is None or known[0] != tag:
                memory[name] = known = (tag, now)
            out[name] = known[1]
        return out, None
