"""Queue health: the task streams (one per priority) and their consumer groups.

Streams may sit on different cluster nodes when configured without the `{P}` hash tag, so the
commands are grouped by node: per node, one pipeline (TIME, XLEN, XINFO GROUPS, XPENDING summary
and oldest entry) and a second (XRANGE for the oldest entry not yet delivered), nodes in
parallel. Orphans are pending entries of consumers that are registered workers past their
heartbeat TTL: one ZMSCORE on the registry's node tells which.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import redis
from redis.crc import key_slot

from ... import connection, contract
from ...model import Samples, describe_error
from ...parallel import run_parallel
from ...topology import Node
from ..base import Context, on_key_owner, server_time

log = logging.getLogger(__name__)

REASONS = ("wrong_type", "missing_stream", "missing_group", "unreachable", "requeue_refused")


@dataclass
class Group:
    """One consumer group of one stream, as this run read it."""

    info: dict[str, Any]
    pending: dict[str, Any] | None = None  # XPENDING summary
    oldest_pending: list[dict[str, Any]] = field(default_factory=list)
    next_waiting: list[Any] = field(default_factory=list)  # XRANGE after last-delivered-id


@dataclass
class Stream:
    priority: str
    key: str
    now_ms: int
    depth: int | None = None
    groups: dict[str, Group] = field(default_factory=dict)


def _id_ms(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def _read_node(ctx: Context, node: Node, items: list[tuple[str, str]]
               ) -> tuple[list[Stream], Counter[str]]:
    """Everything about the streams on one node, in two round trips."""
    groups = ctx.config.groups
    skips: Counter[str] = Counter()
    client = connection.client(ctx.config, node.host, node.port, ctx.deadline, tls=node.tls,
                               decode=False)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.time()
        for _, key in items:
            pipe.xlen(key)
            pipe.xinfo_groups(key)
            for group in groups:
                pipe.xpending(key, group)
                pipe.xpending_range(key, group, "-", "+", 1)
        replies = iter(pipe.execute(raise_on_error=False))
        clock = next(replies)
        if isinstance(clock, Exception):
            raise clock
        now_ms = int(server_time(clock) * 1000)
        streams = []
        for priority, key in items:
            stream = Stream(priority, key, now_ms)
            depth, infos = next(replies), next(replies)
            per_group = [(next(replies), next(replies)) for _ in groups]
            if isinstance(depth, Exception):  # WRONGTYPE: not a stream
                skips["wrong_type"] += 1
                log.warning("queue %s: %s is not a stream (%s)", priority, key,
                            describe_error(depth))
                continue
            stream.depth = depth
            if isinstance(infos, Exception):  # XLEN of a missing key is 0; XINFO fails
                skips["missing_stream"] += 1
                streams.append(stream)
                continue
            by_name = {g["name"].decode("utf-8", "backslashreplace"): g for g in infos}
            for group, (summary, oldest) in zip(groups, per_group, strict=True):
                if group not in by_name:
                    skips["missing_group"] += 1
                    log.warning("queue %s: stream %s has no consumer group %s", priority, key,
                                group)
                    continue
                stream.groups[group] = Group(
                    by_name[group],
                    None if isinstance(summary, Exception) else summary,
                    [] if isinstance(oldest, Exception) else oldest)
            streams.append(stream)

        pipe = client.pipeline(transaction=False)
        waiting = [(stream, group) for stream in streams for group in stream.groups.values()]
        for stream, group in waiting:
            last = group.info["last-delivered-id"]
            pipe.xrange(stream.key, b"(" + last, "+", count=1)
        for (_, group), reply in zip(waiting, pipe.execute(raise_on_error=False), strict=True):
            group.next_waiting = [] if isinstance(reply, Exception) else reply
        return streams, skips
    finally:
        client.close()


def _dead_consumers(ctx: Context, names: set[bytes]) -> set[bytes]:
    """Of these consumer names, the registered workers whose heartbeat is older than the TTL.

    A consumer that is not a registered worker is not declared dead: tqmon cannot know it, and
    requeueing the entries of a live consumer that just does not publish heartbeats would
    duplicate its work.
    """
    if not names:
        return set()
    registry = contract.Keys(ctx.config.prefix).workers
    ordered = sorted(names)

    def read(client: redis.Redis) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        pipe.time()
        pipe.zmscore(registry, ordered)
        return pipe.execute()

    clock, scores = on_key_owner(ctx, registry, read)
    cutoff = server_time(clock) - ctx.config.heartbeat_ttl
    return {name for name, score in zip(ordered, scores, strict=True)
            if score is not None and score < cutoff}


def _requeue_scripts(stream: str, stats: str, orphaned: list[tuple[bytes, str]],
                     client: redis.Redis) -> list[Any]:
    """One pipeline of REQUEUE scripts: one per (dead consumer, group) of a stream."""
    pipe = client.pipeline(transaction=False)
    for consumer, group in orphaned:
        pipe.execute_command("EVAL", contract.REQUEUE, 2, stream, stats, group, consumer,
                             contract.REQUEUE_LIMIT, contract.REDELIVERIES_FIELD)
    return pipe.execute(raise_on_error=False)


def _requeue(ctx: Context, streams: list[Stream], dead: set[bytes],
             skips: Counter[str]) -> None:
    """--requeue-orphans: one atomic script per (stream, group, dead consumer)."""
    stats = contract.Keys(ctx.config.prefix).stats
    for stream in streams:
        orphaned = [(consumer["name"], name) for name, group in stream.groups.items()
                    if group.pending for consumer in group.pending["consumers"]
                    if consumer["name"] in dead]
        if not orphaned:
            continue
        if ctx.topology.cluster and key_slot(stream.key.encode()) != key_slot(stats.encode()):
            skips["requeue_refused"] += 1
            log.error("not requeueing the orphans of %s: it is not in the slot of %s, so the "
                      "move and its count cannot be one atomic script; give the stream the "
                      "%s hash tag", stream.key, stats, contract.Keys(ctx.config.prefix).tag)
            continue
        moves = on_key_owner(ctx, stream.key, partial(_requeue_scripts, stream.key, stats,
                                                      orphaned))
        for (name, group), moved in zip(orphaned, moves, strict=True):
            if isinstance(moved, Exception):
                log.warning("requeue of %s/%s failed: %s", stream.key, group,
                            describe_error(moved))
            else:
                log.info("requeued %s entries of dead consumer %r on %s", moved, name,
                         stream.key)


def _add_samples(out: Samples, streams: list[Stream], dead: set[bytes] | None) -> None:
    for stream in streams:
        out.add("task_queue_depth", {"priority": stream.priority}, float(stream.depth or 0))
        for name, group in stream.groups.items():
            labels = {"priority": stream.priority, "group": name}
            info = group.info
            if info.get("lag") is not None:  # null after deletions: unknown, never 0
                out.add("task_queue_lag", labels, float(info["lag"]))
            out.add("task_queue_pending", labels, float(info["pending"]))
            out.add("task_queue_consumers", labels, float(info["consumers"]))
            waiting_age = 0.0
            if group.next_waiting:
                waiting_age = max(0, stream.now_ms - _id_ms(group.next_waiting[0][0])) / 1000
            out.add("task_queue_oldest_waiting_age_seconds", labels, waiting_age)
            idle = group.oldest_pending[0]["time_since_delivered"] if group.oldest_pending else 0
            out.add("task_queue_oldest_pending_idle_seconds", labels, idle / 1000)
            if dead is not None:  # unknown when the registry could not be read: no series
                consumers = group.pending["consumers"] if group.pending else []
                out.add("task_queue_orphaned", labels,
                        float(sum(c["pending"] for c in consumers if c["name"] in dead)))


def collect(ctx: Context) -> Samples:
    by_node: dict[Node, list[tuple[str, str]]] = {}
    skips: Counter[str] = Counter()
    for priority, key in ctx.config.streams:
        node = ctx.topology.node_for(key)
        if node is None:
            skips["unreachable"] += 1
            continue
        by_node.setdefault(node, []).append((priority, key))
    answers = run_parallel(
        {node: (lambda n=node, i=items: _read_node(ctx, n, i)) for node, items in by_node.items()},
        ctx.deadline)
    streams: list[Stream] = []
    for node, items in by_node.items():
        answer = answers[node]
        if isinstance(answer, BaseException):
            skips["unreachable"] += len(items)
            log.warning("queues on %s: %s", node.address, describe_error(answer))
        else:
            streams += answer[0]
            skips.update(answer[1])
    if by_node and not streams and skips["unreachable"]:
        raise ConnectionError("no queue stream could be read")
    consumers = {c["name"] for s in streams for g in s.groups.values() if g.pending
                 for c in g.pending["consumers"]}
    try:
        dead: set[bytes] | None = _dead_consumers(ctx, consumers)
    except Exception as exc:  # the registry's node is down: orphans unknown, the rest stands
        log.warning("queues: cannot tell which consumers are dead: %s", describe_error(exc))
        dead = None
    if ctx.config.requeue_orphans and dead:
        _requeue(ctx, streams, dead, skips)
    out = Samples()
    _add_samples(out, streams, dead)
    out.add_skipped("queues", REASONS, skips)
    return out
