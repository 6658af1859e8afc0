"""What the queues collector changes in Redis, never without being asked and each change one
atomic script: `--requeue-orphans` (dead workers' entries back on their stream, or to the
dead-letter stream after `--max-redeliveries`), and consumers of workers pruned as dead leaving
their group once they hold nothing (so consumer lists do not grow with every restart).

Nothing here runs after the run's deadline: an abandoned collection must not act after its
answer was given.
"""

from __future__ import annotations

import logging
from collections import Counter
from functools import partial
from typing import Any

import redis
from redis.crc import key_slot

from ... import contract
from ...failures import NodeDown
from ...model import describe_error
from ..base import Context, on_key_owner
from .stream_state import Consumers, Stream

log = logging.getLogger(__name__)


class _Late(Exception):
    """The run's deadline passed before acting: the answer may be given already."""


def act(ctx: Context, streams: list[Stream], consumers: Consumers,
        skips: Counter[str]) -> None:
    if ctx.config.requeue_orphans and consumers.dead:
        for stream in streams:
            if not ctx.deadline.live():
                return
            _requeue_stream(ctx, stream, consumers.dead, skips)
    if consumers.pruned:
        for stream in streams:
            if not ctx.deadline.live():
                return
            _leave(ctx, stream, consumers.pruned)


def _refuse(stream: Stream, entries: int, skips: Counter[str], why: str) -> None:
    skips["requeue_refused"] += entries
    log.warning("not requeueing %d orphaned entries of %s: %s", entries, stream.key, why)


def _requeue_stream(ctx: Context, stream: Stream, dead: set[bytes],
                    skips: Counter[str]) -> None:
    """One atomic script per (group, dead consumer) of one stream."""
    orphaned = [(name, group_name, count) for group_name, group in stream.groups.items()
                for name, count in group.held().items() if name in dead]
    if not orphaned:
        return
    entries = sum(count for _, _, count in orphaned)
    keys = contract.Keys(ctx.config.prefix)
    if stream.group_count > 1:
        _refuse(stream, entries, skips,
                f"it is read by more than one consumer group ({stream.group_count}) and a copy "
                "would reach each of them again; claim them with XAUTOCLAIM in their group")
        return
    slot = key_slot(stream.key.encode())
    if ctx.topology.cluster and (slot != key_slot(keys.stats.encode())
                                 or slot != key_slot(contract.dead_letter(stream.key).encode())):
        _refuse(stream, entries, skips,
                f"it is not in the slot of {keys.stats}, so the move and its count cannot be "
                f"one atomic script; give the stream the {keys.tag} hash tag")
        return
    try:
        results = on_key_owner(ctx, stream.key, partial(
            _requeue_scripts, ctx, stream.key, keys.stats, [(n, g) for n, g, _ in orphaned]))
    except (NodeDown, _Late):  # on stderr already, or too late to act; the next run tries
        return
    except Exception as exc:
        log.warning("requeue on %s failed: %s", stream.key, describe_error(exc))
        return
    for (name, group, count), result in zip(orphaned, results, strict=True):
        if isinstance(result, Exception):
            log.warning("requeue of %s/%s failed: %s", stream.key, group, describe_error(result))
        elif int(result[0]) < 0:  # a second group appeared since the read
            _refuse(stream, count, skips, "more than one consumer group reads it")
        else:
            log.info("requeued %s and dead-lettered %s entries of dead consumer %r on %s",
                     result[0], result[1], name, stream.key)


def _requeue_scripts(ctx: Context, stream: str, stats: str,
                     orphaned: list[tuple[bytes, str]], client: redis.Redis) -> list[Any]:
    if not ctx.deadline.live():
        raise _Late()
    pipe = client.pipeline(transaction=False)
    for consumer, group in orphaned:
        pipe.execute_command("EVAL", contract.REQUEUE, 3, stream, stats,
                             contract.dead_letter(stream), group, consumer,
                             contract.REQUEUE_LIMIT, contract.REDELIVERIES_FIELD,
                             ctx.config.max_redeliveries)
    return pipe.execute(raise_on_error=False)


def _leave(ctx: Context, stream: Stream, pruned: set[bytes]) -> None:
    """Consumers of workers pruned as dead, holding nothing, leave their group."""
    idle = [(group_name, group, c["name"]) for group_name, group in stream.groups.items()
            for c in group.consumers if c["name"] in pruned and int(c["pending"]) == 0]
    if not idle:
        return

    def run(client: redis.Redis) -> list[Any]:
        if not ctx.deadline.live():
            raise _Late()
        pipe = client.pipeline(transaction=False)
        for group_name, _, name in idle:
            pipe.execute_command("EVAL", contract.LEAVE, 1, stream.key, group_name, name)
        return pipe.execute(raise_on_error=False)

    try:
        results = on_key_owner(ctx, stream.key, run)
    except (NodeDown, _Late):
        return
    except Exception as exc:  # monitoring goes on; the next run tries again
        log.warning("removing consumers of pruned workers from %s: %s", stream.key,
                    describe_error(exc))
        return
    for (_, group, _), left in zip(idle, results, strict=True):
        if left == 1:
            group.left += 1
