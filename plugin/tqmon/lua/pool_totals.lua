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
local retention = tonumber(ARGV[1])
local stamp = string.format('%.6f', now)
if n > 0 then
  -- one HMGET and one ZMSCORE for the whole batch: a call per worker costs ~5x as much
  local fields, members = {}, {}
  for i = 0, n - 1 do
    local worker = ARGV[3 + 4 * i]
    fields[2 * i + 1], fields[2 * i + 2] = 'processed|' .. worker, 'failed|' .. worker
    members[i + 1] = 'w|' .. worker
  end
  local seen = redis.call('HMGET', KEYS[1], unpack(fields))
  local last = redis.call('ZMSCORE', KEYS[2], unpack(members))
  local kinds = {'processed', 'failed'}
  local touched, pools = {}, {}
  for i = 0, n - 1 do
    local pool = ARGV[4 + 4 * i]
    if not pools[pool] then
      pools[pool] = true
      touched[#touched + 1] = stamp
      touched[#touched + 1] = 'p|' .. pool
      redis.call('HSETNX', KEYS[3], 'processed|' .. pool, 0)
      redis.call('HSETNX', KEYS[3], 'failed|' .. pool, 0)
    end
    for k = 1, 2 do
      -- unchanged (the same digits as stored: the common case) adds nothing: no arithmetic
      if seen[2 * i + k] ~= ARGV[4 + k + 4 * i] then
        local count = math.floor(tonumber(ARGV[4 + k + 4 * i]) or 0)
        local before = tonumber(seen[2 * i + k] or '-1')
        if count > before then
          redis.call('HSET', KEYS[1], fields[2 * i + k], count)
          redis.call('HINCRBY', KEYS[3], kinds[k] .. '|' .. pool, count - math.max(before, 0))
        end
      end
    end
    -- last seen: refreshed once a quarter of the retention has passed, so a live worker is
    -- never pruned and the ZSET is not rewritten on every run
    local score = last[i + 1] and tonumber(last[i + 1])
    if not score or score < now - retention / 4 then
      touched[#touched + 1] = stamp
      touched[#touched + 1] = members[i + 1]
    end
  end
  redis.call('ZADD', KEYS[2], unpack(touched))
end
local cutoff = string.format('%.6f', now - retention)
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. cutoff, 'LIMIT', 0, 1000)
for _, member in ipairs(gone) do
  local hash = member:sub(1, 2) == 'w|' and KEYS[1] or KEYS[3]
  local name = member:sub(3)
  redis.call('HDEL', hash, 'processed|' .. name, 'failed|' .. name)
  redis.call('ZREM', KEYS[2], member)
end
return redis.call('HGETALL', KEYS[3])
