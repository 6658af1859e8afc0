"""Fleet-level views every queue system shares: pools of interchangeable workers, and the cap on
per-worker series (`--max-worker-series`).

A fleet of 100,000 workers cannot have 7 series each: dead workers get theirs first (they are
what WorkerDown needs), then as many alive ones as fit, chosen by a hash of the worker id, so
the same workers are chosen run after run and by every agent. Pools are always reported, at
most MAX_POOLS of them: a pattern that matches nothing must not make one pool per worker.
"""

from __future__ import annotations

import heapq
import re
import zlib
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

from .. import catalog, pools
from ..model import Samples

K = TypeVar("K", bound=Hashable)
MAX_POOLS = 100  # the largest pools are reported by name; the others together as OTHER
OTHER = "other"
WORKER = ("worker_id", "worker_name")


def _stable(worker_id: str | bytes) -> int:
    return zlib.crc32(worker_id if isinstance(worker_id, bytes) else worker_id.encode())


def choose(dead: Iterable[K], alive: Iterable[K], limit: int | None) -> set[K]:
    """The workers that get per-worker series: every one under the limit; else the dead first,
    then alive ones, each group by a stable hash of its id."""
    dead, alive = list(dead), list(alive)
    if limit is None or len(dead) + len(alive) <= limit:
        return {*dead, *alive}
    if len(dead) >= limit:
        return _lowest(dead, limit)
    return {*dead, *_lowest(alive, limit - len(dead))}


def _lowest(ids: list[K], count: int) -> set[K]:
    """The `count` ids of the lowest hash: (hash, id) pairs compare in C, ~10x a key=."""
    hashes = map(_stable, ids)  # type: ignore[arg-type]
    return {worker_id for _, worker_id in heapq.nsmallest(count, zip(hashes, ids, strict=True))}


def pool_names(sizes: Mapping[str, int]) -> dict[str, str]:
    """Pool -> the label it is reported under: itself for the MAX_POOLS - 1 largest, else
    OTHER (all of them, when there are more than MAX_POOLS)."""
    if len(sizes) <= MAX_POOLS:
        return {pool: pool for pool in sizes}
    kept = {p for p, _ in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_POOLS - 1]}
    return {pool: pool if pool in kept else OTHER for pool in sizes}


def add_pools(out: Samples, alive: Counter[str], dead: Counter[str], busy: Counter[str],
              processed: Mapping[str, float] | None = None,
              failed: Mapping[str, float] | None = None, counters_only: bool = False) -> None:
    """workers_alive/dead{pool} and worker_pool_busy{pool} (unless `counters_only`); the pool
    task counters when they are monotonic (native: kept by the workers' own scripts; the
    adapters: the system's own counter, or collectors.pool_counters)."""
    sizes = Counter({p: 0 for p in (*alive, *dead, *(processed or {}), *(failed or {}))})
    sizes.update(alive)
    sizes.update(dead)
    names = pool_names(sizes)
    for metric, counts in () if counters_only else (
            ("workers_alive", alive), ("workers_dead", dead), ("worker_pool_busy", busy)):
        merged: Counter[str] = Counter({names[p]: 0 for p in names})
        for pool, n in counts.items():
            merged[names.get(pool, OTHER)] += n
        for pool, n in sorted(merged.items()):
            out.add(metric, {"pool": pool}, float(n))
    if processed is None:
        return
    counted = {*processed, *(failed or {})}  # both series for a pool with either: 0 until a
    # failure; no failed series where the system counts no failures (Celery), not a false 0
    for metric, totals in (("worker_pool_tasks_processed_total", processed),
                           ("worker_pool_tasks_failed_total", failed)):
        if totals is None:
            continue
        sums: Counter[str] = Counter({names.get(pool, OTHER): 0.0 for pool in counted})
        for pool, value in totals.items():
            sums[names.get(pool, OTHER)] += value
        for pool, value in sorted(sums.items()):
            out.add(metric, {"pool": pool}, float(value))


def cap_reported(samples: Samples, limit: int | None, pattern: re.Pattern[str] | None
                 ) -> Samples:
    """Pools and the cap for a queue system that reports every worker (RQ, Dramatiq, ...):
    pools from what the adapter says (Samples.pools) or the workers' names (pools.Namer),
    alive/dead/busy per pool, and per-worker rows kept for the chosen workers only. Pool task
    counters only where the adapter keeps them monotonic (Samples.pool_totals: the system's
    own counter, or tqmon's totals from pool_counters); never a sum over the workers present
    now, which falls when one leaves."""
    # counted without per-worker rows (BullMQ), or no worker at all: pools are the adapter's
    own_pools = "workers_alive" in samples.rows or "worker_up" not in samples.rows
    up = {labels: value for labels, value in samples.rows.get("worker_up", [])}
    namer, named = pools.Namer(pattern), samples.pools
    pool_of = {labels: named.get(labels[0]) or namer(labels[1]) for labels in up}
    busy_ids = {labels for labels, value in samples.rows.get("worker_current_status", [])
                if value == 1.0}
    alive, dead, busy = Counter[str](), Counter[str](), Counter[str]()
    for labels, value in up.items():
        pool = pool_of[labels]
        (alive if value == 1.0 else dead)[pool] += 1
        if value == 1.0 and labels in busy_ids:
            busy[pool] += 1
    chosen_ids = choose((k[0] for k, v in up.items() if v != 1.0),
                        (k[0] for k, v in up.items() if v == 1.0), limit)
    out = Samples()
    for metric, rows in samples.rows.items():
        if metric in ("workers_alive", "workers_dead") and not own_pools:
            continue
        if rows and _per_worker(metric):
            rows = [row for row in rows if row[0][0] in chosen_ids]
        out.rows[metric].extend(rows)
    totals = samples.pool_totals
    if not own_pools:
        add_pools(out, alive, dead, busy, *(totals or (None, None)))
    elif totals is not None:
        add_pools(out, Counter(), Counter(), Counter(), *totals, counters_only=True)
    out.add("tqmon_worker_series_omitted", {}, float(len(up) - len(chosen_ids)))
    return out


def _per_worker(metric: str) -> bool:
    return catalog.default()[metric].labels[:1] == ("worker_id",)
