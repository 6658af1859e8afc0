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

import redis

from ... import contract
from ...model import describe_error
from ..base import Context

_PROCESS_SEEN: dict[tuple[Any, ...], dict[bytes, tuple[bytes, float]]] = {}
_LOCK = threading.Lock()


def first_seen(ctx: Context, client: redis.Redis, now: float, heads: dict[bytes, bytes],
               empty: list[bytes]) -> tuple[dict[bytes, float], str | None]:
    """List key -> when its head message was first seen (server seconds), for the lists with a
    head (delivery tag); `empty` lists are forgotten. {} without memory; the error text if the
    memory could not be written."""
    cfg = ctx.config
    if not cfg.read_only:
        return _in_redis(ctx, client, heads, empty)
    if cfg.listen is None and cfg.interval is None:
        return {}, None
    key = (cfg.targets, cfg.db, cfg.celery_key_prefix)
    with _LOCK:
        seen = _PROCESS_SEEN.setdefault(key, {})
        for name in empty:
            seen.pop(name, None)
        out = {}
        for name, tag in heads.items():
            known = seen.get(name)
            if known is None or known[0] != tag:
                seen[name] = known = (tag, now)
            out[name] = known[1]
        return out, None


def _in_redis(ctx: Context, client: redis.Redis, heads: dict[bytes, bytes],
              empty: list[bytes]) -> tuple[dict[bytes, float], str | None]:
    if not heads and not empty:
        return {}, None
    key = contract.Keys(ctx.config.prefix).tag + ":celery:seen"
    names = list(heads)
    args: list[Any] = [len(names)]
    for name in names:
        args += [name, heads[name]]
    try:
        reply = client.execute_command("EVAL", contract.CELERY_SEEN, 1, key, *args, *empty)
    except redis.exceptions.ResponseError as exc:  # e.g. NOPERM: no observed age this run
        return {}, describe_error(exc)
    return {name: float(since) for name, since in zip(names, reply, strict=True)}, None
