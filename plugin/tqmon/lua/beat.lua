-- BEAT: a worker's periodic heartbeat (tqmon.heartbeat).
-- KEYS[1] workers registry  KEYS[2] dead set  KEYS[3] this worker's hash
-- ARGV[1] worker_id
-- Returns 0 when the hash is gone (the collector pruned this worker as dead): the helper then
-- registers again. Guarantees: the heartbeat is the Redis server's clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if redis.call('HEXISTS', KEYS[3], 'name') == 0 then return 0 end
redis.call('ZADD', KEYS[1], string.format('%.6f', now), ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
