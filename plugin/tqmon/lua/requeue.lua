-- REQUEUE: `--requeue-orphans`, for one dead consumer of one stream.
-- KEYS[1] stream  KEYS[2] stats hash  KEYS[3] dead-letter stream (<stream>:dead); one slot
-- ARGV[1] group  ARGV[2] consumer  ARGV[3] limit (entries per run: keeps it ~1 ms)
-- ARGV[4] redelivery count field  ARGV[5] max redeliveries
-- Returns {moved, dead-lettered}, or {-1, 0} when the stream has more than one group.
--
-- Each of the consumer's pending entries is re-added at the end of the stream with the same
-- fields and a redelivery count one higher, then acknowledged and deleted, and counted in
-- tasks_reassigned. The copy is a new entry for the group, so a plain XREADGROUP `>` delivers
-- it. An entry already requeued ARGV[5] times goes to the dead-letter stream instead (same
-- fields plus tqmon_dead_reason, tqmon_dead_at, tqmon_dead_from), counted in
-- tasks_dead_lettered. All in one atomic script, so collectors running at once can neither
-- lose nor duplicate an entry (the second finds nothing pending). An entry already deleted from
-- the stream is only acknowledged. A consumer left with nothing pending is deleted.
--
-- A stream read by more than one group is never touched: the copy would be delivered to every
-- other group again, and deleting the original would strip the fields of their own pending
-- entries. The caller checks too; this check is the atomic one.
if #redis.call('XINFO', 'GROUPS', KEYS[1]) > 1 then return {-1, 0} end
local limit, cap = tonumber(ARGV[3]), tonumber(ARGV[5])
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', limit, ARGV[2])
local t = redis.call('TIME')
local now = string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
local moved, dead = 0, 0
for _, p in ipairs(pending) do
  local id = p[1]
  local entry = redis.call('XRANGE', KEYS[1], id, id)
  if #entry == 1 then
    local fields, out, count = entry[1][2], {}, 0
    for i = 1, #fields, 2 do
      if fields[i] == ARGV[4] then count = tonumber(fields[i + 1]) or 0
      else out[#out + 1] = fields[i]; out[#out + 1] = fields[i + 1] end
    end
    if count >= cap then
      out[#out + 1] = ARGV[4]; out[#out + 1] = tostring(count)
      out[#out + 1] = 'tqmon_dead_reason'
      out[#out + 1] = 'redelivered ' .. count .. ' times (--max-redeliveries ' .. cap ..
        '); consumer ' .. ARGV[2] .. ' of group ' .. ARGV[1] .. ' died holding it'
      out[#out + 1] = 'tqmon_dead_at'; out[#out + 1] = now
      out[#out + 1] = 'tqmon_dead_from'; out[#out + 1] = id
      redis.call('XADD', KEYS[3], '*', unpack(out))
      dead = dead + 1
    else
      out[#out + 1] = ARGV[4]; out[#out + 1] = tostring(count + 1)
      redis.call('XADD', KEYS[1], '*', unpack(out))
      moved = moved + 1
    end
  end
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('XDEL', KEYS[1], id)
end
if moved > 0 then redis.call('HINCRBY', KEYS[2], 'tasks_reassigned', moved) end
if dead > 0 then redis.call('HINCRBY', KEYS[2], 'tasks_dead_lettered', dead) end
if #pending < limit then redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end
return {moved, dead}
