"""Readers for other task queues' own Redis keys (`--schema rq`, `--schema dramatiq`).

Each adapter maps what RQ or Dramatiq already write onto the catalog's worker and queue metrics,
so the same dashboard and alerts work unchanged. Adapters never write: they send only read
commands, batched in pipelines, and never KEYS. Neither RQ nor Dramatiq supports Redis Cluster,
so an adapter reads one node: the master holding the schema's registry key, in the URL's
database.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import redis

from .. import connection
from ..collectors import Context, Samples

T = TypeVar("T")
UTC = datetime.timezone.utc
BATCH = 1000  # commands of one kind per pipelined round trip


def on_node(ctx: Context, key: str, work: Callable[[redis.Redis], T]) -> T:
    """Run `work` on a bytes client for the node holding `key` (the first master outside a
    cluster), in the database the URL names: RQ deployments often use a database other than 0.
    Bytes, because names read from Redis must round-trip into keys exactly."""
    node = ctx.topology.node_for(key)
    if node is None:
        raise ConnectionError(f"no reachable master is known for {key}")
    db = 0 if ctx.topology.cluster else ctx.config.targets[0].db
    client = connection.client(ctx.config, node.host, node.port, ctx.deadline, tls=node.tls,
                               db=db, decode=False)
    try:
        return work(client)
    finally:
        client.close()


def server_time(reply: list) -> float:
    """Seconds from a TIME reply: the Redis server's clock, the same for every collector."""
    return float(reply[0]) + float(reply[1]) / 1e6


def parse_timestamp(raw: bytes | None) -> float | None:
    """Unix seconds from a date RQ wrote, or None if it is not one.

    RQ writes `2026-11-28T10:00:00.123456Z` (utcformat); RQ before 1.0 and other tools wrote
    it without microseconds, with an offset instead of `Z`, or with no zone at all (UTC then).
    datetime.fromisoformat (Python 3.11) reads all of these in C, fast enough for big fleets.
    """
    if not raw:
        return None
    try:
        text = raw.decode("ascii")
        if text.endswith("Z"):  # Python 3.10's fromisoformat does not take the Z
            text = text[:-1] + "+00:00"
        parsed = datetime.datetime.fromisoformat(text)
    except (UnicodeDecodeError, ValueError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def emit_skips(out: Samples, collector: str, reasons: tuple[str, ...],
               skips: Counter[str]) -> None:
    """tqmon_skipped_entries for a fixed set of reasons, zeros included (series stay stable)."""
    for reason in reasons:
        out.add("tqmon_skipped_entries", {"collector": collector, "reason": reason},
                float(skips[reason]))


def collect_workers(ctx: Context) -> Samples:
    """The workers collector's samples under --schema rq|dramatiq."""
    if ctx.config.schema == "rq":
        from . import rq

        return rq.collect_workers(ctx)
    from . import dramatiq

    return dramatiq.collect_workers(ctx)


def collect_queues(ctx: Context) -> Samples:
    """The queues collector's samples under --schema rq|dramatiq."""
    if ctx.config.schema == "rq":
        from . import rq

        return rq.collect_queues(ctx)
    from . import dramatiq

    return dramatiq.collect_queues(ctx)
