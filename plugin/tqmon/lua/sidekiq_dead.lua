-- SIDEKIQ_DEAD: remember Sidekiq processes found dead, and the jobs they held, exactly once.
-- Run by `--schema sidekiq` on every collection unless --read-only. Sidekiq's own keys are never
-- touched: the collector reads them and passes what it saw; this script writes only tqmon's.
-- KEYS[1] {P}:sidekiq:dead     ZSET identity -> when tqmon first saw it dead (server time)
-- KEYS[2] {P}:sidekiq:orphans  HASH identity -> JSON {queue: jobs it was running}, as first seen
-- KEYS[3] {P}:sidekiq:stats    HASH dead_workers_detected
-- KEYS[4] processes            Sidekiq's SET of process identities: only read (SISMEMBER)
-- ARGV[1] retention (s)  ARGV[2] n, the number of dead processes that follow
-- ARGV[3 .. 2+2n] pairs: identity, orphans JSON  ARGV[3+2n ..] identities alive again
-- Returns {newly dead, dead_workers_detected, pruned}.
--
-- Exactly once (lua/dead_set.lua, prepended: dead_add, dead_prune): a death counts when ZADD NX
-- adds the identity, atomically, so N collectors
-- seeing the same death count it once, and only that run's view of its jobs is kept. The
-- record outlives Sidekiq's work hash (which expires 60 s after the last beat), so the page on
-- orphaned jobs lasts until the retention ends. An identity beating again (a false alarm: a
-- restarted Sidekiq gets a new identity) is forgotten, and counted again if it dies again.
-- After the retention its orphans are forgotten (the page ends); the death itself is forgotten
-- only once the identity has left `processes`, so a member left there is never counted twice.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[2])
local newly = 0
for i = 0, n - 1 do
  local identity, orphans = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
  if dead_add(KEYS[1], KEYS[3], identity, now) == 1 then
    newly = newly + 1
    redis.call('HSET', KEYS[2], identity, orphans)
  end
end
for i = 3 + 2 * n, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
end
-- still listed in `processes`: looked at again a retention later, the others pruned meanwhile
local pruned = dead_prune(KEYS[1], now, tonumber(ARGV[1]), 1000, function(identity)
  redis.call('HDEL', KEYS[2], identity)
  return redis.call('SISMEMBER', KEYS[4], identity) == 1
end)
local total = tonumber(redis.call('HGET', KEYS[3], 'dead_workers_detected') or 0)
return {newly, total, pruned}
