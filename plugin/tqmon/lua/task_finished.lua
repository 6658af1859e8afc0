-- TASK_FINISHED: a worker finished a task (tqmon.heartbeat).
-- KEYS[1] this worker's hash  KEYS[2] latency histogram hash
-- ARGV[1] ok (1|0)  ARGV[2] duration in seconds  ARGV[3] sum field  ARGV[4] bucket field
-- Guarantees: the worker's counters, its status and the latency histogram change together.
redis.call('HINCRBY', KEYS[1], 'tasks_processed', 1)
if ARGV[1] == '0' then redis.call('HINCRBY', KEYS[1], 'tasks_failed', 1) end
redis.call('HSET', KEYS[1], 'status', 'idle')
redis.call('HDEL', KEYS[1], 'current_task')
redis.call('HINCRBYFLOAT', KEYS[2], ARGV[3], ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
return 1
