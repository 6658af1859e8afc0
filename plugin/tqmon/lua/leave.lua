-- LEAVE: a consumer leaves its group, only if it holds nothing (tqmon.streams on a clean
-- stop; the collector for a worker pruned as dead).
-- KEYS[1] stream
-- ARGV[1] group  ARGV[2] consumer
-- Returns 1 when the consumer was deleted, 0 when it still holds entries (or is unknown).
--
-- XGROUP DELCONSUMER drops the consumer's pending entries with it, so the check and the
-- delete must be one atomic step: a consumer that took an entry in between keeps it.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if not ok or #pending > 0 then return 0 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) == 0 and 1 or 0
