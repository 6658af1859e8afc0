-- REGISTER: a worker starts (tqmon.heartbeat). Contract v1, docs/heartbeat-contract.md.
-- KEYS[1] workers registry (ZSET)  KEYS[2] dead set (ZSET)  KEYS[3] this worker's hash
-- ARGV[1] worker_id  ARGV[2] name  ARGV[3] hostname  ARGV[4] pid  ARGV[5] tasks_processed
-- ARGV[6] tasks_failed
-- Guarantees: the hash is rewritten from scratch and the heartbeat set in one step, on the
-- Redis server's clock (TIME), never the worker's; a worker that comes back is no longer dead.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], 'name', ARGV[2], 'hostname', ARGV[3], 'pid', ARGV[4],
  'started_at', string.format('%.6f', now), 'status', 'idle',
  'tasks_processed', ARGV[5], 'tasks_failed', ARGV[6])
redis.call('ZADD', KEYS[1], string.format('%.6f', now), ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
