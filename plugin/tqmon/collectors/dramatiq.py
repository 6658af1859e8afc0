"""Dramatiq's RedisBroker read as it is: worker heartbeats, queues, ack sets; never written.

Keys (dramatiq/brokers/redis/dispatch.lua; NS = --dramatiq-namespace, default `dramatiq`):
  NS:__heartbeats__              ZSET: broker id -> last heartbeat, Unix milliseconds (every
                                 broker command a worker process sends beats)
  NS:__acks__.<broker id>.<q>    SET of message ids the worker fetched and has not acked yet
  NS:<q>                         LIST of waiting message ids
  NS:<q>.DQ.msgs                 HASH of delayed messages (workers prefetch delayed messages
                                 into their ack sets until due, so the DQ list is nearly
                                 always empty; the hash holds them all)
  NS:<q>.XQ                      ZSET, the dead-letter queue

A broker id whose heartbeat is older than the broker's heartbeat timeout (60 s by default) is
silent. Silence alone is no death: a clean stop (SIGTERM) requeues the messages it held and
leaves its id in the heartbeats, exactly as an idle SIGKILL does, and producers beat too (every
broker command does), so a stopped web process is a silent id as well. A silent id dies only with
evidence: it still holds a message in an ack set of a watched queue (or its delay queue), work
that a clean stop would have given back. Such a worker is `worker_up 0`; any other silent id is
forgotten (no series: stopped, a producer, or died idle, which loses no work). Its ack sets hold
its orphaned messages: they are requeued only when another worker's random maintenance pass runs,
which also drops the dead worker from the heartbeats. Dramatiq keeps no list of queues in Redis,
so the queues come from --dramatiq-queues. Dramatiq does not support Redis Cluster (dispatch.lua
uses unhashed keys): one node holds the heartbeats and every ack set. Dramatiq records no
per-worker task counts, host, start time or status: those series are absent for it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import redis

from .. import connection, pools
from ..model import Samples
from .base import BATCH, WORKER_REASONS, Context, Skips, cut, on_key_owner, server_time

WORKER = ("worker_id", "worker_name")
GROUP = "dramatiq"  # the `group` label of task_queue_orphaned
ZRANGE_BATCH = 5000
QUEUE_REASONS = ("bad_value", "wrong_type")


def _heartbeats(ctx: Context) -> str:
    return f"{ctx.config.dramatiq_namespace}:__heartbeats__"


def _read_heartbeats(client: redis.Redis, key: str) -> tuple[float, list[tuple[bytes, bytes]]]:
    pipe = client.pipeline(transaction=False)
    pipe.execute_command("TIME")
    pipe.execute_command("ZCARD", key)
    clock, size = pipe.execute()
    beats: list[tuple[bytes, bytes]] = []
    commands = [(b"ZRANGE", key, start, start + ZRANGE_BATCH - 1, b"WITHSCORES")
                for start in range(0, int(size), ZRANGE_BATCH)]
    for reply in connection.pipelined(client, commands) if commands else []:
        if isinstance(reply, Exception):
            raise reply
        beats.extend(zip(reply[::2], reply[1::2], strict=True))
    return server_time(clock), beats


def _ack_sets(ns: str, worker: bytes, queues: Sequence[str]) -> list[bytes]:
    """A worker's ack sets: one for each queue and its delay queue."""
    prefix = f"{ns}:__acks__.".encode() + worker + b"."
    return [prefix + name.encode() for queue in queues for name in (queue, f"{queue}.DQ")]


def _holding(client: redis.Redis, ns: str, silent: list[bytes], queues: Sequence[str]
             ) -> set[bytes]:
    """The silent ids that still hold a message on a watched queue: one EXISTS over all of an
    id's ack sets (Redis deletes an empty set), BATCH ids per round trip."""
    holding: set[bytes] = set()
    for start in range(0, len(silent), BATCH):
        batch = silent[start:start + BATCH]
        replies = connection.pipelined(
            client, [(b"EXISTS", *_ack_sets(ns, worker, queues)) for worker in batch])
        for worker, reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception):
                raise reply  # NOPERM: the collector fails, never a guess either way
            if reply:
                holding.add(worker)
    return holding


def collect_workers(ctx: Context) -> Samples:
    timeout = ctx.config.dramatiq_heartbeat_timeout
    ns, queues = ctx.config.dramatiq_namespace, ctx.config.dramatiq_queues

    def work(client: redis.Redis) -> Samples:
        out, skips = Samples(), Skips()
        now, beats = _read_heartbeats(client, _heartbeats(ctx))
        ages = [(raw_id, max(0.0, now - float(raw_ms) / 1000)) for raw_id, raw_ms in beats]
        dead = _holding(client, ns, [raw_id for raw_id, age in ages if age > timeout], queues)
        up_rows = out.series("worker_up", WORKER)
        age_rows = out.series("worker_heartbeat_age_seconds", WORKER)
        info_rows = out.series("worker_info", (*WORKER, "hostname"))
        # broker ids are uuids and record nothing else: the pool is the queues watched
        namer, pool = pools.Namer(ctx.config.worker_pool_pattern), ",".join(queues)
        for raw_id, age in ages:
            up = age <= timeout
            if not up and raw_id not in dead:
                continue  # silent, holding nothing: stopped, a producer, or died idle
            worker_id = skips.label(raw_id)
            out.pools[worker_id] = namer(worker_id, fallback=pool)
            up_rows.append(((worker_id, worker_id), 1.0 if up else 0.0))
            age_rows.append(((worker_id, worker_id), age))
            info_rows.append(((worker_id, worker_id, ""), 1.0))  # Dramatiq records no host
        out.add_skipped("workers", WORKER_REASONS, skips)
        return out

    return on_key_owner(ctx, _heartbeats(ctx), work)


def collect_queues(ctx: Context) -> Samples:
    """Depth, delayed and dead-lettered messages per queue, and the messages in dead workers'
    ack sets (SCARD per dead worker and queue, pipelined in batches) as orphaned."""
    ns, queues = ctx.config.dramatiq_namespace, ctx.config.dramatiq_queues
    timeout = ctx.config.dramatiq_heartbeat_timeout

    def work(client: redis.Redis) -> Samples:
        out, skips = Samples(), Counter[str]()
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("TIME")
        for queue in queues:
            pipe.execute_command("LLEN", f"{ns}:{queue}")
            pipe.execute_command("HLEN", f"{ns}:{queue}.DQ.msgs")
            pipe.execute_command("ZCARD", f"{ns}:{queue}.XQ")
        clock, *replies = pipe.execute(raise_on_error=False)
        if isinstance(clock, Exception):
            raise clock
        now_ms = server_time(clock) * 1000
        dead = client.execute_command("ZRANGEBYSCORE", _heartbeats(ctx), "-inf",
                                      f"({now_ms - timeout * 1000}")
        for index, queue in enumerate(queues):
            priority = cut(queue)
            depth, delayed, dead_letter = replies[3 * index:3 * index + 3]
            for metric, labels, value in (
                    ("task_queue_depth", {"priority": priority}, depth),
                    ("task_queue_registry_jobs", {"priority": priority, "registry": "delayed"},
                     delayed),
                    ("task_queue_registry_jobs",
                     {"priority": priority, "registry": "dead_letter"}, dead_letter)):
                if isinstance(value, Exception):
                    skips["wrong_type"] += 1
                else:
                    out.add(metric, labels, float(value))
        sets = [(queue, key) for worker in dead for queue in queues
                for key in _ack_sets(ns, worker, (queue,))]
        orphaned: Counter[str] = Counter({queue: 0 for queue in queues})
        for start in range(0, len(sets), BATCH):
            batch = sets[start:start + BATCH]
            counts = connection.pipelined(client, [(b"SCARD", key) for _, key in batch])
            for (queue, _), count in zip(batch, counts, strict=True):
                if isinstance(count, Exception):
                    skips["wrong_type"] += 1
                else:
                    orphaned[queue] += count
        for queue in queues:
            out.add("task_queue_orphaned", {"priority": cut(queue), "group": GROUP},
                    float(orphaned[queue]))
        out.add_skipped("queues", QUEUE_REASONS, skips)
        return out

    return on_key_owner(ctx, _heartbeats(ctx), work)
