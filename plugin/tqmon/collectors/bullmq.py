"""BullMQ (5.x, 6.x) read as it is: queues, jobs, locks and worker connections; never written.

Keys `<P>:<queue>:<kind>` (P = --bullmq-prefix, default `bull`; on Redis Cluster P carries a
hash tag such as `{bull}`, which puts a queue's keys in one slot, as BullMQ's scripts need):
  wait, paused      LISTs of waiting job ids, the oldest at -1 (`paused`: BullMQ before 5.x
                    renamed `wait` to it while paused; later versions keep jobs in `wait` and
                    set the `meta` field `paused`)
  prioritized       ZSET of waiting jobs with a priority
  active            LIST of jobs a worker holds
  delayed, completed, failed, waiting-children   ZSETs
  meta              HASH (paused, ...)
  <id>              HASH, the job: timestamp (ms, creation), delay (ms), processedOn, ...
  <id>:lock         STRING with a PX expiry (lockDuration, 30 s by default), renewed by the
                    worker holding the job: an active job without it has lost its worker
                    (BullMQ calls it stalled, and a live worker's stalled check moves it back)

Workers keep no key: each Node worker's blocking connection sets its client name to
`<P>:<base64(queue)>` (`:w:<name>` appended when named), each Python worker (PyPI `bullmq`)
both its connections to `<P>:<queue>[:w:<name>]`, so they are counted from CLIENT LIST
(ACL `+client|list`); on a cluster every master is asked and, as BullMQ does, the node with
the most counts. Without the permission (or CLIENT LIST renamed away) the worker counts are
missing, the workers collector reports down, and everything else is collected.

Round trips per node: TIME and the sizes of every queue's keys with the ids of the oldest
waiting jobs (pipelined, 1,000 commands at a time); HMGET of those jobs and LRANGE of the
active lists; one EXISTS over the lock keys of each 1,000 active jobs.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import Counter, defaultdict
from typing import Any

import redis

from .. import connection
from ..model import Samples, describe_error
from .base import (
    BATCH,
    WORKER_REASONS,
    Context,
    Skips,
    cut,
    no_node,
    on_key_owner,
    server_time,
)
from .running import RunningAge

log = logging.getLogger(__name__)

GROUP = "bullmq"  # the `group` label of the queue series
QUEUE_REASONS = ("bad_value", "wrong_type")
# per queue, in this order: (command, kind[, args])
SIZES = (("LLEN", "wait"), ("LLEN", "paused"), ("ZCARD", "prioritized"), ("LLEN", "active"),
         ("ZCARD", "delayed"), ("ZCARD", "completed"), ("ZCARD", "failed"),
         ("ZCARD", "waiting-children"), ("HGET", "meta", b"paused"),
         ("LINDEX", "wait", -1), ("LINDEX", "paused", -1), ("LINDEX", "active", -1))
ACTIVE_OLDEST = 11  # workers move jobs to the head of `active`: the tail is the oldest taken
REGISTRIES = (("delayed", 4), ("completed", 5), ("failed", 6), ("waiting_children", 7))
EXISTS_PER_PIPELINE = 10  # EXISTS commands (of up to 1,000 keys each) per round trip
# last commands of a Python worker's connection that is not its command connection
NOT_COMMANDING = frozenset({b"bzpopmin", b"bzpopmax", b"blmove", b"brpoplpush", b"hello",
                            b"client|setname", b"client|setinfo", b"select", b"NULL", b""})
NO_PERMISSION = "CLIENT LIST refused: grant the ACL +client|list to count BullMQ workers"


def _key(prefix: str, queue: str, kind: str) -> bytes:
    return f"{prefix}:{queue}:{kind}".encode()


def _masters(ctx: Context) -> list[Any]:
    return [n for n in ctx.topology.nodes if n.role == "master" and n.host] or [
        n for n in ctx.topology.nodes[:1] if n.host]


def worker_connections(ctx: Context) -> Counter[str]:
    """Workers per queue, read once per run whichever collector asks first."""
    return ctx.once.get("bullmq_workers", lambda: _worker_connections(ctx))


def _worker_connections(ctx: Context) -> Counter[str]:
    """Worker connections per queue, from CLIENT LIST on every master (the node with the most
    for a queue counts, as BullMQ's getWorkers does). Raises when CLIENT LIST is refused."""
    head = f"{ctx.config.bullmq_prefix}:".encode()
    best: Counter[str] = Counter()
    masters = _masters(ctx)
    if not masters:
        raise no_node(ctx, "no reachable master is known")
    for node in masters:
        client = connection.client(ctx.config, node.host, node.port, ctx.deadline,
                                   tls=node.tls, db=0, decode=False)
        try:
            listing = client.execute_command("CLIENT LIST", "TYPE", "normal")
        except redis.ResponseError as exc:
            raise PermissionError(f"{NO_PERMISSION} ({describe_error(exc)})") from None
        finally:
            client.close()
        if isinstance(listing, bytes | str):  # redis-py parses it unless told otherwise
            listing = _parse_client_list(listing)
        counts = _workers(listing, head)
        for queue, count in counts.items():
            best[queue] = max(best[queue], count)
    return best


def _parse_client_list(raw: bytes | str) -> list[dict[str, bytes]]:
    text = raw.encode() if isinstance(raw, str) else raw
    return [dict(field.partition(b"=")[::2] for field in line.split(b" ") if b"=" in field)
            for line in text.splitlines()]


def _workers(listing: list[dict[str, Any]], head: bytes) -> Counter[str]:
    """Workers per queue on one node. Node's BullMQ names one connection per worker
    `<P>:<base64(queue)>[:w:<name>]`. Python's (PyPI `bullmq`) names all of a worker's
    connections `<P>:<queue>[:w:<name>]`: its command connection, and its blocking one while
    it blocks (dropped and opened again as it goes), so its workers are the command
    connections, the named ones whose last command is neither a blocking read nor a
    connection's set-up (or half of them while only such are seen: workers starting)."""
    node: Counter[str] = Counter()
    python: Counter[str] = Counter()
    commanding: Counter[str] = Counter()
    for entry in listing:
        name = _bytes(entry.get("name", b""))
        if not name.startswith(head):
            continue
        found = _queue_of(name[len(head):])
        if found is None:
            continue
        queue, is_node = found
        if is_node:
            node[queue] += 1
        else:
            python[queue] += 1
            commanding[queue] += _bytes(entry.get("cmd", b"")) not in NOT_COMMANDING
    for queue, connections in python.items():
        node[queue] += commanding[queue] or (connections + 1) // 2
    return node


def _bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _queue_of(rest: bytes) -> tuple[str, bool] | None:
    """(queue, whether Node named it) for a worker's client name `<queue>[:w:<name>]`, the
    queue in base64 (Node) or plain (Python; queue names hold no `:`), or None for other
    BullMQ connections (QueueEvents' `:qe`)."""
    queue, sep, suffix = rest.partition(b":")
    if (sep and not suffix.startswith(b"w:")) or not queue:
        return None
    try:
        decoded = base64.b64decode(queue, validate=True)
        if base64.b64encode(decoded) == queue:
            return decoded.decode("utf-8"), True
    except (binascii.Error, UnicodeDecodeError):
        pass
    try:
        return queue.decode("utf-8"), False
    except UnicodeDecodeError:
        return None


def collect_workers(ctx: Context) -> Samples:
    """workers_alive{pool=<queue>}: BullMQ workers connected now, each queue's workers a pool.
    A worker that dies closes its connection and is simply gone: its jobs' locks expire, which
    the queues collector reports."""
    out, skips = Samples(), Skips()
    counts = worker_connections(ctx)
    queues = ctx.config.bullmq_queues
    for queue, n in sorted(counts.items()):
        if not queues or queue in queues:
            out.add("workers_alive", {"pool": cut(queue)}, float(n))
    out.pool_totals = _metrics(ctx, list(queues or sorted(counts)), skips)
    out.add_skipped("workers", WORKER_REASONS, skips)
    return out


def _metrics(ctx: Context, queues: list[str], skips: Skips
             ) -> tuple[dict[str, float], dict[str, float]]:
    """Each queue's (its pool's) finished and failed jobs from BullMQ's own metrics counters
    (`<P>:<queue>:metrics:completed|failed`, field `count`: HINCRBY on every job finished,
    kept whatever removeOnComplete/removeOnFail remove), where the workers enable metrics.
    A queue without them has no pool counters."""
    prefix, processed, failed = ctx.config.bullmq_prefix, {}, {}
    for group in _by_node(ctx, queues).values():
        commands = [(b"HGET", _key(prefix, queue, f"metrics:{kind}"), b"count")
                    for queue in group for kind in ("completed", "failed")]
        replies = on_key_owner(ctx, _key(prefix, group[0], "meta").decode(),
                               lambda client, c=commands: _pipelined(client, c))
        for index, queue in enumerate(group):
            done, bad = replies[2 * index:2 * index + 2]
            if done is None and bad is None:
                continue  # metrics not enabled for this queue
            if isinstance(done, Exception) or isinstance(bad, Exception):
                skips["wrong_type"] += 1
                continue
            ok, ko = skips.number(done or 0), skips.number(bad or 0)
            if ok is not None and ko is not None:
                processed[cut(queue)], failed[cut(queue)] = ok + ko, ko
    return processed, failed


def _by_node(ctx: Context, queues: list[str]) -> dict[str, list[str]]:
    """Queues grouped by the node holding their keys (a queue's keys share a slot)."""
    by_node: dict[str, list[str]] = defaultdict(list)
    for queue in queues:
        node = ctx.topology.node_for(_key(ctx.config.bullmq_prefix, queue, "meta").decode())
        by_node[node.address if node else ""].append(queue)
    return by_node


def _read_sizes(client: redis.Redis, prefix: str, queues: list[str]) -> tuple[float, list]:
    commands: list[tuple] = [(b"TIME",)]
    for queue in queues:
        for command, kind, *args in SIZES:
            commands.append((command.encode(), _key(prefix, queue, kind), *args))
    replies = _pipelined(client, commands)
    if isinstance(replies[0], Exception):
        raise replies[0]
    return server_time(replies[0]), replies[1:]


def _collect_node(ctx: Context, client: redis.Redis, queues: list[str],
                  workers: Counter[str] | None, out: Samples, skips: Counter[str]) -> None:
    prefix, per = ctx.config.bullmq_prefix, len(SIZES)
    now, sizes = _read_sizes(client, prefix, queues)
    # round trip 2: the oldest waiting jobs' times, and the active lists
    second: list[tuple] = []
    for index, queue in enumerate(queues):
        row = sizes[index * per:(index + 1) * per]
        for job_id in row[9:11]:
            if isinstance(job_id, bytes):
                second.append((b"HMGET", f"{prefix}:{queue}:".encode() + job_id,
                               b"timestamp", b"delay"))
        if isinstance(row[ACTIVE_OLDEST], bytes):
            second.append((b"HGET", f"{prefix}:{queue}:".encode() + row[ACTIVE_OLDEST],
                           b"processedOn"))
        active = row[3] if isinstance(row[3], int) else 0
        for start in range(0, active, BATCH):
            second.append((b"LRANGE", _key(prefix, queue, "active"), start, start + BATCH - 1))
    replies = iter(_pipelined(client, second))
    running = RunningAge()
    locks: list[tuple[str, list[bytes]]] = []  # (queue, up to 1,000 active job ids)
    for index, queue in enumerate(queues):
        row = sizes[index * per:(index + 1) * per]
        labels = {"priority": cut(queue)}
        grouped = {**labels, "group": GROUP}
        if any(isinstance(value, Exception) for value in row):  # a key of another type
            skips["wrong_type"] += 1
            row = [0 if isinstance(v, Exception) else v for v in row]
        wait, paused_list, prioritized, active = row[0], row[1], row[2], row[3]
        paused = row[8] in (b"1", b"true")
        waiting = wait + paused_list + prioritized
        out.add("task_queue_depth", labels, float(waiting))
        out.add("task_queue_lag", grouped, float(waiting))
        out.add("task_queue_pending", grouped, float(active))
        for registry, position in REGISTRIES:
            out.add("task_queue_registry_jobs", {**labels, "registry": registry},
                    float(row[position]))
        out.add("task_queue_registry_jobs", {**labels, "registry": "paused"},
                float(waiting if paused else paused_list))
        if workers is not None:
            out.add("task_queue_consumers", grouped, float(workers.get(queue, 0)))
        oldest: list[float] = []
        for job_id in row[9:11]:
            if not isinstance(job_id, bytes):
                continue
            fields = next(replies)
            since = _waiting_since(fields)
            if since is None:  # the job hash went between the two round trips, or is broken
                skips["bad_value" if not isinstance(fields, Exception) else "wrong_type"] += 1
            else:
                oldest.append(since)
        age = max(0.0, now - min(oldest)) if oldest else 0.0
        out.add("task_queue_oldest_waiting_age_seconds", grouped, age)
        if isinstance(row[ACTIVE_OLDEST], bytes):  # running age: when a worker took it
            taken = next(replies)
            try:
                running.started(queue, float(taken) / 1000)
            except (TypeError, ValueError):  # gone between the round trips, or broken
                skips["bad_value" if not isinstance(taken, Exception) else "wrong_type"] += 1
        for _ in range(0, active, BATCH):
            ids = next(replies)
            if isinstance(ids, Exception):
                skips["wrong_type"] += 1
                continue
            if ids:
                locks.append((queue, ids))
    running.add_to(out, now, GROUP, queues)
    orphaned: Counter[str] = Counter({queue: 0 for queue in queues})
    # one EXISTS over a chunk's lock keys (a queue's keys share a slot): its count of the locks
    # still held says how many of the chunk's jobs lost theirs, without a command per job
    for start in range(0, len(locks), EXISTS_PER_PIPELINE):
        batch = locks[start:start + EXISTS_PER_PIPELINE]
        held = connection.pipelined(client, [
            (b"EXISTS", *(f"{prefix}:{queue}:".encode() + job_id + b":lock" for job_id in ids))
            for queue, ids in batch])
        for (queue, ids), count in zip(batch, held, strict=True):
            if isinstance(count, Exception):
                skips["wrong_type"] += 1
            else:  # active, and no worker renews its lock: the worker is gone
                orphaned[queue] += len(ids) - count
    for queue in queues:
        out.add("task_queue_orphaned", {"priority": cut(queue), "group": GROUP},
                float(orphaned[queue]))


def _pipelined(client: redis.Redis, commands: list[tuple]) -> list[Any]:
    replies: list[Any] = []
    for start in range(0, len(commands), BATCH):
        replies += connection.pipelined(client, commands[start:start + BATCH])
    return replies


def _waiting_since(fields: Any) -> float | None:
    """Unix seconds a waiting job became ready: created (`timestamp`, ms) plus its `delay`."""
    if isinstance(fields, Exception) or not fields or fields[0] is None:
        return None
    try:
        return (float(fields[0]) + float(fields[1] or 0)) / 1000
    except ValueError:
        return None


def collect_queues(ctx: Context) -> Samples:
    """Per queue: waiting (depth and lag), active (pending), the registries, oldest waiting
    age, workers (consumers) and active jobs whose lock expired (orphaned)."""
    out, skips = Samples(), Counter[str]()
    try:
        workers: Counter[str] | None = worker_connections(ctx)
    except (PermissionError, redis.RedisError) as exc:
        if not ctx.config.bullmq_queues:  # nothing tells which queues there are
            raise type(exc)(f"{exc}; or name the queues with --bullmq-queues") from None
        log.warning("%s", describe_error(exc))
        workers = None
    queues = list(ctx.config.bullmq_queues or sorted(workers or ()))
    for group in _by_node(ctx, queues).values():
        on_key_owner(ctx, _key(ctx.config.bullmq_prefix, group[0], "meta").decode(),
                     lambda client, group=group: _collect_node(ctx, client, group, workers,
                                                                out, skips))
    out.add_skipped("queues", QUEUE_REASONS, skips)
    return out
