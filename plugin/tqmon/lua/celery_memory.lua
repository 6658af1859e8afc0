-- CELERY_MEMORY: what tqmon heard of Celery's workers, kept under tqmon's own {P} keys (never
-- Celery's, which it only reads), so an exec-mode run knows a worker heard before and silent
-- now. Run by every `--schema celery` collection unless --read-only.
-- KEYS[1] workers ZSET: nodename -> when its last heartbeat expires (last heard + 2 x freq,
--         Celery's own rule; Redis server seconds)
-- KEYS[2] info HASH: nodename -> JSON of the last heartbeat heard (last, freq, processed, active)
-- KEYS[3] dead ZSET: nodename -> when its death was counted
-- KEYS[4] stats HASH: dead_workers_detected, detect_cursor
-- KEYS[5] kombu's pidbox binding SET (`_kombu.binding.celery.pidbox`): only read (SISMEMBER)
-- ARGV[1] dead retention (s)  ARGV[2] limit (workers judged or pruned per run)
-- ARGV[3], ARGV[4] the pidbox member of nodename N is ARGV[3] .. N .. ARGV[4]
-- ARGV[5] n, then n triples (nodename, expiry, info JSON) heard in this run's window, then the
--         nodenames heard going offline (a clean shutdown: forgotten, not a death)
-- Returns {now, newly dead}.
--
-- Died or stopped: a worker stopped cleanly (SIGTERM, exit 0) closes its remote-control
-- mailbox, which removes its member from the pidbox binding set; a SIGKILLed one leaves it
-- (checked with Celery 5.x, docs/adapters.md). So a silent worker whose member is still there
-- died, and is counted once (lua/dead_set.lua, prepended: dead_scan from the cursor, however
-- many are retained); one whose member is gone stopped, or never had a mailbox (remote control
-- off: tqmon cannot tell), and is forgotten, never counted. ZADD GT keeps the latest expiry
-- whatever order collectors report in; a worker heard again leaves the dead set.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local retention, limit, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[5])
local box_head, box_tail = ARGV[3], ARGV[4]
local cursor = tonumber(redis.call('HGET', KEYS[4], 'detect_cursor') or '')
local function forget(host)
  redis.call('ZREM', KEYS[1], host)
  redis.call('ZREM', KEYS[3], host)
  redis.call('HDEL', KEYS[2], host)
end
for i = 0, n - 1 do
  local host, expiry, info = ARGV[6 + 3 * i], tonumber(ARGV[7 + 3 * i]), ARGV[8 + 3 * i]
  -- never below the cursor: a report that arrives late is still judged by a later scan
  if cursor and expiry < cursor then expiry = cursor end
  if redis.call('ZADD', KEYS[1], 'GT', 'CH', dead_fmt(expiry), host) == 1 then
    redis.call('HSET', KEYS[2], host, info)
  end
  if expiry > now then redis.call('ZREM', KEYS[3], host) end
end
for i = 6 + 3 * n, #ARGV do forget(ARGV[i]) end
local newly = dead_scan(KEYS[1], KEYS[3], KEYS[4], now, now, limit, function(host)
  if redis.call('SISMEMBER', KEYS[5], box_head .. host .. box_tail) == 1 then return true end
  forget(host)
  return false
end)
dead_prune(KEYS[3], now, retention, limit, function(host)
  redis.call('ZREM', KEYS[1], host)
  redis.call('HDEL', KEYS[2], host)
  return false
end)
return {dead_fmt(now), newly}
