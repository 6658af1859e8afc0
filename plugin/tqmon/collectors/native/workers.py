"""Worker health from the native heartbeat contract, and exactly-once dead-worker detection.

All contract keys share the `{P}` hash tag, so this talks to one node, in a few round trips
whatever the fleet size: (1) detection script, TIME, registry size, stats, pool counters and
the sizes of the latency hash and the rosters; (2) the registry in ZRANGE batches, and the
latency hash; (3+) the worker hashes, HMGET in pipelined batches, each turned into rows as it
arrives. No KEYS, no round trip per worker, no reply larger than a batch: HMGET reads only the
contract's fields, however large a hash grew.

When the fleet is larger than --max-worker-series, only the chosen workers' hashes are read:
the registry's scores say who is alive and dead, and each pool's own registry and busy set
give its counts (ZCOUNT by heartbeat), a few commands a pool. Workers of helpers before pools
recorded none: their names are read, and they count as idle.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from ... import boundedjson, catalog, contract, pools
from ...model import Histogram, Samples, describe_error
from .. import fleet
from ..base import (
    MAX_LABEL,
    WORKER_REASONS,
    Context,
    Skips,
    cut,
    on_key_owner,
    pipelined,
    server_time,
)

log = logging.getLogger(__name__)

ZRANGE_BATCH = 5000  # registry members per ZRANGE
HMGET_BATCH = 1000  # worker hashes per pipelined round trip
HGETALL_MAX = 2000  # hash fields read in one reply; above that HSCAN in steps
HSCAN_COUNT = 5000
MAX_LATENCY_SERIES = 500
STATUS = {b"idle": 0.0, b"processing": 1.0}
LATENCY = "task_processing_latency_seconds"
WORKER = ("worker_id", "worker_name")
INF = math.inf


@dataclass
class _Head:
    now: float
    size: int
    stats: Any
    latency_size: Any
    pool_stats: Any
    pools: Any


def _read_head(ctx: Context, client: redis.Redis) -> _Head:
    """Round trip 1: detection (unless read-only), server time, sizes, fleet counters."""
    keys, cfg = contract.Keys(ctx.config.prefix), ctx.config
    commands: list[tuple[Any, ...]] = []
    if not cfg.read_only:
        commands.append(("EVAL", contract.DETECT, 5, keys.workers, keys.dead, keys.stats,
                         keys.pruned, keys.pools, cfg.heartbeat_ttl, cfg.dead_retention,
                         keys.worker_prefix, contract.DETECT_LIMIT, contract.PRUNED_KEEP,
                         keys.pool_prefix))
    commands += [("TIME",), ("ZCARD", keys.workers), ("HMGET", keys.stats, *contract.STAT_FIELDS),
                 ("HLEN", keys.latency), ("HGETALL", keys.pool_stats),  # two fields a pool
                 ("SMEMBERS", keys.pools)]
    replies = pipelined(ctx, client, commands)
    if not cfg.read_only:
        script = replies.pop(0)
        if isinstance(script, Exception):  # e.g. NOPERM: report deaths all the same
            log.warning("dead-worker detection not recorded: %s", describe_error(script))
    for reply in replies[:2]:
        if isinstance(reply, Exception):
            raise reply
    return _Head(server_time(replies[0]), int(replies[1]), *replies[2:])


def _read_registry(ctx: Context, client: redis.Redis, keys: contract.Keys, size: int
                   ) -> list[tuple[bytes, bytes]]:
    """Round trip 2: every (worker_id, last heartbeat) in ZRANGE batches, one pipeline."""
    commands = [("ZRANGE", keys.workers, start, start + ZRANGE_BATCH - 1, "WITHSCORES")
                for start in range(0, size, ZRANGE_BATCH)]
    registry: list[tuple[bytes, bytes]] = []
    for reply in pipelined(ctx, client, commands):
        if isinstance(reply, Exception):
            raise reply
        registry.extend(zip(reply[::2], reply[1::2], strict=True))  # flat member, score pairs
    return registry


def _choose(ctx: Context, client: redis.Redis, keys: contract.Keys, size: int, cutoff: float,
            limit: int) -> tuple[list[tuple[bytes, bytes]], list[bytes], set[bytes]]:
    """Over the cap: the chosen workers with their heartbeats, every id, and the dead ones.
    Ids only (no scores) for the fleet, the dead by score range, scores for the chosen."""
    commands = [(b"ZRANGE", keys.workers, start, start + ZRANGE_BATCH - 1)
                for start in range(0, size, ZRANGE_BATCH)]
    commands.append((b"ZRANGE", keys.workers, b"-inf", f"({cutoff}".encode(), b"BYSCORE"))
    replies = pipelined(ctx, client, commands)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    ids = [worker_id for reply in replies[:-1] for worker_id in reply]
    dead = set(replies[-1])
    picked = list(fleet.choose(dead, (i for i in ids if i not in dead), limit))
    (beats,) = pipelined(ctx, client, [("ZMSCORE", keys.workers, *picked)]) if picked else ([],)
    if isinstance(beats, Exception):
        raise beats
    chosen = [(i, b) for i, b in zip(picked, beats, strict=True) if b is not None]
    return chosen, ids, dead


def _read_hashes(ctx: Context, client: redis.Redis, keys: contract.Keys,
                 registry: list[tuple[bytes, bytes]]) -> Iterator[tuple[list, list]]:
    """Round trips 3+: HMGET of the contract fields, a pipeline per batch of workers."""
    prefix = keys.worker_prefix.encode()
    fields = tuple(f.encode() for f in contract.WORKER_FIELDS)
    for start in range(0, len(registry), HMGET_BATCH):
        batch = registry[start:start + HMGET_BATCH]
        yield batch, pipelined(
            ctx, client, [(b"HMGET", prefix + worker_id, *fields) for worker_id, _ in batch])


def _read_map(ctx: Context, client: redis.Redis, key: str, size: Any) -> Any:
    """A whole hash: one HGETALL when small, else HSCAN in steps (never one giant reply);
    the error instead when it is not a hash."""
    if isinstance(size, Exception):
        return size
    try:
        if size <= HGETALL_MAX:
            (reply,) = pipelined(ctx, client, [("HGETALL", key)])
            if isinstance(reply, Exception):
                return reply
            return dict(zip(reply[::2], reply[1::2], strict=True))
        return dict(client.hscan_iter(key, count=HSCAN_COUNT))
    except redis.ResponseError as exc:  # e.g. ASK in the middle of an HSCAN: next run
        return exc


def _add_workers(out: Samples, now: float, ttl: float, skips: Skips,
                 batches: Iterator[tuple[list, list]], pools: _Pools | None) -> None:
    """The per-worker series; the hot loop of a big fleet, so rows are appended directly.
    With `pools`, every worker read is counted in its pool too (the fleet is under the cap)."""
    up_rows, age_rows = out.series("worker_up", WORKER), out.series(
        "worker_heartbeat_age_seconds", WORKER)
    processed_rows = out.series("worker_tasks_processed_total", WORKER)
    failed_rows = out.series("worker_tasks_failed_total", WORKER)
    uptime_rows = out.series("worker_uptime_seconds", WORKER)
    status_rows = out.series("worker_current_status", WORKER)
    info_rows = out.series("worker_info", (*WORKER, "hostname"))
    number, label, decode = skips.number, skips.label, bytes.decode
    empty = [None] * len(contract.WORKER_FIELDS)
    seen: set[str] = set()
    tally: Counter[tuple[Any, Any, bool, bool]] = Counter()
    for batch, hashes in batches:
        for (raw_id, raw_beat), fields in zip(batch, hashes, strict=True):
            if isinstance(fields, Exception):
                skips["wrong_type"] += 1
                fields = empty
            elif fields == empty:
                skips["missing_hash"] += 1
            name, hostname, started_at, status, processed, failed, pool = fields
            # label() inlined for the common case: ~30% of this loop's time at 100k workers
            worker_id = decode(raw_id, "utf-8", "backslashreplace")
            if len(worker_id) > MAX_LABEL:
                worker_id = label(worker_id)
            if worker_id in seen:  # two ids equal once truncated: one series only
                skips["duplicate"] += 1
                continue
            seen.add(worker_id)
            worker_name = decode(name, "utf-8", "backslashreplace") if name else worker_id
            if len(worker_name) > MAX_LABEL:
                worker_name = label(worker_name)
            labels = (worker_id, worker_name)
            age = now - float(raw_beat)
            age = age if age > 0.0 else 0.0
            up = age <= ttl
            up_rows.append((labels, 1.0 if up else 0.0))
            age_rows.append((labels, age))
            info_rows.append(((worker_id, worker_name, label(hostname)), 1.0))
            if (value := number(processed)) is not None:
                processed_rows.append((labels, value))
            if (value := number(failed)) is not None:
                failed_rows.append((labels, value))
            if pools is not None:  # by raw bytes: decoded once per pool, in pools.add()
                tally[(pool, None if pool else name, up, up and status == b"processing")] += 1
            if not up:
                continue
            if (started := number(started_at)) is not None:
                uptime = now - started
                uptime_rows.append((labels, uptime if uptime > 0.0 else 0.0))
            if status is not None:
                if status in STATUS:
                    status_rows.append((labels, STATUS[status]))
                else:
                    skips["bad_value"] += 1
    if pools is not None:
        pools.add(tally)


def _add_stats(out: Samples, stats: Any, skips: Skips) -> None:
    if isinstance(stats, Exception):
        skips["wrong_type"] += 1
        return
    metrics = ("dead_workers_detected_total", "tasks_reassigned_total",
               "tasks_dead_lettered_total")
    for metric, raw in zip(metrics, stats, strict=True):
        value = 0.0 if raw is None else skips.number(raw)
        if value is not None:
            out.add(metric, {}, value)


def _add_latency(out: Samples, fields: Any, skips: Skips) -> None:
    """Accumulate the contract's per-bucket counts into cumulative histograms."""
    if isinstance(fields, Exception):
        skips["wrong_type"] += 1
        return
    bounds = catalog.default()[LATENCY].buckets
    known = {contract.format_bound(b) for b in bounds} | {"+Inf"}
    series: dict[str, tuple[dict[str, float], list[float]]] = {}
    for raw_name, raw in fields.items():
        kind, _, rest = raw_name.decode("utf-8", "backslashreplace").partition("|")
        if kind == "bucket":
            le, _, key = rest.partition("|")
        elif kind == "sum":
            le, key = "", rest
        else:
            skips["bad_latency_field"] += 1
            continue
        value = skips.number(raw)
        if value is None:
            continue
        if kind == "bucket" and le not in known:
            skips["bad_latency_field"] += 1
            continue
        if key not in series:
            if len(series) >= MAX_LATENCY_SERIES:
                skips["too_many_series"] += 1
                continue
            series[key] = ({}, [0.0])
        buckets, total = series[key]
        if kind == "bucket":
            buckets[le] = value
        else:
            total[0] = value
    for key, (buckets, total) in series.items():
        names = _series_names(key)
        if names is None:
            skips["bad_latency_field"] += 1
            continue
        task_type, priority = names
        cumulative, running = [], 0.0
        for bound in (*bounds, INF):
            running += buckets.get(contract.format_bound(bound), 0.0)
            cumulative.append((bound, running))
        out.add(LATENCY, {"task_type": skips.label(task_type), "priority": skips.label(priority)},
                Histogram(tuple(cumulative), total[0]))


def _series_names(key: str) -> tuple[str, str] | None:
    """[task_type, priority] from a latency field's JSON, or None for anything else: null, a
    number, an object, a third element, nesting deep enough to exhaust the parser..."""
    if not key.startswith('["'):
        return None
    try:
        parsed = boundedjson.loads(key)
    except boundedjson.BadJSON:
        return None
    if (isinstance(parsed, list) and len(parsed) == 2
            and isinstance(parsed[0], str) and isinstance(parsed[1], str)):
        return parsed[0], parsed[1]
    return None


class _Pools:
    """Workers per pool: alive, dead, busy. A worker's pool is the one it recorded, else the
    first group of --worker-pool-pattern on its name."""

    def __init__(self, pattern: re.Pattern[str] | None) -> None:
        self.namer = pools.Namer(pattern)
        self.alive, self.dead, self.busy = Counter[str](), Counter[str](), Counter[str]()

    def name(self, pool: bytes | None, name: bytes | None) -> str:
        if pool:
            text = pool.decode("utf-8", "backslashreplace")
        else:
            text = self.namer(name.decode("utf-8", "backslashreplace") if name else "")
        return cut(text)

    def count(self, pool: bytes | None, name: bytes | None, up: bool, busy: bool,
              n: int = 1) -> None:
        label = self.name(pool, name)
        (self.alive if up else self.dead)[label] += n
        if busy:
            self.busy[label] += n

    def add(self, tally: Counter[tuple[Any, Any, bool, bool]]) -> None:
        """Workers counted by (pool, name when no pool, up, busy)."""
        for key, n in tally.items():
            self.count(*key, n=n)


def _pool_totals(raw: Any, skips: Skips) -> tuple[dict[str, float], dict[str, float]]:
    """`processed|<pool>` and `failed|<pool>` counters from the pool counters hash."""
    processed: dict[str, float] = {}
    failed: dict[str, float] = {}
    if isinstance(raw, Exception):
        skips["wrong_type"] += 1
        return processed, failed
    items = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
    for field, value in items:
        kind, _, pool = field.decode("utf-8", "backslashreplace").partition("|")
        number = skips.number(value)
        if number is None or kind not in ("processed", "failed") or not pool:
            skips["bad_value"] += number is not None
            continue
        (processed if kind == "processed" else failed)[cut(pool)] = number
    return processed, failed


def _capped_pools(ctx: Context, client: redis.Redis, keys: contract.Keys, head: _Head,
                  ids: list[bytes],
                  dead: set[bytes], cutoff: float, pools: _Pools, skips: Skips) -> None:
    """Pools of a fleet over the cap, without reading every worker's hash: each pool's own
    registry and busy set, counted by heartbeat. Workers that recorded no pool (helpers
    before pools) are found by difference, and only their names are read."""
    names = sorted(head.pools) if isinstance(head.pools, (set, list)) else []
    if isinstance(head.pools, Exception):
        skips["wrong_type"] += 1
    prefix = keys.pool_prefix.encode()
    commands = []
    for pool in names:
        workers, busy = prefix + pool + b":workers", prefix + pool + b":busy"
        commands += [(b"ZCOUNT", workers, cutoff, b"+inf"), (b"ZCOUNT", workers, b"-inf",
                     f"({cutoff}".encode()), (b"ZCOUNT", busy, cutoff, b"+inf")]
    replies = pipelined(ctx, client, commands) if commands else []
    counted = 0
    for index, pool in enumerate(names):
        alive, dead_here, busy = replies[3 * index:3 * index + 3]
        if any(isinstance(r, Exception) for r in (alive, dead_here, busy)):
            skips["wrong_type"] += 1
            continue
        label = pools.name(pool, None)
        pools.alive[label] += alive
        pools.dead[label] += dead_here
        pools.busy[label] += busy
        counted += alive + dead_here
    if counted < len(ids):  # some workers recorded no pool: find them, read their names
        _unrecorded_pools(ctx, client, keys, names, ids, dead, pools)


def _unrecorded_pools(ctx: Context, client: redis.Redis, keys: contract.Keys, names: list[bytes],
                      ids: list[bytes], dead: set[bytes], pools: _Pools) -> None:
    prefix = keys.pool_prefix.encode()
    pooled: set[bytes] = set()
    for members in pipelined(
            ctx, client, [(b"ZRANGE", prefix + pool + b":workers", 0, -1) for pool in names]):
        if not isinstance(members, Exception):
            pooled.update(members)
    rest = [worker_id for worker_id in ids if worker_id not in pooled]
    worker_prefix = keys.worker_prefix.encode()
    for start in range(0, len(rest), HMGET_BATCH):
        batch = rest[start:start + HMGET_BATCH]
        replies = pipelined(
            ctx, client, [(b"HGET", worker_prefix + worker_id, b"name") for worker_id in batch])
        for worker_id, name in zip(batch, replies, strict=True):
            pools.count(None, name if isinstance(name, bytes) else None,
                        worker_id not in dead, False)


def _collect(ctx: Context, client: redis.Redis) -> Samples:
    keys, cfg = contract.Keys(ctx.config.prefix), ctx.config
    head = _read_head(ctx, client)
    out, skips = Samples(), Skips()
    pools = _Pools(cfg.worker_pool_pattern)
    ttl, limit = cfg.heartbeat_ttl, cfg.max_worker_series
    if limit is None or head.size <= limit:
        chosen = _read_registry(ctx, client, keys, head.size)
        counted: _Pools | None = pools
        fleet_size = len(chosen)
    else:
        cutoff = head.now - ttl
        chosen, ids, dead = _choose(ctx, client, keys, head.size, cutoff, limit)
        counted, fleet_size = None, len(ids)
        _capped_pools(ctx, client, keys, head, ids, dead, cutoff, pools, skips)
    _add_workers(out, head.now, ttl, skips, _read_hashes(ctx, client, keys, chosen), counted)
    out.add("tqmon_worker_series_omitted", {}, float(fleet_size - len(chosen)))
    fleet.add_pools(out, pools.alive, pools.dead, pools.busy,
                    *_pool_totals(head.pool_stats, skips))
    _add_stats(out, head.stats, skips)
    _add_latency(out, _read_map(ctx, client, keys.latency, head.latency_size), skips)
    out.add_skipped("workers", WORKER_REASONS, skips)
    return out


def collect(ctx: Context) -> Samples:
    return on_key_owner(ctx, contract.Keys(ctx.config.prefix).workers,
                        lambda client: _collect(ctx, client))
