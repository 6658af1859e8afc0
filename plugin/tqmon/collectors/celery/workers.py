"""Celery's workers: heard in a listening window, remembered (memory.py), reported.

Pools name a deployment: a node name is `name@host`, and the host part differs per host or
pod, so the pool is pools.deployment of the name part (`emails@web-5d9f7c6b8-x2x7q` ->
`emails`, `worker3@host` -> `worker`; Celery's default `celery@%h` -> `celery`), unless
--worker-pool-pattern says otherwise. Pool task counters never fall: each worker's `processed`
(one life: node name and pid) goes to collectors.pool_counters, which adds only increases to
the pool's total under tqmon's own keys. Celery's heartbeats count no failures, so there is no
failed counter (no series, rather than a false 0).
"""

from __future__ import annotations

import logging

import redis

from ... import contract, pools
from ...model import Samples, describe_error
from .. import pool_counters
from ..base import WORKER_REASONS, Context, Skips, on_key_owner
from .listening import MEMORY_MAX, Heard, listen
from .memory import memory

log = logging.getLogger(__name__)
SCHEMA = "celery"  # pool_counters' keys: {P}:celery:pool_*

WORKER = ("worker_id", "worker_name")


def collect_workers(ctx: Context) -> Samples:
    def work(client: redis.Redis) -> Samples:
        out, skips = Samples(), Skips()
        now, window = listen(ctx, client, skips)
        if window.complete:
            workers, detected = memory(ctx, client, skips).update(now, window)
        else:  # a partial window proves no death: report what it heard, decide nothing
            workers, detected = dict(window.heard), None
        readings = _add_workers(out, ctx, now, workers, skips)
        totals = pool_counters.fold(ctx, client, SCHEMA, readings)
        if isinstance(totals, Exception):
            log.warning("celery: pool counters not kept: %s", describe_error(totals))
        else:
            out.pool_totals = (totals[0], None)  # no failure counts in Celery's heartbeats
        if detected is not None:
            out.add("dead_workers_detected_total", {}, detected)
        out.add_skipped("workers", WORKER_REASONS, skips)
        return out

    return on_key_owner(ctx, contract.Keys(ctx.config.prefix).tag + ":celery:workers", work)


def pool_of(namer: pools.Namer, node: str) -> str:
    """A node's pool: its name part, as a deployment (the host part differs per pod)."""
    return namer(node, prefer=node.partition("@")[0])


def _add_workers(out: Samples, ctx: Context, now: float, workers: dict[str, Heard],
                 skips: Skips) -> list[pool_counters.Reading]:
    """The per-worker rows, each worker's pool (Samples.pools), and the pool counters'
    readings."""
    namer = pools.Namer(ctx.config.worker_pool_pattern)
    readings = []
    rows = {metric: out.series(metric, WORKER) for metric in (
        "worker_up", "worker_heartbeat_age_seconds", "worker_tasks_processed_total",
        "worker_current_status")}
    info_rows = out.series("worker_info", (*WORKER, "hostname"))
    for name in sorted(workers)[:MEMORY_MAX]:
        heard, label = workers[name], skips.label(name)
        labels = (label, label)
        up = heard.expiry >= now
        rows["worker_up"].append((labels, 1.0 if up else 0.0))
        out.pools[label] = pool = pool_of(namer, label)
        rows["worker_heartbeat_age_seconds"].append((labels, max(0.0, now - heard.last)))
        info_rows.append(((label, label, label.partition("@")[2] or label), 1.0))
        if heard.processed is not None:
            rows["worker_tasks_processed_total"].append((labels, heard.processed))
            readings.append(pool_counters.Reading(f"{label}|{heard.pid}", pool,
                                                  heard.processed, 0.0))
        if up and heard.active is not None:
            rows["worker_current_status"].append((labels, 1.0 if heard.active else 0.0))
    return readings
