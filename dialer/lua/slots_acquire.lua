-- Take a concurrency slot for one call attempt.
-- KEYS[1]  sorted set: member "{call_id}:{attempt}", score = lease expiry (epoch s, server time)
-- ARGV[1]  member
-- ARGV[2]  lease (us)
-- ARGV[3]  limit: live leases allowed at once
-- KEYS[2], ARGV[4]  optional: a job hash and the dial stage to write in it once the slot is
--          held (the dial path records "sip_requested" in the same step)
-- Returns 1 when the member holds a slot (newly, or already: then the lease is extended and
-- never shortened), 0 when every slot is taken.
-- Expired leases do not count against the limit but stay in the set for slots_reap.lua, which
-- hands them to the beat so it can report the lost attempt; deleting them here would hide it.
local key = KEYS[1]
local member = ARGV[1]
local lease = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local now = now_us()

local function held()
  if KEYS[2] then
    redis.call('HSET', KEYS[2], 'dial_stage', ARGV[4])
  end
  return 1
end
local now_s = tonumber(score_str(now))
local expiry = score_str(now + lease)

local score = tonumber(redis.call('ZSCORE', key, member))
if score ~= nil and score > now_s then
  if tonumber(expiry) > score then
    redis.call('ZADD', key, expiry, member)
  end
  return held()
end
if redis.call('ZCOUNT', key, '(' .. score_str(now), '+inf') >= limit then
  return 0
end
redis.call('ZADD', key, expiry, member)
return held()
