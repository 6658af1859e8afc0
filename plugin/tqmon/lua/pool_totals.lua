-- POOL_TOTALS: pool task counters that never fall, for a queue system that counts tasks per
-- worker only (RQ, arq): tqmon adds each worker's increase since the last run to its pool's
-- total. Run by the adapter on every collection unless --read-only; only tqmon's keys are
-- written (the queue system's are read by the collector and passed here).
-- KEYS[1] {P}:<schema>:pool_seen    HASH processed|<worker>, failed|<worker>: the highest
--                                   counts added so far
-- KEYS[2] {P}:<schema>:pool_last    ZSET w|<worker>, p|<pool> -> last seen (server time)
-- KEYS[3] {P}:<schema>:pool_stats   HASH processed|<pool>, failed|<pool>: the totals
-- ARGV[1] retention (s)  ARGV[2] n  ARGV[3 ..] n quadruples: worker, pool, processed, failed
-- Returns the totals HASH as a flat array (HGETALL).
--
-- Exactly once: a worker's increase is its count minus the highest count added for it before,
-- read and written atomically here, so N collectors reading the same count add it once, and
-- one that read an older count adds nothing. A count below that mark (a stale read, or arq's
-- shared key rewritten by another worker) adds nothing: a total never falls and never jumps
-- by a whole worker's count. A worker seen for the first time adds all its count (it is read
-- within one run of starting, so that is its first tasks). A worker identity includes its
-- start where the system records one, so a restart under the same name is a new worker.
-- Workers and pools not seen for the retention are forgotten (1,000 per run at most).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[2])
local stamp = string.format('%.6f', now)
for i = 0, n - 1 do
  local worker, pool = ARGV[3 + 4 * i], ARGV[4 + 4 * i]
  local counts = {processed = tonumber(ARGV[5 + 4 * i]), failed = tonumber(ARGV[6 + 4 * i])}
  for _, kind in ipairs({'processed', 'failed'}) do
    local value = math.floor(counts[kind] or 0)
    local field = kind .. '|' .. worker
    local seen = tonumber(redis.call('HGET', KEYS[1], field) or '-1')
    local total = kind .. '|' .. pool
    redis.call('HSETNX', KEYS[3], total, 0)
    if value > seen then
      redis.call('HSET', KEYS[1], field, value)
      redis.call('HINCRBY', KEYS[3], total, value - math.max(seen, 0))
    end
  end
  redis.call('ZADD', KEYS[2], stamp, 'w|' .. worker, stamp, 'p|' .. pool)
end
local cutoff = string.format('%.6f', now - tonumber(ARGV[1]))
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. cutoff, 'LIMIT', 0, 1000)
for _, member in ipairs(gone) do
  local hash = member:sub(1, 2) == 'w|' and KEYS[1] or KEYS[3]
  local name = member:sub(3)
  redis.call('HDEL', hash, 'processed|' .. name, 'failed|' .. name)
  redis.call('ZREM', KEYS[2], member)
end
return redis.call('HGETALL', KEYS[3])
