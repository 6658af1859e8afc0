-- REQUEUE: `--requeue-orphans`, for one dead consumer of one stream.
-- KEYS[1] stream  KEYS[2] stats hash (same slot)
-- ARGV[1] group  ARGV[2] consumer  ARGV[3] limit (entries per run: keeps it ~1 ms)
-- ARGV[4] redelivery count field
-- Returns the number of entries moved.
--
-- Each of the consumer's pending entries is re-added at the end of the stream with the same
-- fields and a redelivery count, then acknowledged and deleted, and counted in
-- tasks_reassigned - all in one atomic script, so collectors running at once can neither lose
-- nor duplicate an entry (the second finds nothing pending). An entry already deleted from the
-- stream is only acknowledged. A consumer left with nothing pending is deleted.
local limit = tonumber(ARGV[3])
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', limit, ARGV[2])
local moved = 0
for _, p in ipairs(pending) do
  local id = p[1]
  local entry = redis.call('XRANGE', KEYS[1], id, id)
  if #entry == 1 then
    local fields, out, count = entry[1][2], {}, 1
    for i = 1, #fields, 2 do
      if fields[i] == ARGV[4] then count = (tonumber(fields[i + 1]) or 0) + 1
      else out[#out + 1] = fields[i]; out[#out + 1] = fields[i + 1] end
    end
    out[#out + 1] = ARGV[4]
    out[#out + 1] = tostring(count)
    redis.call('XADD', KEYS[1], '*', unpack(out))
    moved = moved + 1
  end
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('XDEL', KEYS[1], id)
end
if moved > 0 then redis.call('HINCRBY', KEYS[2], 'tasks_reassigned', moved) end
if #pending < limit then redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end
return moved
