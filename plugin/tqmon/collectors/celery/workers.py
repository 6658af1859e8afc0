"""Celery's workers: heard in a listening window, remembered (memory.py), reported."""

from __future__ import annotations

import redis

from ... import contract
from ...model import Samples
from ..base import WORKER_REASONS, Context, Skips, on_key_owner
from .listening import MEMORY_MAX, Heard, listen
from .memory import memory

WORKER = ("worker_id", "worker_name")


def collect_workers(ctx: Context) -> Samples:
    def work(client: redis.Redis) -> Samples:
        out, skips = Samples(), Skips()
        now, window = listen(ctx, client, skips)
        workers, detected = memory(ctx, client, skips).update(now, window)
        _add_workers(out, now, workers, skips)
        if detected is not None:
            out.add("dead_workers_detected_total", {}, detected)
        out.add_skipped("workers", WORKER_REASONS, skips)
        return out

    return on_key_owner(ctx, contract.Keys(ctx.config.prefix).tag + ":celery:workers", work)


def _add_workers(out: Samples, now: float, workers: dict[str, Heard], skips: Skips) -> None:
    rows = {metric: out.series(metric, WORKER) for metric in (
        "worker_up", "worker_heartbeat_age_seconds", "worker_tasks_processed_total",
        "worker_current_status")}
    info_rows = out.series("worker_info", (*WORKER, "hostname"))
    for name in sorted(workers)[:MEMORY_MAX]:
        heard, label = workers[name], skips.label(name)
        labels = (label, label)
        up = heard.expiry >= now
        rows["worker_up"].append((labels, 1.0 if up else 0.0))
        rows["worker_heartbeat_age_seconds"].append((labels, max(0.0, now - heard.last)))
        info_rows.append(((label, label, label.partition("@")[2] or label), 1.0))
        if heard.processed is not None:
            rows["worker_tasks_processed_total"].append((labels, heard.processed))
        if up and heard.active is not None:
            rows["worker_current_status"].append((labels, 1.0 if heard.active else 0.0))
