"""RQ (1.x, 2.x, 3.x) read as it is: workers, queues and job registries, never written.

Keys (RQ's defaults; the same from 1.0 to 3.0):
  rq:workers            SET of worker keys `rq:worker:<name>`
  rq:worker:<name>      HASH: state, birth, last_heartbeat, successful_job_count,
                        failed_job_count, queues (comma-separated), hostname, ...; every
                        heartbeat sets its expiry to the worker's TTL + 60 s
  rq:queues             SET of queue keys `rq:queue:<name>`
  rq:queue:<name>       LIST of waiting job ids
  rq:wip:<name>         ZSET, the started registry: score = when the job is given up on
  rq:failed|finished|deferred|scheduled:<name>  ZSETs, the other registries

Dead workers: RQ's own `Worker.all()` drops set members whose hash expired (and removes them
from the set, a write); tqmon reports them as `worker_up 0` instead. RQ stores no TTL field in
the hash, but every heartbeat sets the hash's expiry to the TTL it promises plus RQ's 60 s
grace, so the TTL is read back from PTTL: ttl = heartbeat age + remaining expiry - 60 s. A
worker is dead when its hash is gone, or its last heartbeat is older than that TTL plus an
allowance of 1 s + 10% (at most 5 s) for a heartbeat under way. Round trips: TIME and SCARD;
the set (SMEMBERS, or SSCAN above SMEMBERS_MAX); then a pipeline of HMGET + PTTL per 1,000
workers.
"""

from __future__ import annotations

import datetime
import logging
from collections import Counter
from collections.abc import Iterator

import redis

from .. import connection, pools
from ..model import Samples, describe_error
from . import pool_counters
from .base import BATCH, WORKER_REASONS, Context, Skips, cut, on_key_owner, server_time
from .pool_counters import Reading
from .running import RunningAge

log = logging.getLogger(__name__)

WORKERS_KEY, WORKER_PREFIX = b"rq:workers", b"rq:worker:"
QUEUES_KEY, QUEUE_PREFIX = b"rq:queues", b"rq:queue:"
FIELDS = (b"state", b"birth", b"last_heartbeat", b"successful_job_count",
          b"failed_job_count", b"queues", b"hostname")
REGISTRIES = (("started", b"rq:wip:"), ("failed", b"rq:failed:"),
              ("finished", b"rq:finished:"), ("deferred", b"rq:deferred:"),
              ("scheduled", b"rq:scheduled:"))
GRACE = 60.0  # RQ's heartbeat sets the hash's expiry to its TTL + 60 s
ALLOWANCE_MAX = 5.0  # seconds a heartbeat may run late: 1 s + 10% of the TTL, at most this
SMEMBERS_MAX = 10_000  # above this, SSCAN: no single huge reply
MAX_QUEUES_PER_WORKER = 20  # worker_queue_info series per worker
JOB_PREFIX = b"rq:job:"
RUNNING_SCAN = 10  # started jobs per queue whose start is read (the first by score)
# busy is processing a job; starting, started, idle and suspended are not.
STATUS = {b"busy": 1.0, b"idle": 0.0, b"started": 0.0, b"starting": 0.0, b"suspended": 0.0}
WORKER = ("worker_id", "worker_name")
GROUP = "rq"  # the `group` label of task_queue_orphaned: RQ has no consumer groups
QUEUE_REASONS = ("bad_value", "wrong_type")
UTC = datetime.timezone.utc


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



def _members(client: redis.Redis, key: bytes, size: int) -> list[bytes]:
    if size <= SMEMBERS_MAX:
        return sorted(client.execute_command("SMEMBERS", key))
    return sorted(set(client.sscan_iter(key, count=BATCH)))  # a set may repeat during SSCAN


def _read_workers(client: redis.Redis) -> tuple[float, list[bytes], Iterator[tuple[list, list]]]:
    pipe = client.pipeline(transaction=False)
    pipe.execute_command("TIME")
    pipe.execute_command("SCARD", WORKERS_KEY)
    clock, size = pipe.execute()
    keys = _members(client, WORKERS_KEY, int(size))

    def batches() -> Iterator[tuple[list, list]]:
        for start in range(0, len(keys), BATCH):
            batch = keys[start:start + BATCH]
            commands = []
            for key in batch:
                commands += [(b"HMGET", key, *FIELDS), (b"PTTL", key)]
            yield batch, connection.pipelined(client, commands)

    return server_time(clock), keys, batches()


def _is_up(age: float, pttl: int, default_ttl: float) -> bool:
    """Alive if the last heartbeat is within the TTL the worker announced (see module doc)."""
    ttl = age + pttl / 1000 - GRACE if pttl >= 0 else default_ttl
    return age <= ttl + min(ALLOWANCE_MAX, 1.0 + 0.1 * max(ttl, 0.0))


def _add_workers(out: Samples, ctx: Context, now: float, keys: list[bytes],
                 batches: Iterator[tuple[list, list]], skips: Skips) -> list[Reading]:
    """Per-worker rows and each worker's pool (its name's deployment, else its queues); the
    task counts of each worker's life (name and birth) for the pool counters."""
    rows = {metric: out.series(metric, WORKER) for metric in (
        "worker_up", "worker_heartbeat_age_seconds", "worker_tasks_processed_total",
        "worker_tasks_failed_total", "worker_uptime_seconds", "worker_current_status")}
    info_rows = out.series("worker_info", (*WORKER, "hostname"))
    queue_rows = out.series("worker_queue_info", (*WORKER, "priority"))
    number, label = skips.number, skips.label
    default_ttl = ctx.config.rq_worker_ttl
    namer, readings = pools.Namer(ctx.config.worker_pool_pattern), []
    for batch, replies in batches:
        for index, key in enumerate(batch):
            fields, pttl = replies[2 * index], replies[2 * index + 1]
            if not key.startswith(WORKER_PREFIX):
                skips["bad_value"] += 1
                continue
            name = label(key[len(WORKER_PREFIX):])
            labels = (name, name)
            broken = isinstance(fields, Exception) or isinstance(pttl, Exception)
            if broken or pttl == -2 or not any(fields):  # the hash expired: the worker died
                skips["wrong_type" if broken else "missing_hash"] += 1
                rows["worker_up"].append((labels, 0.0))
                out.pools[name] = namer(name, fallback=GROUP)  # its queues went with the hash
                continue
            state, birth, beat, succeeded, failed, queues, hostname = fields
            last = parse_timestamp(beat)
            if last is None:  # cannot tell when it last beat: report it down, count why
                skips["bad_value"] += 1
                age, up = None, False
            else:
                age = max(0.0, now - last)
                up = _is_up(age, int(pttl), default_ttl)
            rows["worker_up"].append((labels, 1.0 if up else 0.0))
            if age is not None:
                rows["worker_heartbeat_age_seconds"].append((labels, age))
            info_rows.append(((name, name, label(hostname)), 1.0))
            queue_names = [q for q in (queues or b"").split(b",") if q]
            if len(queue_names) > MAX_QUEUES_PER_WORKER:
                skips["too_many_series"] += 1
                queue_names = queue_names[:MAX_QUEUES_PER_WORKER]
            for queue in queue_names:
                queue_rows.append(((name, name, label(queue)), 1.0))
            pool = out.pools[name] = namer(name, fallback=label(b",".join(sorted(queue_names))))
            ok, bad = number(succeeded or 0), number(failed or 0)
            if ok is not None and bad is not None:  # processed counts failed jobs too
                rows["worker_tasks_processed_total"].append((labels, ok + bad))
                readings.append(Reading(f"{name}|{(birth or b'').decode('ascii', 'replace')}",
                                        pool, ok + bad, bad))
            if bad is not None:
                rows["worker_tasks_failed_total"].append((labels, bad))
            if not up:
                continue
            if (born := parse_timestamp(birth)) is not None:
                rows["worker_uptime_seconds"].append((labels, max(0.0, now - born)))
            elif birth is not None:
                skips["bad_value"] += 1
            if state is not None:
                if state in STATUS:
                    rows["worker_current_status"].append((labels, STATUS[state]))
                else:
                    skips["bad_value"] += 1
    return readings


def collect_workers(ctx: Context) -> Samples:
    def work(client: redis.Redis) -> Samples:
        out, skips = Samples(), Skips()
        now, keys, batches = _read_workers(client)
        readings = _add_workers(out, ctx, now, keys, batches, skips)
        totals = pool_counters.fold(ctx, client, GROUP, readings)
        if isinstance(totals, Exception):
            log.warning("RQ pool counters not kept: %s", describe_error(totals))
        else:
            out.pool_totals = totals
        out.add_skipped("workers", WORKER_REASONS, skips)
        return out

    return on_key_owner(ctx, WORKERS_KEY.decode(), work)


def _queue_names(client: redis.Redis, skips: Counter[str]) -> tuple[float, list[bytes]]:
    pipe = client.pipeline(transaction=False)
    pipe.execute_command("TIME")
    pipe.execute_command("SCARD", QUEUES_KEY)
    clock, size = pipe.execute()
    names = []
    for key in _members(client, QUEUES_KEY, int(size)):
        if key.startswith(QUEUE_PREFIX) and len(key) > len(QUEUE_PREFIX):
            names.append(key[len(QUEUE_PREFIX):])
        else:
            skips["bad_value"] += 1
    return server_time(clock), names


def _running(client: redis.Redis, first: dict[bytes, list[bytes]], running: RunningAge,
             skips: Counter[str]) -> None:
    """The start (`started_at` of the job hash) of the first started jobs of each queue."""
    jobs = [(queue, member.partition(b":")[0]) for queue, members in first.items()
            for member in members]  # RQ 2+ scores `<job id>:<execution id>`
    for start in range(0, len(jobs), BATCH):
        batch = jobs[start:start + BATCH]
        replies = connection.pipelined(client, [(b"HGET", JOB_PREFIX + job_id, b"started_at")
                                                for _, job_id in batch])
        for (queue, _), raw in zip(batch, replies, strict=True):
            if isinstance(raw, Exception):
                skips["wrong_type"] += 1
            elif raw and (started := parse_timestamp(raw)) is not None:
                running.started(queue.decode("utf-8", "backslashreplace"), started)


def collect_queues(ctx: Context) -> Samples:
    """Depth (LLEN), jobs per registry (ZCARD), abandoned started jobs (ZCOUNT of the started
    registry up to now: RQ gives a started job up when its score passes) and the running age
    (the oldest `started_at` among the first RUNNING_SCAN jobs of the started registry: its
    score is the start plus the job's timeout, so with one timeout per queue the first is the
    oldest)."""

    def work(client: redis.Redis) -> Samples:
        out, skips = Samples(), Counter[str]()
        now, names = _queue_names(client, skips)
        first: dict[bytes, list[bytes]] = {}
        per_queue = 3 + len(REGISTRIES)
        for start in range(0, len(names), BATCH // per_queue):
            batch = names[start:start + BATCH // per_queue]
            commands: list[tuple] = []
            for name in batch:
                commands.append((b"LLEN", QUEUE_PREFIX + name))
                commands += [(b"ZCARD", prefix + name) for _, prefix in REGISTRIES]
                commands.append((b"ZCOUNT", b"rq:wip:" + name, b"-inf", f"({now}".encode()))
                commands.append((b"ZRANGE", b"rq:wip:" + name, 0, RUNNING_SCAN - 1))
            replies = connection.pipelined(client, commands)
            for index, name in enumerate(batch):
                depth, *counts, abandoned, started = replies[
                    index * per_queue:(index + 1) * per_queue]
                if isinstance(started, list) and started:
                    first[name] = started
                priority = cut(name.decode("utf-8", "backslashreplace"))
                if isinstance(depth, Exception):
                    skips["wrong_type"] += 1
                else:
                    out.add("task_queue_depth", {"priority": priority}, float(depth))
                for (registry, _), count in zip(REGISTRIES, counts, strict=True):
                    if isinstance(count, Exception):
                        skips["wrong_type"] += 1
                        continue
                    out.add("task_queue_registry_jobs",
                            {"priority": priority, "registry": registry}, float(count))
                if isinstance(abandoned, Exception):
                    skips["wrong_type"] += 1
                else:
                    out.add("task_queue_orphaned", {"priority": priority, "group": GROUP},
                            float(abandoned))
        running = RunningAge()
        _running(client, first, running, skips)
        running.add_to(out, now, GROUP, (n.decode("utf-8", "backslashreplace") for n in names))
        out.add_skipped("queues", QUEUE_REASONS, skips)
        return out

    return on_key_owner(ctx, QUEUES_KEY.decode(), work)
