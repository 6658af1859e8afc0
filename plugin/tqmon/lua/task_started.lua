-- TASK_STARTED: a worker took a task (tqmon.heartbeat).
-- KEYS[1] this worker's hash  KEYS[2] workers registry
-- KEYS[3] its pool's busy workers (optional, v1.1)
-- ARGV[1] task_id ('' for none)  ARGV[2] worker_id
-- Guarantees: status, current_task and the pool's busy set change together; the busy set
-- carries the worker's last heartbeat, so a busy worker that dies stops counting as busy.
redis.call('HSET', KEYS[1], 'status', 'processing')
if ARGV[1] == '' then redis.call('HDEL', KEYS[1], 'current_task')
else redis.call('HSET', KEYS[1], 'current_task', ARGV[1]) end
if KEYS[3] then
  local beat = redis.call('ZSCORE', KEYS[2], ARGV[2])
  if beat then redis.call('ZADD', KEYS[3], beat, ARGV[2]) end
end
return 1
