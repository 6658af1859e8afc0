"""The native heartbeat contract v1 (docs/heartbeat-contract.md): key names, field encodings and
the Lua scripts shared by the worker-side helper and the collector.

Every key carries the hash tag `{P}`, so a fleet's keys share one cluster slot and each script
below touches one node atomically.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

VERSION = 1
DEFAULT_PREFIX = "tq"
PRIORITIES = ("high", "medium", "low")
WORKER_FIELDS = ("name", "hostname", "started_at", "status", "tasks_processed", "tasks_failed")
STAT_FIELDS = ("dead_workers_detected", "tasks_reassigned")
DETECT_LIMIT = 1000  # workers a detection run examines or prunes: keeps the script ~1 ms


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
# TIME inside the scripts: heartbeats and ages use the Redis server's clock, never the clients'.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS: workers, dead, worker hash. ARGV: worker_id, name, hostname, pid, processed, failed.
REGISTER = _NOW + """
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], 'name', ARGV[2], 'hostname', ARGV[3], 'pid', ARGV[4],
  'started_at', string.format('%.6f', now), 'status', 'idle',
  'tasks_processed', ARGV[5], 'tasks_failed', ARGV[6])
redis.call('ZADD', KEYS[1], string.format('%.6f', now), ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: workers, dead, worker hash. ARGV: worker_id. Returns 0 when the hash is gone (the
# collector pruned this worker as dead): the helper then registers again.
BEAT = _NOW + """
if redis.call('HEXISTS', KEYS[3], 'name') == 0 then return 0 end
redis.call('ZADD', KEYS[1], string.format('%.6f', now), ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: worker hash. ARGV: task_id ('' for none).
TASK_STARTED = """
redis.call('HSET', KEYS[1], 'status', 'processing')
if ARGV[1] == '' then redis.call('HDEL', KEYS[1], 'current_task')
else redis.call('HSET', KEYS[1], 'current_task', ARGV[1]) end
return 1
"""

# KEYS: worker hash, latency hash. ARGV: ok (1|0), duration, sum field, bucket field.
TASK_FINISHED = """
redis.call('HINCRBY', KEYS[1], 'tasks_processed', 1)
if ARGV[1] == '0' then redis.call('HINCRBY', KEYS[1], 'tasks_failed', 1) end
redis.call('HSET', KEYS[1], 'status', 'idle')
redis.call('HDEL', KEYS[1], 'current_task')
redis.call('HINCRBYFLOAT', KEYS[2], ARGV[3], ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
return 1
"""

# KEYS: workers, dead, worker hash. ARGV: worker_id. A clean shutdown: not a death.
DEREGISTER = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return 1
"""

# The collector's detection. KEYS: workers, dead, stats. ARGV: ttl, retention, worker hash
# prefix, limit. Returns {now, newly dead, pruned}.
#
# Exactly once: a worker is counted when ZADD NX puts it into the dead set, which a script run
# does atomically, so concurrent collectors cannot both count it. `detect_cursor` in the stats
# hash is the staleness cutoff already examined, so each run looks only at workers that went
# stale since (a bounded ZRANGE BYSCORE), however many dead workers are retained. A worker that
# beats again has a score above the cursor, leaves the dead set (its BEAT removes it), and is
# counted again if it dies again. Worker hashes are built from the hash-tagged prefix, so they
# live in this slot.
DETECT = _NOW + """
local ttl, retention, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local cutoff = now - ttl
local cursor = redis.call('HGET', KEYS[3], 'detect_cursor') or '-inf'
local stale = redis.call('ZRANGE', KEYS[1], cursor, string.format('%.6f', cutoff),
  'BYSCORE', 'LIMIT', 0, limit, 'WITHSCORES')
local newly = 0
for i = 1, #stale, 2 do
  newly = newly + redis.call('ZADD', KEYS[2], 'NX', string.format('%.6f', now), stale[i])
end
if #stale >= 2 * limit then cursor = stale[#stale] else cursor = string.format('%.6f', cutoff) end
redis.call('HSET', KEYS[3], 'detect_cursor', cursor)
if newly > 0 then redis.call('HINCRBY', KEYS[3], 'dead_workers_detected', newly) end
local expired = redis.call('ZRANGE', KEYS[2], '-inf', string.format('(%.6f', now - retention),
  'BYSCORE', 'LIMIT', 0, limit)
local pruned = 0
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[2], id)
  local beat = redis.call('ZSCORE', KEYS[1], id)
  if not beat or tonumber(beat) < cutoff then
    redis.call('ZREM', KEYS[1], id)
    redis.call('DEL', ARGV[3] .. id)
    pruned = pruned + 1
  end
end
return {string.format('%.6f', now), newly, pruned}
"""

# --- queues ------------------------------------------------------------------------------------
REDELIVERIES_FIELD = "tqmon_redeliveries"
REQUEUE_LIMIT = 100  # entries one script run moves for one consumer: keeps it ~1 ms

# `--requeue-orphans`, for one dead consumer. KEYS: stream, stats (same slot). ARGV: group,
# consumer, limit, redelivery field. Each of the consumer's pending entries is re-added at the
# end of the stream with the same fields and a redelivery count, then acknowledged and deleted,
# and counted in tasks_reassigned - all in one atomic script, so collectors running at once
# can neither lose nor duplicate an entry (the second finds nothing pending). An entry already
# deleted from the stream is only acknowledged. A consumer left with nothing pending is deleted.
REQUEUE = """
local limit = tonumber(ARGV[3])
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', limit, ARGV[2])
local moved = 0
for _, p in ipairs(pending) do
  local id = p[1]
  local entry = redis.call('XRANGE', KEYS[1], id, id)
  if #entry == 1 then
    local fields, out, count = entry[1][2], {}, 1
    for i = 1, #fields, 2 do
      if fields[i] == ARGV[4] then count = (tonumber(fields[i + 1]) or 0) + 1
      else out[#out + 1] = fields[i]; out[#out + 1] = fields[i + 1] end
    end
    out[#out + 1] = ARGV[4]
    out[#out + 1] = tostring(count)
    redis.call('XADD', KEYS[1], '*', unpack(out))
    moved = moved + 1
  end
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('XDEL', KEYS[1], id)
end
if moved > 0 then redis.call('HINCRBY', KEYS[2], 'tasks_reassigned', moved) end
if #pending < limit then redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end
return moved
"""
