-- Remove and return every member whose lease has run out (expiry <= now). Atomic, so when two
-- reapers race each lost attempt is reported exactly once.
-- KEYS[1]  slots sorted set (see slots_acquire.lua)
local bound = score_str(now_us())
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', bound)
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', bound)
end
return expired
