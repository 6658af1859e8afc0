"""The native heartbeat contract v1 (docs/heartbeat-contract.md): key names, field encodings and
the Lua scripts (lua/*.lua) shared by the worker-side helper and the collector.

Every key carries the hash tag `{P}`, so a fleet's keys share one cluster slot and each script
below touches one node atomically.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from . import pools

VERSION = 1
DEFAULT_PREFIX = "tq"
PRIORITIES = ("high", "medium", "low")
WORKER_FIELDS = ("name", "hostname", "started_at", "status", "tasks_processed", "tasks_failed",
                 "pool")
STAT_FIELDS = ("dead_workers_detected", "tasks_reassigned", "tasks_dead_lettered")
DETECT_LIMIT = 1000  # workers a detection run examines or prunes: keeps the script ~1 ms
PRUNED_KEEP = 100_000  # tombstones of pruned workers kept (the newest): bounds {P}:workers:pruned


def check_prefix(prefix: str) -> str:
    if not prefix or "{" in prefix or "}" in prefix:
        raise ValueError("the prefix must be non-empty and contain no braces")
    return prefix


@dataclass(frozen=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    @property
    def tag(self) -> str:
        return "{" + self.prefix + "}"

    @property
    def workers(self) -> str:
        return f"{self.tag}:workers"

    @property
    def dead(self) -> str:
        return f"{self.tag}:workers:dead"

    @property
    def pruned(self) -> str:
        """Tombstones of workers pruned as dead: their consumers are still dead ones."""
        return f"{self.tag}:workers:pruned"

    @property
    def stats(self) -> str:
        return f"{self.tag}:stats"

    @property
    def latency(self) -> str:
        return f"{self.tag}:latency"

    @property
    def worker_prefix(self) -> str:
        return f"{self.tag}:worker:"

    def worker(self, worker_id: str) -> str:
        return self.worker_prefix + worker_id

    def queue(self, priority: str) -> str:
        return f"{self.tag}:queue:{priority}"

    # v1.1, optional: written by helpers that record their pool; read when present
    @property
    def pools(self) -> str:
        """SET of the pools with registered workers."""
        return f"{self.tag}:pools"

    @property
    def pool_prefix(self) -> str:
        return f"{self.tag}:pool:"

    def pool_workers(self, pool: str) -> str:
        """ZSET worker id -> last heartbeat, of the pool's registered workers."""
        return f"{self.pool_prefix}{pool}:workers"

    def pool_busy(self, pool: str) -> str:
        """ZSET worker id -> last heartbeat, of the pool's workers processing a task."""
        return f"{self.pool_prefix}{pool}:busy"

    @property
    def pool_stats(self) -> str:
        """HASH `processed|<pool>`, `failed|<pool>`: each pool's monotonic task counters."""
        return f"{self.tag}:pool_stats"


# --- pools -------------------------------------------------------------------------------------
# A pool is a group of interchangeable workers. A worker names it, or it is its deployment's
# name, read from its own (pools.deployment: `production_worker_12` -> `production_worker`,
# `web-5d9f7c6b8-x2x7q` -> `web`), or the first group of --worker-pool-pattern on its name.


def pool_of(name: str, pattern: re.Pattern[str] | None = None) -> str:
    return pools.Namer(pattern)(name)


# --- latency histogram fields ------------------------------------------------------------------
# `sum|<series>` and `bucket|<le>|<series>`, where <series> is the JSON array
# [task_type, priority] (so any task_type text round-trips) and <le> the bucket's upper bound
# as format_bound() prints it. Bucket fields are NOT cumulative: an observation increments the
# one smallest bucket it fits; the collector accumulates.


def series_key(task_type: str, priority: str) -> str:
    return json.dumps([task_type, priority], ensure_ascii=False, separators=(",", ":"))


def format_bound(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def bucket_for(duration: float, bounds: tuple[float, ...]) -> str:
    for bound in bounds:
        if duration <= bound:
            return format_bound(bound)
    return "+Inf"


def latency_fields(task_type: str, priority: str, duration: float,
                   bounds: tuple[float, ...]) -> tuple[str, str]:
    """The sum field and the bucket field one observation increments."""
    key = series_key(task_type, priority)
    return f"sum|{key}", f"bucket|{bucket_for(duration, bounds)}|{key}"


# --- Lua ---------------------------------------------------------------------------------------
# The scripts are lua/*.lua (package data), read once at import; each file's header says its
# keys, arguments and what it guarantees.
_LUA = Path(__file__).with_name("lua")


def _lua(name: str) -> str:
    return (_LUA / f"{name}.lua").read_text(encoding="utf-8")


REGISTER, BEAT, DEREGISTER = _lua("register"), _lua("beat"), _lua("deregister")
TASK_STARTED, TASK_FINISHED = _lua("task_started"), _lua("task_finished")
DEAD_SET = _lua("dead_set")  # the shared core: a dead set with a cursor and retention


def with_dead_set(name: str) -> str:
    """lua/<name>.lua after the dead-set core's functions: still one atomic script."""
    return DEAD_SET + _lua(name)


DETECT = with_dead_set("detect")  # the collector's exactly-once dead-worker detection
CELERY_MEMORY = with_dead_set("celery_memory")  # what tqmon heard of Celery's workers
CELERY_SEEN = _lua("celery_seen")  # when a Celery message was first seen at a list's head
SIDEKIQ_DEAD = with_dead_set("sidekiq_dead")  # Sidekiq processes found dead, and their jobs

# --- queues ------------------------------------------------------------------------------------
REDELIVERIES_FIELD = "tqmon_redeliveries"
REQUEUE_LIMIT = 100  # entries one script run moves for one consumer: keeps it ~1 ms
MAX_REDELIVERIES = 5  # default --max-redeliveries: then the dead-letter stream
DEAD_LETTER_SUFFIX = ":dead"

REQUEUE = _lua("requeue")  # `--requeue-orphans`, for one dead consumer
LEAVE = _lua("leave")  # a consumer leaves its group if it holds nothing


def dead_letter(stream: str) -> str:
    """The dead-letter stream of `stream`: same hash tag, so the same slot."""
    return stream + DEAD_LETTER_SUFFIX
