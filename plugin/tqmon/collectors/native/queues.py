"""Queue health: the task streams (one per priority) and their consumer groups.

Streams may sit on different cluster nodes when configured without the `{P}` hash tag, so the
commands are grouped by node: per node, one pipeline (TIME, XLEN, XINFO GROUPS, XPENDING summary
and oldest entry, the dead-letter stream's XLEN, and XINFO CONSUMERS unless --read-only) and a
second (XRANGE for the oldest entry not yet delivered), nodes in parallel. Orphans are pending
entries of consumers that are dead workers: registered past their heartbeat TTL, or pruned as
dead (a tombstone in `{P}:workers:pruned`); one pipeline on the registry's node tells which.
What the collector may change (requeue, dead letters, consumers leaving) is in `act.py`.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import redis
from redis.crc import key_slot

from ... import connection, contract
from ...failures import NODE_ERRORS, NodeDown
from ...model import Samples, describe_error
from ...parallel import run_parallel
from ...topology import Node
from ..base import Context, no_node, on_key_owner, server_time
from . import act
from .stream_state import Consumers, Group, Stream

log = logging.getLogger(__name__)

REASONS = ("wrong_type", "missing_stream", "missing_group", "unreachable", "requeue_refused",
           "refused")


def _id_ms(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def dead_letter_in_slot(key: str) -> bool:
    """The dead-letter stream shares the stream's slot (always with a hash tag)."""
    return key_slot(key.encode()) == key_slot(contract.dead_letter(key).encode())


Command = tuple[str, tuple[Any, ...], dict[str, Any]]


def _execute(client: redis.Redis, commands: list[Command], asking: bool) -> list[Any]:
    """One pipelined round trip of redis-py commands (their reply parsing included). With
    `asking`, each is preceded by ASKING: the node imports the slot and holds the keys that
    already moved, which it serves only to a client that says it was redirected."""
    pipe = client.pipeline(transaction=False)
    for name, args, kwargs in commands:
        if asking:
            pipe.execute_command("ASKING")
        getattr(pipe, name)(*args, **kwargs)
    replies = pipe.execute(raise_on_error=False)
    return replies[1::2] if asking else replies


def _read_node(ctx: Context, node: Node, items: list[tuple[str, str]], asking: bool = False
               ) -> tuple[list[Stream], Counter[str]]:
    """Everything about the streams on one node, in two round trips."""
    groups = ctx.config.groups
    with_consumers = not ctx.config.read_only
    skips: Counter[str] = Counter()
    client = connection.client(ctx.config, node.host, node.port, ctx.deadline, tls=node.tls,
                               decode=False)
    try:
        commands: list[Command] = [("time", (), {})]
        for _, key in items:
            commands += [("xlen", (key,), {}), ("xinfo_groups", (key,), {}),
                         ("xlen", (contract.dead_letter(key) if dead_letter_in_slot(key)
                                   else key,), {})]
            for group in groups:
                commands += [("xpending", (key, group), {}),
                             ("xpending_range", (key, group, "-", "+", 1), {})]
                if with_consumers:
                    commands.append(("xinfo_consumers", (key, group), {}))
        replies = iter(_execute(client, commands, asking))
        clock = next(replies)
        if isinstance(clock, Exception):
            raise clock
        now_ms = int(server_time(clock) * 1000)
        streams = []
        per = 3 if with_consumers else 2
        for priority, key in items:
            stream = Stream(priority, key, now_ms)
            depth, infos, dead_letters = next(replies), next(replies), next(replies)
            per_group = [[next(replies) for _ in range(per)] for _ in groups]
            if isinstance(depth, redis.exceptions.AskError):  # moving: read it on its target
                stream.moved_to = (depth.host, depth.port)
                streams.append(stream)
                continue
            if isinstance(depth, Exception):  # WRONGTYPE: not a stream
                skips["wrong_type"] += 1
                log.warning("queue %s: %s is not a stream (%s)", priority, key,
                            describe_error(depth))
                continue
            stream.depth = depth
            if dead_letter_in_slot(key) and isinstance(dead_letters, int):
                stream.dead_letters = dead_letters
            if isinstance(infos, Exception):  # XLEN of a missing key is 0; XINFO fails
                skips["missing_stream"] += 1
                streams.append(stream)
                continue
            stream.group_count = len(infos)
            by_name = {g["name"].decode("utf-8", "backslashreplace"): g for g in infos}
            for group, replies_of_group in zip(groups, per_group, strict=True):
                summary, oldest, *consumers = replies_of_group
                if group not in by_name:
                    skips["missing_group"] += 1
                    log.warning("queue %s: stream %s has no consumer group %s", priority, key,
                                group)
                    continue
                unread = isinstance(summary, Exception) or isinstance(oldest, Exception)
                if unread:  # e.g. NOPERM: pending, idle and orphans unknown, never 0
                    skips["refused"] += 1
                    error = summary if isinstance(summary, Exception) else oldest
                    if skips["refused"] == 1:
                        log.warning("queue %s: XPENDING refused, orphans unknown: %s", priority,
                                    describe_error(error))
                stream.groups[group] = Group(
                    by_name[group],
                    None if isinstance(summary, Exception) else summary,
                    [] if isinstance(oldest, Exception) else oldest,
                    consumers=[] if not consumers or isinstance(consumers[0], Exception)
                    else consumers[0], unread=unread)
            streams.append(stream)

        waiting = [(stream, group) for stream in streams for group in stream.groups.values()]
        ranges: list[Command] = [
            ("xrange", (stream.key, b"(" + group.info["last-delivered-id"], "+"), {"count": 1})
            for stream, group in waiting]
        for (_, group), reply in zip(waiting, _execute(client, ranges, asking), strict=True):
            group.next_waiting = [] if isinstance(reply, Exception) else reply
        return streams, skips
    finally:
        client.close()


def _dead_consumers(ctx: Context, names: set[bytes]) -> Consumers:
    """Of these consumer names, the dead workers: registered with a heartbeat older than the
    TTL, or pruned as dead (and not registered again since).

    A consumer that is not a worker tqmon knows is not declared dead: tqmon cannot know it, and
    requeueing the entries of a live consumer that just does not publish heartbeats would
    duplicate its work.
    """
    if not names:
        return Consumers(set(), set())
    keys = contract.Keys(ctx.config.prefix)
    ordered = sorted(names)

    def read(client: redis.Redis) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        pipe.time()
        pipe.zmscore(keys.workers, ordered)
        pipe.zmscore(keys.pruned, ordered)
        return pipe.execute()

    clock, scores, pruned_scores = on_key_owner(ctx, keys.workers, read)
    cutoff = server_time(clock) - ctx.config.heartbeat_ttl
    dead, pruned = set(), set()
    for name, score, pruned_at in zip(ordered, scores, pruned_scores, strict=True):
        if score is None and pruned_at is not None:
            pruned.add(name)
            dead.add(name)
        elif score is not None and score < cutoff:
            dead.add(name)
    return Consumers(dead, pruned)


def _add_samples(out: Samples, streams: list[Stream], dead: set[bytes] | None) -> None:
    for stream in streams:
        out.add("task_queue_depth", {"priority": stream.priority}, float(stream.depth or 0))
        if stream.dead_letters is not None:
            out.add("task_queue_dead_letter_depth", {"priority": stream.priority},
                    float(stream.dead_letters))
        for name, group in stream.groups.items():
            labels = {"priority": stream.priority, "group": name}
            info = group.info
            if info.get("lag") is not None:  # null after deletions: unknown, never 0
                out.add("task_queue_lag", labels, float(info["lag"]))
            out.add("task_queue_pending", labels, float(info["pending"]))
            out.add("task_queue_consumers", labels, float(max(0, info["consumers"] - group.left)))
            waiting_age = 0.0
            if group.next_waiting:
                waiting_age = max(0, stream.now_ms - _id_ms(group.next_waiting[0][0])) / 1000
            out.add("task_queue_oldest_waiting_age_seconds", labels, waiting_age)
            if group.unread:  # XPENDING refused: no idle time and no orphans, rather than 0
                continue
            idle = group.oldest_pending[0]["time_since_delivered"] if group.oldest_pending else 0
            out.add("task_queue_oldest_pending_idle_seconds", labels, idle / 1000)
            if dead is not None:  # unknown when the registry could not be read: no series
                out.add("task_queue_orphaned", labels,
                        float(sum(n for c, n in group.held().items() if c in dead)))


def _follow_ask(ctx: Context, streams: list[Stream], skips: Counter[str]) -> list[Stream]:
    """Streams that answered ASK (their slot migrates and they moved already), read again on
    the importing node; the rest as they were."""
    moved: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for stream in streams:
        if stream.moved_to is not None:
            moved.setdefault(stream.moved_to, []).append((stream.priority, stream.key))
    if not moved:
        return streams
    tls = ctx.config.tls
    kept = [s for s in streams if s.moved_to is None]
    for (host, port), items in moved.items():
        node = Node(host, port, "master", tls=tls)
        try:
            again, more = _read_node(ctx, node, items, asking=True)
        except NODE_ERRORS as exc:
            ctx.failures.node(node.address, exc)
            skips["unreachable"] += len(items)
            continue
        kept += [s for s in again if s.moved_to is None]  # no second redirect
        skips.update(more)
    order = {key: i for i, (_, key) in enumerate(ctx.config.streams)}
    return sorted(kept, key=lambda s: order.get(s.key, len(order)))


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
            if isinstance(answer, NODE_ERRORS):
                ctx.failures.node(node.address, answer)  # once per node and run
            else:
                log.warning("queues on %s: %s", node.address, describe_error(answer))
        else:
            streams += answer[0]
            skips.update(answer[1])
    streams = _follow_ask(ctx, streams, skips)
    if not streams and skips["unreachable"]:
        if not by_node:  # no node's failure said it
            raise no_node(ctx, "no reachable master is known for the queue streams")
        raise NodeDown("no queue stream could be read")  # each node's failure is on stderr
    names = {c["name"] for s in streams for g in s.groups.values()
             for c in [*(g.pending or {}).get("consumers", []), *g.consumers]}
    try:
        consumers: Consumers | None = _dead_consumers(ctx, names)
    except NodeDown:  # the registry's node is down (said once): orphans unknown, the rest stands
        consumers = None
    except Exception as exc:
        log.warning("queues: cannot tell which consumers are dead: %s", describe_error(exc))
        consumers = None
    if consumers is not None and not ctx.config.read_only:
        act.act(ctx, streams, consumers, skips)
    out = Samples()
    _add_samples(out, streams, consumers.dead if consumers is not None else None)
    out.add_skipped("queues", REASONS, skips)
    return out
