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
-- Exactly once and however many are retained: lua/dead_set.lua (prepended): dead_scan reads
-- the workers that went stale since `detect_cursor`, dead_prune the ones past the retention. A worker that
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
local newly = dead_scan(KEYS[1], KEYS[2], KEYS[3], cutoff, now, limit)
local pruned = 0
dead_prune(KEYS[2], now, retention, limit, function(id)
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
  return false
end)
if pruned > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -(tonumber(ARGV[5]) + 1))
end
return {string.format('%.6f', now), newly, pruned}
