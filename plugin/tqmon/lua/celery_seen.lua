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
local CHUNK = 1000  -- arguments unpacked into one HMGET / HDEL
local out = {}
for first = 0, n - 1, CHUNK do
  local last = math.min(n - 1, first + CHUNK - 1)
  local fields = {}
  for i = first, last do fields[#fields + 1] = ARGV[2 + 2 * i] end
  local known = redis.call('HMGET', KEYS[1], unpack(fields))
  for i = first, last do
    local key, tag, since, seen = ARGV[2 + 2 * i], ARGV[3 + 2 * i], nil, nil
    local was = known[i - first + 1]
    if was then since, seen = string.match(was, '^(%S+) (.*)$') end
    if seen ~= tag or since == nil then
      since = now
      redis.call('HSET', KEYS[1], key, now .. ' ' .. tag)
    end
    out[#out + 1] = since
  end
end
for first = 2 + 2 * n, #ARGV, CHUNK do
  redis.call('HDEL', KEYS[1], unpack(ARGV, first, math.min(#ARGV, first + CHUNK - 1)))
end
return out
