"""Sidekiq (6.x to 8.x, without redis-namespace) read as it is; its keys are never written.

Keys (Sidekiq's layout; an internal one, not a documented contract: docs/adapters.md names the
versions tested):
  processes             SET of process identities `hostname:pid:nonce`
  <identity>            HASH: beat (Unix seconds), busy (jobs running), quiet ("true" once told
                        to stop), concurrency (7+), info (JSON: hostname, pid, started_at,
                        queues, concurrency (6.x), tag, ...); every beat (5 s in 6.x, 10 s in
                        7+) sets its expiry to 60 s
  <identity>:work       HASH thread id -> JSON {queue, payload, run_at}: the jobs running now
                        (`<identity>:workers` in 6.x); same expiry
  queues                SET of queue names; `queue:<name>` LIST (LPUSH: the oldest at -1, its
                        `enqueued_at` float seconds before 8, integer milliseconds since)
  schedule, retry, dead ZSETs by time; stat:processed, stat:failed: the fleet's counters

A process killed without cleaning up stays in `processes` after its hash expired, until a
live Sidekiq's scheduler (every 10th poll) or the UI prunes it, a write; the UI never shows
it. tqmon reports it `worker_up 0`, and a process whose beat is older than
--sidekiq-heartbeat-timeout as well; once pruned, one tqmon saw die stays `worker_up 0` until
--dead-retention, from tqmon's own record. The jobs in a dead process's
work hash are lost in Sidekiq OSS (only Pro's super_fetch recovers them): they are
`task_queue_orphaned`. The work hash expires 60 s after the last beat, so, unless --read-only,
tqmon remembers each death and its jobs under its own `{P}:sidekiq:*` keys, through one Lua
script (lua/sidekiq_dead.lua) that counts a death once however many collectors run, and keeps
the orphans reported until --dead-retention has passed.

Round trips: TIME, sizes and counters; the sets; HMGET per process (once per run, for the
workers and the queues collector alike) and LLEN + LINDEX per queue, pipelined 1,000 at a time;
HVALS of dead and busy processes' work hashes; the memory script.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis

from .. import boundedjson, connection, contract, pools
from ..model import Samples, describe_error
from . import sidekiq_work
from .base import BATCH, WORKER_REASONS, Context, Skips, cut, on_key_owner, server_time
from .sidekiq_work import unix_seconds

log = logging.getLogger(__name__)

PROCESSES, QUEUES = b"processes", b"queues"
FIELDS = (b"beat", b"busy", b"quiet", b"concurrency", b"info")
REGISTRIES = (("scheduled", b"schedule"), ("retry", b"retry"), ("dead", b"dead"))
SMEMBERS_MAX = 10_000  # above this, SSCAN: no single huge reply
MAX_QUEUES_PER_WORKER = 20
WORKER = ("worker_id", "worker_name")
GROUP = "sidekiq"  # the `group` label of the queue series: Sidekiq has no consumer groups
# the pool of the fleet-wide counters (stat:processed, stat:failed): Sidekiq counts per fleet
FLEET_POOL = "sidekiq"
QUEUE_REASONS = ("bad_value", "wrong_type")
SCRIPT = contract.SIDEKIQ_DEAD  # lua/sidekiq_dead.lua on the shared dead-set core
SCRIPT_BATCH = 500  # dead processes per script run: keeps it ~1 ms


def memory_keys(prefix: str) -> tuple[str, str, str]:
    """tqmon's own keys for Sidekiq deaths: dead ZSET, orphans HASH, stats HASH."""
    tag = contract.Keys(prefix).tag
    return f"{tag}:sidekiq:dead", f"{tag}:sidekiq:orphans", f"{tag}:sidekiq:stats"


@dataclass
class Process:
    """One member of `processes` as this run read it."""

    identity: bytes
    fields: list[Any] | Exception
    age: float | None = None  # seconds since its last beat; None when its hash is gone
    up: bool = False


def _members(client: redis.Redis, key: bytes, size: int) -> list[bytes]:
    if size <= SMEMBERS_MAX:
        return sorted(client.execute_command("SMEMBERS", key))
    return sorted(set(client.sscan_iter(key, count=BATCH)))  # a set may repeat during SSCAN


def _read_processes(client: redis.Redis, identities: list[bytes], fields: tuple[bytes, ...],
                    now: float, timeout: float, skips: Skips) -> list[Process]:
    """HMGET of each process hash, 1,000 per pipelined round trip; who is up, by its beat."""
    processes = []
    for start in range(0, len(identities), BATCH):
        batch = identities[start:start + BATCH]
        replies = connection.pipelined(client, [(b"HMGET", i, *fields) for i in batch])
        for identity, reply in zip(batch, replies, strict=True):
            process = Process(identity, reply)
            processes.append(process)
            if isinstance(reply, Exception):
                skips["wrong_type"] += 1
                continue
            if not any(reply):  # the hash expired: the process died without cleaning up
                skips["missing_hash"] += 1
                continue
            beat = unix_seconds(reply[0])
            if beat is None:
                skips["bad_value"] += 1
                continue
            process.age = max(0.0, now - beat)
            process.up = process.age <= timeout
    return processes


@dataclass
class Fleet:
    """`processes` as read once per run, by whichever collector asks first (the workers and
    the queues collector both need every process hash)."""

    now: float  # the server time the processes were judged up by
    identities: list[bytes]
    processes: list[Process]
    skips: Skips  # what reading them skipped: the workers collector reports it


def _fleet(ctx: Context, client: redis.Redis, now: float, size: int) -> Fleet:
    """SMEMBERS (or SSCAN) of `processes` and HMGET of each hash, once per run."""
    def read() -> Fleet:
        skips = Skips()
        identities = _members(client, PROCESSES, size)
        processes = _read_processes(client, identities, FIELDS, now,
                                    ctx.config.sidekiq_heartbeat_timeout, skips)
        return Fleet(now, identities, processes, skips)

    return ctx.once.get("sidekiq_processes", read)


def _orphans(client: redis.Redis, dead: list[bytes], skips: Counter[str]
             ) -> dict[bytes, Counter[str]]:
    """The jobs in dead processes' work hashes, by queue."""
    return {identity: sidekiq_work.by_queue(jobs)
            for identity, jobs in sidekiq_work.read(client, dead, skips).items()}


def _remember(ctx: Context, client: redis.Redis, dead: dict[bytes, Counter[str]],
              revived: list[bytes]) -> Any:
    """Record deaths and their jobs under tqmon's keys, each once (lua/sidekiq_dead.lua).
    Returns dead_workers_detected after the last run, or the error (e.g. NOPERM)."""
    keys = memory_keys(ctx.config.prefix)
    items = sorted(dead.items())
    commands = []
    for start in range(0, max(len(items), 1), SCRIPT_BATCH):
        batch = items[start:start + SCRIPT_BATCH]
        args: list[Any] = [ctx.config.dead_retention, len(batch)]
        for identity, jobs in batch:
            args += [identity, json.dumps(dict(sorted(jobs.items())), separators=(",", ":"))]
        if start == 0:
            args += revived
        commands.append((b"EVAL", SCRIPT, 4, *keys, PROCESSES, *args))
    replies = connection.pipelined(client, commands)
    for reply in replies:
        if isinstance(reply, Exception):
            return reply
    return replies[-1][1]


def _pools(out: Samples, tags: dict[bytes, str], identities: list[bytes], namer: pools.Namer
           ) -> None:
    """Each process's pool: its `tag` (Sidekiq's name for the application); a process whose
    hash is gone takes the tag the other processes of its host's deployment carry, so a death
    stays in its pool; else (or untagged) the deployment its identity names. One naming per
    identity (a tag's is cached), so 1,000s of processes cost a few milliseconds."""
    names = {identity: cut(identity.decode("utf-8", "backslashreplace"))
             for identity in identities}
    hosts = {identity: namer(name) for identity, name in names.items()}
    by_host: dict[str, set[str]] = {}
    for identity, tag in tags.items():
        if identity in hosts:
            by_host.setdefault(hosts[identity], set()).add(tag)
    for identity, host in hosts.items():
        siblings = by_host.get(host)
        tag = tags.get(identity) or (next(iter(siblings)) if siblings and len(siblings) == 1
                                     else "")
        name = names[identity]
        out.pools[name] = namer(name, prefer=tag) if tag or namer.pattern else host


def _worker_rows(out: Samples, processes: list[Process], now: float, skips: Skips
                 ) -> dict[bytes, str]:
    """Per-process rows; returns the tags of the processes that have one."""
    rows = {metric: out.series(metric, WORKER) for metric in (
        "worker_up", "worker_heartbeat_age_seconds", "worker_uptime_seconds",
        "worker_current_status", "worker_jobs_running", "worker_concurrency", "worker_quiet")}
    info_rows = out.series("worker_info", (*WORKER, "hostname"))
    queue_rows = out.series("worker_queue_info", (*WORKER, "priority"))
    number, label = skips.number, skips.label
    tags: dict[bytes, str] = {}
    for process in processes:
        name = label(process.identity)
        labels = (name, name)
        rows["worker_up"].append((labels, 1.0 if process.up else 0.0))
        if process.age is None:
            continue
        rows["worker_heartbeat_age_seconds"].append((labels, process.age))
        _, busy, quiet, concurrency, raw_info = process.fields
        try:
            info = boundedjson.loads(raw_info) if raw_info else {}
            if not isinstance(info, dict):
                raise ValueError
        except ValueError:
            skips["bad_value"] += 1
            info = {}
        info_rows.append(((name, name, label(str(info.get("hostname", "")))), 1.0))
        if isinstance(tag := info.get("tag"), str) and tag:
            tags[process.identity] = label(tag)
        queues = [q for q in info.get("queues") or () if isinstance(q, str)]
        if len(queues) > MAX_QUEUES_PER_WORKER:
            skips["too_many_series"] += 1
            queues = queues[:MAX_QUEUES_PER_WORKER]
        for queue in dict.fromkeys(queues):
            queue_rows.append(((name, name, label(queue)), 1.0))
        if not process.up:
            continue
        if (started := unix_seconds(info.get("started_at"))) is not None:
            rows["worker_uptime_seconds"].append((labels, max(0.0, now - started)))
        running = number(busy)
        if running is not None:
            rows["worker_jobs_running"].append((labels, running))
            rows["worker_current_status"].append((labels, 1.0 if running > 0 else 0.0))
        threads = number(concurrency if concurrency is not None else info.get("concurrency"))
        if threads is not None:
            rows["worker_concurrency"].append((labels, threads))
        rows["worker_quiet"].append((labels, 1.0 if quiet == b"true" else 0.0))
    return tags


def collect_workers(ctx: Context) -> Samples:
    """Per process: up, beat age, uptime, busy and concurrency, quiet, host, queues; the
    fleet's processed and failed counters; deaths remembered and counted once."""
    keys = memory_keys(ctx.config.prefix)

    def work(client: redis.Redis) -> Samples:
        out, skips = Samples(), Skips()
        pipe = client.pipeline(transaction=False)
        for command in (("TIME",), ("SCARD", PROCESSES), ("GET", b"stat:processed"),
                        ("GET", b"stat:failed"), ("ZRANGE", keys[0], 0, -1),
                        ("HGET", keys[2], "dead_workers_detected")):
            pipe.execute_command(*command)
        clock, size, processed, failed, remembered, detected = pipe.execute(
            raise_on_error=False)
        for reply in (clock, size):
            if isinstance(reply, Exception):
                raise reply
        fleet = _fleet(ctx, client, server_time(clock), int(size))
        skips.update(fleet.skips)
        now, identities, processes = fleet.now, fleet.identities, fleet.processes
        tags = _worker_rows(out, processes, now, skips)
        dead = [p.identity for p in processes if not p.up]
        known = set() if isinstance(remembered, Exception) else set(remembered)
        # Live Sidekiqs prune members whose hash expired (the scheduler's poller, the UI),
        # often before an alert's `for:` has passed: those tqmon saw die stay worker_up 0
        # until --dead-retention, as dead workers do under the native contract.
        pruned = sorted(known - set(identities))
        for identity in pruned:
            name = skips.label(identity)
            out.add("worker_up", {"worker_id": name, "worker_name": name}, 0.0)
        _pools(out, tags, [*identities, *pruned], pools.Namer(ctx.config.worker_pool_pattern))
        # Sidekiq counts per fleet, monotonically (INCRBY): the fleet is the counters' pool
        totals: list[dict[str, float]] = []
        for raw in (processed, failed):
            value = 0.0 if raw is None else skips.number(raw)
            if isinstance(raw, Exception):
                skips["wrong_type"] += 1
            elif value is not None:
                totals.append({FLEET_POOL: value})
        if len(totals) == 2:
            out.pool_totals = (totals[0], totals[1])
        if not ctx.config.read_only:
            revived = sorted(known & {p.identity for p in processes if p.up})
            fresh = [identity for identity in dead if identity not in known]
            detected = _remember(ctx, client, _orphans(client, fresh, skips), revived)
            if isinstance(detected, Exception):
                log.warning("Sidekiq deaths not recorded: %s", describe_error(detected))
                detected = None
        if isinstance(detected, Exception):
            detected = None
        if (value := skips.number(detected)) is not None:
            out.add("dead_workers_detected_total", {}, value)
        out.add_skipped("workers", WORKER_REASONS, skips)
        return out

    return on_key_owner(ctx, PROCESSES.decode(), work)


def _read_queues(client: redis.Redis, names: list[bytes], now: float, out: Samples,
                 skips: Counter[str]) -> None:
    """Depth (LLEN) and the age of the oldest job (LINDEX -1), per queue."""
    for start in range(0, len(names), BATCH // 2):
        batch = names[start:start + BATCH // 2]
        replies = connection.pipelined(client, [c for name in batch for c in (
            (b"LLEN", b"queue:" + name), (b"LINDEX", b"queue:" + name, -1))])
        for index, name in enumerate(batch):
            depth, oldest = replies[2 * index:2 * index + 2]
            queue = {"priority": cut(name.decode("utf-8", "backslashreplace"))}
            grouped = {**queue, "group": GROUP}
            if isinstance(depth, Exception) or isinstance(oldest, Exception):
                skips["wrong_type"] += 1
                continue
            out.add("task_queue_depth", queue, float(depth))
            out.add("task_queue_lag", grouped, float(depth))
            age = 0.0
            if oldest is not None:
                enqueued = None
                try:
                    job = boundedjson.loads(oldest)
                    if isinstance(job, dict):
                        enqueued = unix_seconds(job.get("enqueued_at", job.get("created_at")))
                except ValueError:
                    pass
                if enqueued is None:
                    skips["bad_value"] += 1
                    continue
                age = max(0.0, now - enqueued)
            out.add("task_queue_oldest_waiting_age_seconds", grouped, age)


def _orphan_totals(ctx: Context, client: redis.Redis, processes: list[Process],
                   readable: dict[bytes, Counter[str]], skips: Counter[str]) -> Counter[str]:
    """Jobs held by dead processes, by queue: what their work hashes still show (`readable`),
    else what tqmon remembered when it first saw them dead (their hashes expire 60 s after the
    last beat). Processes alive now are never counted, whatever was remembered."""
    alive = {p.identity for p in processes if p.up}
    totals: Counter[str] = Counter()
    orphans_key = memory_keys(ctx.config.prefix)[1]
    try:
        remembered = dict(client.hscan_iter(orphans_key, count=BATCH))
    except redis.ResponseError:
        skips["wrong_type"] += 1
        remembered = {}
    for identity, raw in remembered.items():
        if identity in alive or readable.get(identity):
            continue
        try:
            jobs = boundedjson.loads(raw)
            totals.update({cut(str(q)): int(n) for q, n in jobs.items()})
        except (ValueError, AttributeError, TypeError):
            skips["bad_value"] += 1
    for jobs in readable.values():
        totals.update(jobs)
    return totals


def collect_queues(ctx: Context) -> Samples:
    """Depth and oldest waiting age per queue, the schedule/retry/dead sets, the jobs dead
    processes were running (task_queue_orphaned) and the oldest running job's age (`run_at`
    in live processes' work hashes)."""

    def work(client: redis.Redis) -> Samples:
        out, skips = Samples(), Skips()
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("TIME")
        pipe.execute_command("SCARD", QUEUES)
        pipe.execute_command("SCARD", PROCESSES)
        for _, key in REGISTRIES:
            pipe.execute_command("ZCARD", key)
        clock, queue_count, process_count, *registries = pipe.execute(raise_on_error=False)
        for reply in (clock, queue_count, process_count):
            if isinstance(reply, Exception):
                raise reply
        now = server_time(clock)
        names = _members(client, QUEUES, int(queue_count))
        _read_queues(client, names, now, out, skips)
        for (registry, _), count in zip(REGISTRIES, registries, strict=True):
            if isinstance(count, Exception):
                skips["wrong_type"] += 1
            else:  # one set for all queues: the queue of each job is inside its payload
                out.add("task_queue_registry_jobs", {"priority": "", "registry": registry},
                        float(count))
        processes = _fleet(ctx, client, now, int(process_count)).processes
        # the work hashes in one go: dead processes' (both names: their jobs are orphaned)
        # and, for the running age, those of live processes that say they run some (`busy`)
        hashes = {p.identity: sidekiq_work.WORK_SUFFIXES if not p.up
                  else sidekiq_work.work_suffix(p.fields[3]) for p in processes
                  if not p.up or p.fields[1] not in (None, b"0")}
        jobs = sidekiq_work.read(client, list(hashes), skips, hashes)
        dead = {p.identity for p in processes if not p.up}
        orphaned = _orphan_totals(ctx, client, processes, {
            identity: sidekiq_work.by_queue(held) for identity, held in jobs.items()
            if identity in dead}, skips)
        sidekiq_work.running({identity: held for identity, held in jobs.items()
                              if identity not in dead}, skips).add_to(
            out, now, GROUP, (n.decode("utf-8", "backslashreplace") for n in names))
        for queue in sorted({cut(n.decode("utf-8", "backslashreplace"))
                             for n in names} | set(orphaned)):
            out.add("task_queue_orphaned", {"priority": queue, "group": GROUP},
                    float(orphaned[queue]))
        out.add_skipped("queues", QUEUE_REASONS, skips)
        return out

    return on_key_owner(ctx, QUEUES.decode(), work)

