"""Worker health from the native heartbeat contract, and exactly-once dead-worker detection.

All contract keys share the `{P}` hash tag, so this talks to one node, in a few round trips
whatever the fleet size: (1) detection script, TIME, registry size, stats, latency size;
(2) the registry in ZRANGE batches and the latency hash; (3+) the worker hashes, HMGET in
pipelined batches. No KEYS, no round trip per worker, no single reply larger than a batch.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis

from .. import catalog, connection, contract
from ..topology import Node, describe_error
from . import Context, Histogram, Sample

log = logging.getLogger(__name__)
T = TypeVar("T")

ZRANGE_BATCH = 5000  # registry members per ZRANGE
HMGET_BATCH = 1000  # worker hashes per pipelined round trip
HGETALL_MAX = 2000  # latency fields read in one reply; above that HSCAN in steps
MAX_LATENCY_SERIES = 500
MAX_LABEL = 256
REASONS = ("wrong_type", "missing_hash", "bad_value", "bad_latency_field", "too_many_series",
           "long_label", "duplicate")
STATUS = {b"idle": 0.0, b"processing": 1.0}
LATENCY = "task_processing_latency_seconds"


@dataclass
class Skips:
    """What this run skipped or sanitised, by reason (exported as tqmon_skipped_entries)."""

    counts: Counter[str] = field(default_factory=Counter)

    def label(self, raw: bytes | str | None) -> str:
        """Label text from whatever bytes Redis holds: invalid UTF-8 is kept visible and
        unambiguous as \\xNN escapes (prometheus_client escapes quotes and newlines)."""
        if raw is None:
            return ""
        text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
        if len(text) > MAX_LABEL:
            self.counts["long_label"] += 1
            return text[:MAX_LABEL]
        return text

    def number(self, raw: Any) -> float | None:
        """A finite, non-negative number, or None (counted) for anything else."""
        if raw is None:
            return None
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or value < 0:
            self.counts["bad_value"] += 1
            return None
        return value

    def samples(self) -> list[Sample]:
        return [Sample("tqmon_skipped_entries", {"collector": "workers", "reason": r},
                       float(self.counts[r])) for r in REASONS]


def on_key_owner(ctx: Context, key: str, work: Callable[[redis.Redis], T]) -> T:
    """Run `work` on a bytes client for the node holding `key`, following one MOVED redirect
    (the seed's view of the cluster can trail a failover by a moment). Bytes, because keys
    built from registry members must round-trip exactly, whatever their encoding."""
    node = ctx.topology.node_for(key)
    if node is None:
        raise ConnectionError(f"no reachable master is known for {key}")
    for attempt in range(2):
        client = connection.client(ctx.config, node.host, node.port, ctx.deadline,
                                   tls=node.tls, decode=False)
        try:
            return work(client)
        except redis.exceptions.MovedError as moved:
            if attempt:
                raise
            node = Node(moved.host, moved.port, "master", tls=node.tls)
        finally:
            client.close()
    raise AssertionError("unreachable")


def _batched(items: list[T], size: int) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass
class Snapshot:
    """What one run read from Redis, before any interpretation."""

    now: float
    registry: list[tuple[bytes, float]]  # (worker_id, last heartbeat)
    hashes: list[Any]  # HMGET reply (or error) per registry entry
    stats: list[Any] | Exception
    latency: dict[bytes, bytes] | Exception


def read(ctx: Context, client: redis.Redis) -> Snapshot:
    keys, cfg = contract.Keys(ctx.config.prefix), ctx.config
    pipe = client.pipeline(transaction=False)
    if not cfg.read_only:
        pipe.execute_command("EVAL", contract.DETECT, 3, keys.workers, keys.dead, keys.stats,
                             cfg.heartbeat_ttl, cfg.dead_retention, keys.worker_prefix,
                             contract.DETECT_LIMIT)
    pipe.execute_command("TIME")
    pipe.execute_command("ZCARD", keys.workers)
    pipe.execute_command("HMGET", keys.stats, *contract.STAT_FIELDS)
    pipe.execute_command("HLEN", keys.latency)
    replies = pipe.execute(raise_on_error=False)
    if not cfg.read_only:
        script = replies.pop(0)
        if isinstance(script, Exception):  # e.g. NOPERM: report deaths all the same
            log.warning("dead-worker detection not recorded: %s", describe_error(script))
    clock, size, stats, latency_size = replies
    for reply in (clock, size):
        if isinstance(reply, Exception):
            raise reply
    now = float(clock[0]) + float(clock[1]) / 1e6

    pipe = client.pipeline(transaction=False)
    for start in range(0, int(size), ZRANGE_BATCH):
        pipe.execute_command("ZRANGE", keys.workers, start, start + ZRANGE_BATCH - 1,
                             "WITHSCORES")
    small_latency = isinstance(latency_size, int) and latency_size <= HGETALL_MAX
    if small_latency:
        pipe.execute_command("HGETALL", keys.latency)
    replies = pipe.execute(raise_on_error=False)
    latency: dict[bytes, bytes] | Exception = latency_size  # stays the error if HLEN failed
    if small_latency:
        latency = replies.pop()
    elif isinstance(latency_size, int):  # big: HSCAN in steps, never one giant reply
        latency = dict(client.hscan_iter(keys.latency, count=HGETALL_MAX))
    registry: list[tuple[bytes, float]] = []
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
        registry.extend(zip(reply[::2], map(float, reply[1::2]), strict=True))  # flat pairs

    hashes: list[Any] = []
    worker_prefix = keys.worker_prefix.encode()
    for batch in _batched(registry, HMGET_BATCH):
        pipe = client.pipeline(transaction=False)
        for worker_id, _ in batch:
            pipe.execute_command("HMGET", worker_prefix + worker_id, *contract.WORKER_FIELDS)
        hashes.extend(pipe.execute(raise_on_error=False))
    return Snapshot(now, registry, hashes, stats, latency)


def _worker_samples(snap: Snapshot, ttl: float, skips: Skips) -> list[Sample]:
    out: list[Sample] = []
    alive = dead = 0
    seen: set[str] = set()
    for (worker_id, beat), fields in zip(snap.registry, snap.hashes, strict=True):
        if isinstance(fields, Exception):
            skips.counts["wrong_type"] += 1
            fields = [None] * len(contract.WORKER_FIELDS)
        elif all(v is None for v in fields):
            skips.counts["missing_hash"] += 1
        name, hostname, started_at, status, processed, failed = fields
        labels = {"worker_id": skips.label(worker_id),
                  "worker_name": skips.label(name if name else worker_id)}
        if labels["worker_id"] in seen:  # two ids equal once truncated: one series only
            skips.counts["duplicate"] += 1
            continue
        seen.add(labels["worker_id"])
        age = max(0.0, snap.now - beat)
        up = age <= ttl
        alive, dead = alive + up, dead + (not up)
        out.append(Sample("worker_up", labels, 1.0 if up else 0.0))
        out.append(Sample("worker_heartbeat_age_seconds", labels, age))
        out.append(Sample("worker_info", {**labels, "hostname": skips.label(hostname)}, 1.0))
        for metric, raw in (("worker_tasks_processed_total", processed),
                            ("worker_tasks_failed_total", failed)):
            value = skips.number(raw)
            if value is not None:
                out.append(Sample(metric, labels, value))
        if not up:
            continue
        started = skips.number(started_at)
        if started is not None:
            out.append(Sample("worker_uptime_seconds", labels, max(0.0, snap.now - started)))
        if status is not None:
            if status in STATUS:
                out.append(Sample("worker_current_status", labels, STATUS[status]))
            else:
                skips.counts["bad_value"] += 1
    out.append(Sample("workers_alive", {}, float(alive)))
    out.append(Sample("workers_dead", {}, float(dead)))
    return out


def _stat_samples(stats: Any, skips: Skips) -> list[Sample]:
    if isinstance(stats, Exception):
        skips.counts["wrong_type"] += 1
        return []
    out = []
    for metric, raw in zip(("dead_workers_detected_total", "tasks_reassigned_total"), stats,
                           strict=True):
        value = 0.0 if raw is None else skips.number(raw)
        if value is not None:
            out.append(Sample(metric, {}, value))
    return out


def _latency_samples(fields: dict[bytes, bytes] | Exception, skips: Skips) -> list[Sample]:
    if isinstance(fields, Exception):
        skips.counts["wrong_type"] += 1
        return []
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
            skips.counts["bad_latency_field"] += 1
            continue
        value = skips.number(raw)
        if value is None:
            continue
        if kind == "bucket" and le not in known:
            skips.counts["bad_latency_field"] += 1
            continue
        if key not in series:
            if len(series) >= MAX_LATENCY_SERIES:
                skips.counts["too_many_series"] += 1
                continue
            series[key] = ({}, [0.0])
        buckets, total = series[key]
        if kind == "bucket":
            buckets[le] = value
        else:
            total[0] = value
    out = []
    for key, (buckets, total) in series.items():
        try:
            task_type, priority = json.loads(key)
            if not isinstance(task_type, str) or not isinstance(priority, str):
                raise ValueError
        except ValueError:
            skips.counts["bad_latency_field"] += 1
            continue
        cumulative, running = [], 0.0
        for bound in (*bounds, math.inf):
            running += buckets.get(contract.format_bound(bound), 0.0)
            cumulative.append((bound, running))
        out.append(Sample(LATENCY, {"task_type": skips.label(task_type),
                                    "priority": skips.label(priority)},
                          Histogram(tuple(cumulative), total[0])))
    return out


def collect(ctx: Context) -> list[Sample]:
    keys = contract.Keys(ctx.config.prefix)
    snap = on_key_owner(ctx, keys.workers, lambda client: read(ctx, client))
    skips = Skips()
    samples = _worker_samples(snap, ctx.config.heartbeat_ttl, skips)
    samples += _stat_samples(snap.stats, skips)
    samples += _latency_samples(snap.latency, skips)
    return samples + skips.samples()
