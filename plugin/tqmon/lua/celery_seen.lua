-- CELERY_SEEN: when tqmon first saw the message now at the head of each of Celery's priority
-- lists, kept under tqmon's own {P}:celery:seen (Celery's keys are only read, by the caller).
-- Celery's messages carry no send time: this is the observed waiting age's memory.
-- KEYS[1] seen HASH: list key -> "<first seen, server seconds> <delivery tag>"
-- ARGV[1] n, then n pairs (list key, delivery tag of the message at its head: the tail, where
--         kombu takes from), then the list keys found empty (their entries go)
-- Returns the n first-seen times, in order, as strings.
--
-- N collectors agree: the first run to see a tag at a list's head records when; a run seeing
-- the same tag keeps it; a different tag (the head was taken) starts again at now.
local t = redis.call('TIME')
local now = string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000)
local n = tonumber(ARGV[1])
local out = {}
for i = 0, n - 1 do
  local key, tag = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  local known = redis.call('HGET', KEYS[1], key)
  local since, seen = nil, nil
  if known then since, seen = string.match(known, '^(%S+) (.*)$') end
  if seen ~= tag or since == nil then
    since = now
    redis.call('HSET', KEYS[1], key, now .. ' ' .. tag)
  end
  out[#out + 1] = since
end
for i = 2 + 2 * n, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
return out
