-- REGISTER: a worker starts (tqmon.heartbeat). Contract v1, docs/heartbeat-contract.md.
-- KEYS[1] workers registry (ZSET)  KEYS[2] dead set (ZSET)  KEYS[3] this worker's hash
-- KEYS[4] pool names (SET)  KEYS[5] its pool's registry (ZSET)   (both optional, v1.1)
-- ARGV[1] worker_id  ARGV[2] name  ARGV[3] hostname  ARGV[4] pid  ARGV[5] tasks_processed
-- ARGV[6] tasks_failed  ARGV[7] pool (absent or '': none recorded)
-- Guarantees: the hash is rewritten from scratch and the heartbeat set in one step, on the
-- Redis server's clock (TIME), never the worker's; a worker that comes back is no longer dead;
-- with a pool, the pool's registry gets the same heartbeat, so a collector counts a pool's
-- alive and dead workers without reading any worker's hash.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local score = string.format('%.6f', now)
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], 'name', ARGV[2], 'hostname', ARGV[3], 'pid', ARGV[4],
  'started_at', score, 'status', 'idle',
  'tasks_processed', ARGV[5], 'tasks_failed', ARGV[6])
if KEYS[5] and ARGV[7] and ARGV[7] ~= '' then
  redis.call('HSET', KEYS[3], 'pool', ARGV[7])
  redis.call('SADD', KEYS[4], ARGV[7])
  redis.call('ZADD', KEYS[5], score, ARGV[1])
end
redis.call('ZADD', KEYS[1], score, ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
