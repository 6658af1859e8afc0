-- CELERY_MEMORY: what tqmon heard of Celery's workers, kept under tqmon's own {P} keys (never
-- Celery's), so an exec-mode run knows a worker heard before and silent now. Run by every
-- `--schema celery` collection unless --read-only.
-- KEYS[1] workers ZSET: nodename -> when its last heartbeat expires (last heard + 2 x freq,
--         Celery's own rule; Redis server seconds)
-- KEYS[2] info HASH: nodename -> JSON of the last heartbeat heard (last, freq, processed, active)
-- KEYS[3] dead ZSET: nodename -> when its death was counted
-- KEYS[4] stats HASH: dead_workers_detected
-- ARGV[1] dead retention (s)  ARGV[2] limit (workers counted or pruned per run)
-- ARGV[3] n, then n triples (nodename, expiry, info JSON) heard in this run's window, then the
--         nodenames heard going offline (a clean shutdown: forgotten, not a death)
-- Returns {now, newly dead}.
--
-- Exactly once: a death is counted when ZADD NX puts the worker into the dead set, inside this
-- atomic script, so N collectors count it once. ZADD GT keeps the latest expiry whatever order
-- collectors report in; a worker heard again leaves the dead set and is counted again if it dies
-- again.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local retention, limit, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 0, n - 1 do
  local host, expiry, info = ARGV[4 + 3 * i], ARGV[5 + 3 * i], ARGV[6 + 3 * i]
  if redis.call('ZADD', KEYS[1], 'GT', 'CH', expiry, host) == 1 then
    redis.call('HSET', KEYS[2], host, info)
  end
  if tonumber(expiry) > now then redis.call('ZREM', KEYS[3], host) end
end
for i = 4 + 3 * n, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[3], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
end
local stamp = string.format('%.6f', now)
local expired = redis.call('ZRANGE', KEYS[1], '-inf', '(' .. stamp, 'BYSCORE', 'LIMIT', 0, limit)
local newly = 0
for _, host in ipairs(expired) do
  newly = newly + redis.call('ZADD', KEYS[3], 'NX', stamp, host)
end
if newly > 0 then redis.call('HINCRBY', KEYS[4], 'dead_workers_detected', newly) end
local old = redis.call('ZRANGE', KEYS[3], '-inf', string.format('(%.6f', now - retention),
  'BYSCORE', 'LIMIT', 0, limit)
for _, host in ipairs(old) do
  redis.call('ZREM', KEYS[3], host)
  redis.call('ZREM', KEYS[1], host)
  redis.call('HDEL', KEYS[2], host)
end
return {stamp, newly}
