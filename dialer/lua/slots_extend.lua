-- Extend the lease of a slot that is still live (never shortens it).
-- KEYS[1]  slots sorted set (see slots_acquire.lua)
-- ARGV[1]  member
-- ARGV[2]  lease from now (us)
-- Returns 1 when extended or already longer, 0 when the member holds no live slot: an expired
-- lease is not revived, because its slot may already have gone to another call.
local key = KEYS[1]
local now = now_us()
local score = tonumber(redis.call('ZSCORE', key, ARGV[1]))
if score == nil or score <= tonumber(score_str(now)) then
  return 0
end
local expiry = score_str(now + tonumber(ARGV[2]))
if tonumber(expiry) > score then
  redis.call('ZADD', key, expiry, ARGV[1])
end
return 1
