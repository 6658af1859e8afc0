-- BEAT: a worker's periodic heartbeat (tqmon.heartbeat).
-- KEYS[1] workers registry  KEYS[2] dead set  KEYS[3] this worker's hash
-- KEYS[4] its pool's registry  KEYS[5] its pool's busy workers (both optional, v1.1)
-- ARGV[1] worker_id
-- Returns 0 when the hash is gone (the collector pruned this worker as dead): the helper then
-- registers again. Guarantees: the heartbeat is the Redis server's clock, the same in the
-- registry, the pool's registry and (while it processes a task) the pool's busy set.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if redis.call('HEXISTS', KEYS[3], 'name') == 0 then return 0 end
local score = string.format('%.6f', now)
redis.call('ZADD', KEYS[1], score, ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if KEYS[5] then
  redis.call('ZADD', KEYS[4], score, ARGV[1])
  redis.call('ZADD', KEYS[5], 'XX', score, ARGV[1])
end
return 1
