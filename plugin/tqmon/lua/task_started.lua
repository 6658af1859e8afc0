-- TASK_STARTED: a worker took a task (tqmon.heartbeat).
-- KEYS[1] this worker's hash
-- ARGV[1] task_id ('' for none)
-- Guarantees: status and current_task change together.
redis.call('HSET', KEYS[1], 'status', 'processing')
if ARGV[1] == '' then redis.call('HDEL', KEYS[1], 'current_task')
else redis.call('HSET', KEYS[1], 'current_task', ARGV[1]) end
return 1
