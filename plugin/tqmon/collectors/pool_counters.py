"""Pool task counters that never fall, for queue systems that count tasks per worker only.

A pool's `worker_pool_tasks_*_total` must not be the sum over the workers present now: when a
worker holding 500 tasks leaves, that sum falls by 500 and rate() reads a reset as a spike.
Instead each run passes every worker's counts to lua/pool_totals.lua, which adds to the pool's
total only what a worker's count rose since the highest count added for it, atomically under
tqmon's own keys, so N collectors add each increase once (see the script's header).

An adapter (rq, arq; Celery likewise) calls `fold()` with one `Reading` per worker it read and
attaches the result to its Samples (`Samples.pool_totals`); collectors.fleet then reports it
per pool. With --read-only nothing is written: `fold()` only reads the totals another
collector keeps (none: no pool counters, rather than a sum that falls).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import redis

from .. import connection, contract
from .base import Context

SCRIPT = (Path(__file__).parent.parent / "lua" / "pool_totals.lua").read_text("utf-8")
SCRIPT_BATCH = 500  # workers per script run: keeps it ~1 ms
KINDS = ("processed", "failed")
Totals = tuple[dict[str, float], dict[str, float]]  # (processed, failed) by pool


class Reading(NamedTuple):
    """One worker's counts as read this run. `worker` must name one life of one worker: add
    its start time when the system reuses names across restarts (RQ's `birth`)."""

    worker: str
    pool: str
    processed: float
    failed: float


def keys(prefix: str, schema: str) -> tuple[str, str, str]:
    """tqmon's keys for one schema's pool counters: seen HASH, last-seen ZSET, totals HASH."""
    tag = contract.Keys(prefix).tag
    return (f"{tag}:{schema}:pool_seen", f"{tag}:{schema}:pool_last",
            f"{tag}:{schema}:pool_stats")


def fold(ctx: Context, client: redis.Redis, schema: str, readings: Sequence[Reading]
         ) -> Totals | Exception:
    """Add the readings' increases to their pools' totals (unless --read-only) and return
    every pool's totals, or the error (e.g. NOPERM) for the caller to report."""
    seen, last, totals = keys(ctx.config.prefix, schema)
    if ctx.config.read_only:
        commands: list[tuple[Any, ...]] = [(b"HGETALL", totals)]
    else:
        commands = []
        for start in range(0, max(len(readings), 1), SCRIPT_BATCH):
            batch = readings[start:start + SCRIPT_BATCH]
            args: list[Any] = [ctx.config.dead_retention, len(batch)]
            for r in batch:
                args += [r.worker, r.pool, int(r.processed), int(r.failed)]
            commands.append((b"EVAL", SCRIPT, 3, seen, last, totals, *args))
    replies = connection.pipelined(client, commands)
    for reply in replies:
        if isinstance(reply, Exception):
            return reply
    return parse(replies[-1])


def parse(reply: Sequence[bytes] | Mapping[bytes, bytes]) -> Totals:
    """A totals HASH (HGETALL: a map under RESP3, flat under RESP2, as the script returns
    it) as (processed, failed) by pool."""
    out: Totals = ({}, {})
    pairs = reply.items() if isinstance(reply, Mapping) else zip(reply[::2], reply[1::2],
                                                                 strict=True)
    for field, value in pairs:
        kind, _, pool = field.decode("utf-8", "backslashreplace").partition("|")
        if kind in KINDS:
            try:
                out[KINDS.index(kind)][pool] = float(value)
            except ValueError:
                continue
    return out
