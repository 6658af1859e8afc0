"""arq (0.2x) read as it is: its queue ZSETs and health-check keys, never written.

Keys (arq.constants; Q is a queue name, `arq:queue` by default):
  Q                      ZSET job id -> when it may run (Unix ms): enqueue time, or the time
                         it is deferred to; a job stays in it while it runs
  arq:in-progress:<id>   STRING with an expiry (the job timeout + 10 s): the job is running
  arq:job:<id>           the pickled job (never read: tqmon does not unpickle)
  arq:retry:<id>         the job's try count
  Q:health-check         STRING `<local time> j_complete=.. j_failed=.. j_retried=..
                         j_ongoing=.. queued=..`, rewritten by a worker every
                         health_check_interval (3600 s by default) with that interval + 1 s as
                         its expiry

Queues: deferred = members scored after now; the ready ones are read in score order (ZRANGE
BYSCORE windows) and their in-progress keys checked with EXISTS, one key per command until
the oldest waiting job is found, then a thousand keys per command. Workers take the lowest
scores first, so running jobs are at the front; at most READY_SCAN_MAX ready jobs are looked
at, the rest counted as waiting (tqmon_skipped_entries reason not_scanned).

Workers: arq keeps no per-worker key. The health-check key is one per queue, shared by every
worker of it: it says that some worker was alive within the interval, and carries that one
worker's counters. So each queue is one `worker_*` series (worker_id = the queue) whose
counters are whichever worker wrote last: with several workers they are not monotonic.
"""

from __future__ import annotations

import logging
import re
from collections import Counter

import redis

from .. import connection, pools
from ..model import Samples, describe_error
from . import pool_counters
from .base import BATCH, WORKER_REASONS, Context, Skips, cut, on_key_owner, server_time
from .pool_counters import Reading
from .running import RunningAge

log = logging.getLogger(__name__)

IN_PROGRESS = b"arq:in-progress:"
IN_PROGRESS_EXTRA = 10.0  # arq's in-progress key lives the longest job timeout + 10 s
HEALTH_CHECK = ":health-check"
ZRANGE_WINDOW = 5000
READY_SCAN_MAX = 200_000
COUNTS = re.compile(rb"\b(j_complete|j_failed|j_retried|j_ongoing|queued)=(\d+)\b")
WORKER = ("worker_id", "worker_name")
GROUP = "arq"  # the `group` label of the in-progress and oldest-waiting series
QUEUE_REASONS = ("bad_value", "wrong_type", "not_scanned")


def collect_workers(ctx: Context) -> Samples:
    """One series per queue, from its health-check key (see the module doc for its limits)."""
    queues, interval = ctx.config.arq_queues, ctx.config.arq_health_check_interval

    def work(client: redis.Redis) -> Samples:
        out, skips = Samples(), Skips()
        commands: list[tuple] = []
        for queue in queues:
            key = (queue + HEALTH_CHECK).encode()
            commands += [(b"GET", key), (b"PTTL", key)]
        replies = connection.pipelined(client, commands)
        rows = {metric: out.series(metric, WORKER) for metric in (
            "worker_up", "worker_heartbeat_age_seconds", "worker_tasks_processed_total",
            "worker_tasks_failed_total", "worker_current_status")}
        info_rows = out.series("worker_info", (*WORKER, "hostname"))
        namer, readings = pools.Namer(ctx.config.worker_pool_pattern), []
        for index, queue in enumerate(queues):
            value, pttl = replies[2 * index], replies[2 * index + 1]
            name = skips.label(queue)
            labels = (name, name)
            pool = out.pools[name] = namer(name)
            if isinstance(value, Exception):
                skips["wrong_type"] += 1
                value = None
            up = value is not None
            rows["worker_up"].append((labels, 1.0 if up else 0.0))
            info_rows.append(((name, name, ""), 1.0))  # arq records no host
            if not up:
                continue
            if isinstance(pttl, int) and pttl >= 0:  # written with interval + 1 s to live
                age = max(0.0, interval + 1.0 - pttl / 1000)
                rows["worker_heartbeat_age_seconds"].append((labels, age))
            counts = {k.decode(): float(v) for k, v in COUNTS.findall(value)}
            if not {"j_complete", "j_failed", "j_ongoing"} <= set(counts):
                skips["bad_value"] += 1
                continue
            rows["worker_tasks_processed_total"].append(
                (labels, counts["j_complete"] + counts["j_failed"]))
            rows["worker_tasks_failed_total"].append((labels, counts["j_failed"]))
            readings.append(Reading(name, pool, counts["j_complete"] + counts["j_failed"],
                                    counts["j_failed"]))
            rows["worker_current_status"].append((labels, 1.0 if counts["j_ongoing"] else 0.0))
        totals = pool_counters.fold(ctx, client, GROUP, readings)
        if isinstance(totals, Exception):
            log.warning("arq pool counters not kept: %s", describe_error(totals))
        else:
            out.pool_totals = totals
        out.add_skipped("workers", WORKER_REASONS, skips)
        return out

    return on_key_owner(ctx, queues[0], work)


def _in_progress(client: redis.Redis, ready: list[tuple[bytes, float]]
                 ) -> tuple[int, float | None, int | None]:
    """How many of the ready jobs (in score order) run, the score of the first that does not,
    and the lowest PTTL of an in-progress key seen (the job running longest: arq sets the key
    once, to live the worker's longest job timeout + 10 s). Per-key PTTL (-2: no key) until
    the first waiting job is found, then one EXISTS per thousand keys."""
    running, oldest, start, lowest = 0, None, 0, None
    while start < len(ready) and oldest is None:
        batch = ready[start:start + BATCH]
        replies = connection.pipelined(client, [(b"PTTL", IN_PROGRESS + job_id)
                                                for job_id, _ in batch])
        for (_, score), pttl in zip(batch, replies, strict=True):
            if isinstance(pttl, int) and pttl != -2:
                running += 1
                if pttl >= 0 and (lowest is None or pttl < lowest):
                    lowest = pttl
            elif oldest is None:
                oldest = score
        start += BATCH
    rest = [IN_PROGRESS + job_id for job_id, _ in ready[start:]]
    commands = [(b"EXISTS", *rest[i:i + BATCH]) for i in range(0, len(rest), BATCH)]
    for at in range(0, len(commands), 50):  # 50,000 keys a round trip
        running += sum(connection.pipelined(client, commands[at:at + 50]))
    return running, oldest, lowest


def _queue(client: redis.Redis, queue: bytes, now_ms: float, size: int, skips: Counter[str]
           ) -> tuple[int, int, int, float | None, int | None]:
    """(waiting, in progress, deferred, oldest waiting score, lowest in-progress PTTL) of one
    queue."""
    limit = min(size, READY_SCAN_MAX)
    bound = repr(now_ms).encode()
    commands = [(b"ZCOUNT", queue, b"-inf", bound)] + [
        (b"ZRANGE", queue, b"-inf", bound, b"BYSCORE", b"LIMIT", start, ZRANGE_WINDOW,
         b"WITHSCORES") for start in range(0, limit, ZRANGE_WINDOW)]
    count, *windows = connection.pipelined(client, commands)
    ready: list[tuple[bytes, float]] = []
    for reply in windows:
        ready += [(job, float(score)) for job, score in zip(reply[::2], reply[1::2],
                                                            strict=True)]
    ready = ready[:limit]
    # ZCARD, ZCOUNT, ZRANGE and EXISTS are separate reads: jobs enqueued or taken between
    # them could make a difference negative, so each is clamped at 0
    skips["not_scanned"] += max(0, int(count) - len(ready))
    running, oldest, lowest = _in_progress(client, ready)
    return max(0, int(count) - running), running, max(0, size - int(count)), oldest, lowest


def collect_queues(ctx: Context) -> Samples:
    """Ready (depth), running (task_queue_pending), deferred, the oldest waiting age and the
    running age (--arq-job-timeout + 10 s - the lowest in-progress PTTL)."""
    queues = ctx.config.arq_queues

    def work(client: redis.Redis) -> Samples:
        out, skips = Samples(), Counter[str]()
        clock, *sizes = connection.pipelined(
            client, [(b"TIME",), *((b"ZCARD", q.encode()) for q in queues)])
        if isinstance(clock, Exception):
            raise clock
        now_ms = server_time(clock) * 1000
        ages, in_progress_ttl = RunningAge(), ctx.config.arq_job_timeout + IN_PROGRESS_EXTRA
        for queue, size in zip(queues, sizes, strict=True):
            if isinstance(size, Exception):
                skips["wrong_type"] += 1
                continue
            waiting, running, deferred, oldest, lowest = _queue(client, queue.encode(), now_ms,
                                                                int(size), skips)
            priority = cut(queue)
            group = {"priority": priority, "group": GROUP}
            out.add("task_queue_depth", {"priority": priority}, float(waiting))
            out.add("task_queue_pending", group, float(running))
            out.add("task_queue_registry_jobs", {"priority": priority, "registry": "deferred"},
                    float(deferred))
            out.add("task_queue_oldest_waiting_age_seconds", group,
                    0.0 if oldest is None else max(0.0, (now_ms - oldest) / 1000))
            if lowest is not None:  # running age: the key's life so far
                ages.started(queue, now_ms / 1000 - (in_progress_ttl - lowest / 1000))
        ages.add_to(out, now_ms / 1000, GROUP, queues)
        out.add_skipped("queues", QUEUE_REASONS, skips)
        return out

    return on_key_owner(ctx, queues[0], work)
