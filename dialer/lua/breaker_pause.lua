-- Operator pause: no dials on the trunk for the given time from now (replaces any pause).
-- Leaves the tripped flag alone: a breaker that tripped is still half-open when this ends.
-- KEYS[1]  breaker hash (see breaker_record.lua)
-- ARGV[1]  pause (us)
-- ARGV[2]  memory (us)
local pause = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'paused_until', int_str(now_us() + pause))
redis.call('PEXPIRE', KEYS[1], math.ceil((pause + tonumber(ARGV[2])) / 1000))
return 1
