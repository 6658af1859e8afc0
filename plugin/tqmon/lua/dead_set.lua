-- DEAD_SET: the one core of "a dead set with a cursor and retention", shared by every script
-- that counts deaths (detect.lua for the native contract, celery_memory.lua, sidekiq_dead.lua).
-- It is prepended to those scripts (contract.with_dead_set), so each stays one atomic EVAL.
--
-- Exactly once: a member is counted when ZADD NX puts it into the dead set, inside the
-- atomic script, so N collectors count it once. A member alive again leaves the dead set (its
-- script ZREMs it) and is counted again if it dies again.
-- However many are retained: dead_scan reads the live ZSET from a cursor kept in the stats
-- hash (`detect_cursor`: the staleness cutoff already examined), so each run looks only at
-- members that went stale since, in a bounded ZRANGE BYSCORE; dead_prune removes what it
-- reads (or moves it a retention later), so it always makes progress too.

local function dead_fmt(x) return string.format('%.6f', x) end

-- Members of `live` (score: when the member goes stale) with a score in [cursor, cutoff]: each
-- one `judge(member)` calls dead (true; the default) goes into `dead` once, scored `now`; the
-- others are left to the caller's judge (which forgets them). Returns the number newly dead.
local function dead_scan(live, dead, stats, cutoff, now, limit, judge)
  local cursor = redis.call('HGET', stats, 'detect_cursor') or '-inf'
  local stale = redis.call('ZRANGE', live, cursor, dead_fmt(cutoff), 'BYSCORE',
    'LIMIT', 0, limit, 'WITHSCORES')
  local newly = 0
  for i = 1, #stale, 2 do
    if judge == nil or judge(stale[i]) then
      newly = newly + redis.call('ZADD', dead, 'NX', dead_fmt(now), stale[i])
    end
  end
  if #stale >= 2 * limit then cursor = stale[#stale] else cursor = dead_fmt(cutoff) end
  redis.call('HSET', stats, 'detect_cursor', cursor)
  if newly > 0 then redis.call('HINCRBY', stats, 'dead_workers_detected', newly) end
  return newly
end

-- Count `member` dead once (the caller judged it dead); 1 if newly counted.
local function dead_add(dead, stats, member, now)
  local added = redis.call('ZADD', dead, 'NX', dead_fmt(now), member)
  if added == 1 then redis.call('HINCRBY', stats, 'dead_workers_detected', 1) end
  return added
end

-- Members dead for longer than `retention`: `forget(member)` drops what the caller keeps on
-- it and returns true to keep the member counted (looked at again a retention later), else it
-- leaves the dead set. Returns the number that left.
local function dead_prune(dead, now, retention, limit, forget)
  local old = redis.call('ZRANGE', dead, '-inf', '(' .. dead_fmt(now - retention), 'BYSCORE',
    'LIMIT', 0, limit)
  local pruned = 0
  for _, member in ipairs(old) do
    if forget ~= nil and forget(member) then
      redis.call('ZADD', dead, 'XX', dead_fmt(now), member)
    else
      redis.call('ZREM', dead, member)
      pruned = pruned + 1
    end
  end
  return pruned
end

