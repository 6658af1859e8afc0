"""Celery's queues: depth (LLEN of every priority list), the message at each list's head (its
eta, and its delivery tag for the observed waiting age, seen.py), and the unacked messages
(ZRANGE of `unacked_index` in windows, HMGET of `unacked` in batches, attributed to their queue
through the bindings): in-flight counts, the oldest one's age (the running age) and the
orphans (taken longer ago than the visibility timeout: their worker died, kombu restores them
only then). LLEN and LINDEX -1 of every probed list go in one round trip; the waiting-age
script rides with the first unacked read.
"""

from __future__ import annotations

import datetime
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis

from ... import boundedjson, connection
from ...model import Samples
from ..base import BATCH, Context, cut, on_key_owner, server_time
from . import seen
from .layout import Bindings, Layout, bindings, warn

log = logging.getLogger(__name__)

UNACKED_WINDOW = 5000  # unacked_index members per ZRANGE
UNACKED_MAX = 200_000  # unacked messages read per run, at most
GROUP = "celery"  # the `group` label of the in-flight and orphaned series
LIST_BATCH = 4 * BATCH  # commands a round trip over the lists: LLEN and LINDEX of 2,000
QUEUE_REASONS = ("bad_value", "wrong_type", "unknown_queue", "not_scanned")


@dataclass
class Queue:
    """What one queue's keys say."""

    depth: int = 0
    in_flight: int = 0
    orphaned: int = 0
    oldest_taken: float | None = None
    oldest_eta: float | None = None
    oldest_seen: float | None = None  # first seen at the head of one of its lists
    memory: bool = False  # the observed age is known (seen.py had memory)


def _head(message: Any, skips: Counter[str]) -> tuple[bytes | None, float | None]:
    """The delivery tag and the eta (Unix time) of a waiting message, where it has them."""
    try:
        data = boundedjson.loads(message)
        tag = data["properties"]["delivery_tag"]
        eta = (data.get("headers") or {}).get("eta")
    except (ValueError, KeyError, TypeError, AttributeError):  # BadJSON is a ValueError
        skips["bad_value"] += 1
        return None, None
    tag = tag.encode() if isinstance(tag, str) else None
    if not isinstance(eta, str):
        return tag, None
    try:
        parsed = datetime.datetime.fromisoformat(eta.replace("Z", "+00:00"))
    except ValueError:
        return tag, None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return tag, parsed.timestamp()


@dataclass
class Lists:
    """What one round trip over the priority lists found."""

    now: float
    unacked: int  # size of unacked_index
    heads: dict[bytes, bytes]  # list key -> delivery tag of the message at its head
    empty: list[bytes]
    queue_of: dict[bytes, bytes]  # list key -> its queue


def _lists(client: redis.Redis, layout: Layout, queues: list[bytes], found: dict[bytes, Queue],
           skips: Counter[str]) -> Lists:
    """Depth and the head's eta of every queue, with the server time and the unacked size:
    TIME, ZCARD, and LLEN and LINDEX -1 of every probed list, in one round trip (LIST_BATCH)."""
    keys = [(queue, key) for queue in queues for key in layout.lists(queue)]
    commands: list[tuple[Any, ...]] = [(b"TIME",), (b"ZCARD", layout.prefix + b"unacked_index")]
    for _, key in keys:
        commands += [(b"LLEN", key), (b"LINDEX", key, -1)]
    replies = [reply for start in range(0, len(commands), LIST_BATCH)
               for reply in connection.pipelined(client, commands[start:start + LIST_BATCH])]
    if isinstance(replies[0], Exception):
        raise replies[0]
    unacked = 0 if isinstance(replies[1], Exception) else int(replies[1])
    if isinstance(replies[1], Exception):
        skips["wrong_type"] += 1
    out = Lists(server_time(replies[0]), unacked, {}, [], {})
    wrong = []
    for index, (queue, key) in enumerate(keys):
        length, tail = replies[2 + 2 * index], replies[3 + 2 * index]
        if isinstance(length, Exception) or isinstance(tail, Exception):
            skips["wrong_type"] += 1
            wrong.append(key)
            continue
        if not length:
            out.empty.append(key)
            continue
        found[queue].depth += int(length)
        if tail is None:  # taken between the two reads
            continue
        out.queue_of[key] = queue
        tag, eta = _head(tail, skips)
        if tag is not None:
            out.heads[key] = tag
        if eta is not None:
            state = found[queue]
            state.oldest_eta = eta if state.oldest_eta is None else min(eta, state.oldest_eta)
    warn("queue keys that are not lists", wrong, "name the queues with --celery-queues")
    return out


def _observed(ctx: Context, lists: Lists, found: dict[bytes, Queue], reply: Any) -> None:
    """Each queue's oldest first sighting at a list's head (seen.py), from the script's reply
    (or the process's memory)."""
    since_of, error = seen.first_seen(ctx, lists.now, lists.heads, lists.empty, reply)
    if error:
        log.warning("celery: observed waiting age not recorded: %s", error)
    remembered = error is None and _has_memory(ctx)
    for queue in found.values():
        queue.memory = remembered
    for key, since in since_of.items():
        state = found[lists.queue_of[key]]
        state.oldest_seen = since if state.oldest_seen is None else min(since, state.oldest_seen)


def _has_memory(ctx: Context) -> bool:
    cfg = ctx.config
    return not cfg.read_only or cfg.listen is not None or cfg.interval is not None


def _unacked(client: redis.Redis, prefix: bytes, size: int, now: float, visibility: float,
             routes: dict[tuple[bytes, bytes], bytes], found: dict[bytes, Queue],
             skips: Counter[str], extra: tuple[Any, ...] | None) -> Any:
    """Attribute each unacked message to its queue from its exchange and routing key. `extra`
    (the waiting-age script) rides in the first round trip; its reply is returned."""
    if size > UNACKED_MAX:
        skips["not_scanned"] += size - UNACKED_MAX
        size = UNACKED_MAX
    windows = [(b"ZRANGE", prefix + b"unacked_index", start,
                min(size, start + UNACKED_WINDOW) - 1, b"WITHSCORES")
               for start in range(0, size, UNACKED_WINDOW)]
    replies = connection.pipelined(client, [*windows, *([extra] if extra else [])])
    extra_reply = replies.pop() if extra else None
    taken: list[tuple[bytes, float]] = []
    for reply in replies:
        if isinstance(reply, Exception):
            skips["wrong_type"] += 1
            return extra_reply
        taken += [(tag, float(score)) for tag, score in zip(reply[::2], reply[1::2],
                                                            strict=True)]
    for start in range(0, len(taken), BATCH):
        batch = taken[start:start + BATCH]
        [messages] = connection.pipelined(
            client, [(b"HMGET", prefix + b"unacked", *(tag for tag, _ in batch))])
        if isinstance(messages, Exception):
            skips["wrong_type"] += 1
            return extra_reply
        for (_, taken_at), raw in zip(batch, messages, strict=True):
            if raw is None:  # acked between the two reads
                continue
            queue = _route(raw, routes, found, skips)
            if queue is None:
                continue
            state = found[queue]
            state.in_flight += 1
            if taken_at < now - visibility:
                state.orphaned += 1
            if state.oldest_taken is None or taken_at < state.oldest_taken:
                state.oldest_taken = taken_at
    return extra_reply


def _route(raw: bytes, routes: dict[tuple[bytes, bytes], bytes], found: dict[bytes, Queue],
           skips: Counter[str]) -> bytes | None:
    try:
        _, exchange, routing_key = boundedjson.loads(raw)
        exchange, routing_key = exchange.encode(), routing_key.encode()
    except (ValueError, TypeError, AttributeError):  # BadJSON is a ValueError
        skips["bad_value"] += 1
        return None
    queue = routes.get((exchange, routing_key), routing_key)
    if queue not in found:
        skips["unknown_queue"] += 1
        return None
    return queue


def collect_queues(ctx: Context) -> Samples:
    def work(client: redis.Redis) -> Samples:
        out, skips = Samples(), Counter[str]()
        bound: Bindings = bindings(ctx.config, client, skips)
        found = {queue: Queue() for queue in bound.queues}
        lists = _lists(client, bound.layout, bound.queues, found, skips)
        script = seen.command(ctx, lists.heads, lists.empty)
        reply = _unacked(client, bound.layout.prefix, lists.unacked, lists.now,
                         ctx.config.celery_visibility_timeout, bound.routes, found, skips, script)
        _observed(ctx, lists, found, reply)
        _add_queues(out, lists.now, found)
        out.add_skipped("queues", QUEUE_REASONS, skips)
        return out

    return on_key_owner(ctx, ctx.config.celery_key_prefix + "unacked", work)


def _add_queues(out: Samples, now: float, found: dict[bytes, Queue]) -> None:
    for queue, state in found.items():
        priority = cut(queue.decode("utf-8", "backslashreplace"))
        group = {"priority": priority, "group": GROUP}
        out.add("task_queue_depth", {"priority": priority}, float(state.depth))
        out.add("task_queue_pending", group, float(state.in_flight))
        out.add("task_queue_orphaned", group, float(state.orphaned))
        out.add("task_queue_oldest_pending_idle_seconds", group,
                0.0 if state.oldest_taken is None else max(0.0, now - state.oldest_taken))
        ages = [now - t for t in (state.oldest_eta, state.oldest_seen) if t is not None]
        if ages:
            out.add("task_queue_oldest_waiting_age_seconds", group, max(0.0, *ages))
        elif state.depth == 0 or state.memory:  # nothing waits (or just first seen): 0
            out.add("task_queue_oldest_waiting_age_seconds", group, 0.0)
