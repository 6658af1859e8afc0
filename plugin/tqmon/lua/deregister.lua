-- DEREGISTER: a worker shuts down cleanly (tqmon.heartbeat); not a death.
-- KEYS[1] workers registry  KEYS[2] dead set  KEYS[3] this worker's hash
-- KEYS[4] its pool's registry  KEYS[5] its pool's busy workers  KEYS[6] pool names
-- (all three optional, v1.1)  ARGV[1] worker_id  ARGV[2] its pool
-- Guarantees: the worker leaves registry, dead set, hash and its pool at once, so no collector
-- can see it stale in between and count it dead; the last worker of a pool takes the pool off
-- the pool names. Its pool's counters stay.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
if KEYS[4] then redis.call('ZREM', KEYS[4], ARGV[1]) end
if KEYS[5] then redis.call('ZREM', KEYS[5], ARGV[1]) end
if KEYS[6] and redis.call('ZCARD', KEYS[4]) == 0 then redis.call('SREM', KEYS[6], ARGV[2]) end
return 1
