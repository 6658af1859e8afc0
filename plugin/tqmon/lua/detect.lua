-- DETECT: the collector's dead-worker detection, run on every collection unless --read-only.
-- KEYS[1] workers registry  KEYS[2] dead set  KEYS[3] stats hash  KEYS[4] pruned set
-- ARGV[1] heartbeat ttl (s)  ARGV[2] dead retention (s)  ARGV[3] worker hash prefix
-- ARGV[4] limit (workers examined or pruned per run: keeps the script ~1 ms)
-- ARGV[5] pruned ids kept (the newest; bounds the pruned set)
-- KEYS[5] pool names (SET)  ARGV[6] pool key prefix (both optional, v1.1: a pruned worker
-- leaves its pool's registry and busy set, `<prefix><pool>:workers` and `:busy`, in this slot
-- too; a pool left empty leaves the pool names)
-- Returns {now, newly dead, pruned}.
--
-- Exactly once: a worker is counted when ZADD NX puts it into the dead set, which a script run
-- does atomically, so concurrent collectors cannot both count it. `detect_cursor` in the stats
-- hash is the staleness cutoff already examined, so each run looks only at workers that went
-- stale since (a bounded ZRANGE BYSCORE), however many dead workers are retained. A worker that
-- beats again has a score above the cursor, leaves the dead set (its BEAT removes it), and is
-- counted again if it dies again. Worker hashes are built from the hash-tagged prefix, so they
-- live in this slot.
--
-- A pruned worker leaves a tombstone in the pruned set (score: when pruned), so the entries it
-- still holds in a stream stay attributable to a dead worker - orphaned and requeueable -
-- however long ago it died. A worker that registers again under the same id is alive, whatever
-- its tombstone says.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
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
    local pool = ARGV[6] and redis.call('HGET', ARGV[3] .. id, 'pool')
    if pool then
      redis.call('ZREM', ARGV[6] .. pool .. ':workers', id)
      redis.call('ZREM', ARGV[6] .. pool .. ':busy', id)
      if KEYS[5] and redis.call('ZCARD', ARGV[6] .. pool .. ':workers') == 0 then
        redis.call('SREM', KEYS[5], pool)
      end
    end
    redis.call('DEL', ARGV[3] .. id)
    redis.call('ZADD', KEYS[4], string.format('%.6f', now), id)
    pruned = pruned + 1
  end
end
if pruned > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -(tonumber(ARGV[5]) + 1))
end
return {string.format('%.6f', now), newly, pruned}
