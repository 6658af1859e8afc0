-- DEREGISTER: a worker shuts down cleanly (tqmon.heartbeat); not a death.
-- KEYS[1] workers registry  KEYS[2] dead set  KEYS[3] this worker's hash
-- ARGV[1] worker_id
-- Guarantees: the worker leaves registry, dead set and hash at once, so no collector can
-- see it stale in between and count it dead.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return 1
