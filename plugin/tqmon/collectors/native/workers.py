"""Worker health from the native heartbeat contract, and exactly-once dead-worker detection.

All contract keys share the `{P}` hash tag, so this talks to one node, in a few round trips
whatever the fleet size: (1) detection script, TIME, registry size, stats, latency size;
(2) the registry in ZRANGE batches, and the latency hash; (3+) the worker hashes, HMGET in
pipelined batches, each turned into rows as it arrives. No KEYS, no round trip per worker, no
reply larger than a batch: HMGET reads only the contract's fields, however large a hash grew.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from typing import Any

import redis

from ... import catalog, contract
from ...model import Histogram, Samples, describe_error
from ..base import (
    MAX_LABEL,
    WORKER_REASONS,
    Context,
    Skips,
    on_key_owner,
    pipelined,
    server_time,
)

log = logging.getLogger(__name__)

ZRANGE_BATCH = 5000  # registry members per ZRANGE
HMGET_BATCH = 1000  # worker hashes per pipelined round trip
HGETALL_MAX = 2000  # latency fields read in one reply; above that HSCAN in steps
MAX_LATENCY_SERIES = 500
STATUS = {b"idle": 0.0, b"processing": 1.0}
LATENCY = "task_processing_latency_seconds"
WORKER = ("worker_id", "worker_name")
INF = math.inf


def _read_head(ctx: Context, client: redis.Redis) -> tuple[float, int, Any, Any]:
    """Round trip 1: detection (unless read-only), server time, registry size, stats."""
    keys, cfg = contract.Keys(ctx.config.prefix), ctx.config
    commands: list[tuple[Any, ...]] = []
    if not cfg.read_only:
        commands.append(("EVAL", contract.DETECT, 4, keys.workers, keys.dead, keys.stats,
                         keys.pruned, cfg.heartbeat_ttl, cfg.dead_retention,
                         keys.worker_prefix, contract.DETECT_LIMIT, contract.PRUNED_KEEP))
    commands += [("TIME",), ("ZCARD", keys.workers), ("HMGET", keys.stats, *contract.STAT_FIELDS),
                 ("HLEN", keys.latency)]
    replies = pipelined(ctx, client, commands)
    if not cfg.read_only:
        script = replies.pop(0)
        if isinstance(script, Exception):  # e.g. NOPERM: report deaths all the same
            log.warning("dead-worker detection not recorded: %s", describe_error(script))
    clock, size, stats, latency_size = replies
    for reply in (clock, size):
        if isinstance(reply, Exception):
            raise reply
    return server_time(clock), int(size), stats, latency_size


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


def _read_hashes(ctx: Context, client: redis.Redis, keys: contract.Keys,
                 registry: list[tuple[bytes, bytes]]) -> Iterator[tuple[list, list]]:
    """Round trips 3+: HMGET of the contract fields, a pipeline per batch of workers."""
    prefix = keys.worker_prefix.encode()
    fields = tuple(f.encode() for f in contract.WORKER_FIELDS)
    for start in range(0, len(registry), HMGET_BATCH):
        batch = registry[start:start + HMGET_BATCH]
        yield batch, pipelined(
            ctx, client, [(b"HMGET", prefix + worker_id, *fields) for worker_id, _ in batch])


def _read_latency(ctx: Context, client: redis.Redis, keys: contract.Keys, size: Any) -> Any:
    if isinstance(size, Exception):
        return size
    try:
        if size <= HGETALL_MAX:
            (reply,) = pipelined(ctx, client, [("HGETALL", keys.latency)])
            if isinstance(reply, Exception):
                return reply
            return dict(zip(reply[::2], reply[1::2], strict=True))
        return dict(client.hscan_iter(keys.latency, count=HGETALL_MAX))  # never one giant reply
    except redis.ResponseError as exc:  # e.g. ASK in the middle of an HSCAN: next run
        return exc


def _add_workers(out: Samples, now: float, ttl: float, skips: Skips,
                 batches: Iterator[tuple[list, list]]) -> None:
    """The per-worker series; the hot loop of a big fleet, so rows are appended directly."""
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
    alive = dead = 0
    for batch, hashes in batches:
        for (raw_id, raw_beat), fields in zip(batch, hashes, strict=True):
            if isinstance(fields, Exception):
                skips["wrong_type"] += 1
                fields = empty
            elif fields == empty:
                skips["missing_hash"] += 1
            name, hostname, started_at, status, processed, failed = fields
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
            if not up:
                dead += 1
                continue
            alive += 1
            if (started := number(started_at)) is not None:
                uptime = now - started
                uptime_rows.append((labels, uptime if uptime > 0.0 else 0.0))
            if status is not None:
                if status in STATUS:
                    status_rows.append((labels, STATUS[status]))
                else:
                    skips["bad_value"] += 1
    out.add("workers_alive", {}, float(alive))
    out.add("workers_dead", {}, float(dead))


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
        parsed = json.loads(key)
    except (ValueError, RecursionError):
        return None
    if (isinstance(parsed, list) and len(parsed) == 2
            and isinstance(parsed[0], str) and isinstance(parsed[1], str)):
        return parsed[0], parsed[1]
    return None


def _collect(ctx: Context, client: redis.Redis) -> Samples:
    keys = contract.Keys(ctx.config.prefix)
    now, size, stats, latency_size = _read_head(ctx, client)
    registry = _read_registry(ctx, client, keys, size)
    out, skips = Samples(), Skips()
    _add_workers(out, now, ctx.config.heartbeat_ttl, skips,
                 _read_hashes(ctx, client, keys, registry))
    _add_stats(out, stats, skips)
    _add_latency(out, _read_latency(ctx, client, keys, latency_size), skips)
    out.add_skipped("workers", WORKER_REASONS, skips)
    return out


def collect(ctx: Context) -> Samples:
    return on_key_owner(ctx, contract.Keys(ctx.config.prefix).workers,
                        lambda client: _collect(ctx, client))
