-- TASK_FINISHED: a worker finished a task (tqmon.heartbeat).
-- KEYS[1] this worker's hash  KEYS[2] latency histogram hash
-- KEYS[3] pool counters (HASH)  KEYS[4] its pool's busy workers (both optional, v1.1)
-- ARGV[1] ok (1|0)  ARGV[2] duration in seconds  ARGV[3] sum field  ARGV[4] bucket field
-- ARGV[5] pool ('' for none)  ARGV[6] worker_id
-- Guarantees: the worker's counters, its pool's counters (`processed|<pool>`,
-- `failed|<pool>`), its status and the latency histogram change together, so the pool's
-- totals rise exactly as its workers' counters do and never fall when workers go.
redis.call('HINCRBY', KEYS[1], 'tasks_processed', 1)
if ARGV[1] == '0' then redis.call('HINCRBY', KEYS[1], 'tasks_failed', 1) end
redis.call('HSET', KEYS[1], 'status', 'idle')
redis.call('HDEL', KEYS[1], 'current_task')
redis.call('HINCRBYFLOAT', KEYS[2], ARGV[3], ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
if KEYS[3] and ARGV[5] and ARGV[5] ~= '' then
  redis.call('HINCRBY', KEYS[3], 'processed|' .. ARGV[5], 1)
  if ARGV[1] == '0' then redis.call('HINCRBY', KEYS[3], 'failed|' .. ARGV[5], 1) end
end
if KEYS[4] then redis.call('ZREM', KEYS[4], ARGV[6]) end
return 1
