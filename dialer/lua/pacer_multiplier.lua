-- The back-off multiplier in force now for a trunk (1 when not backed off). Read-only.
-- KEYS[1]  pacing hash (see pacer_acquire.lua)
-- ARGV[1]  recovery half-life (us)
-- Returns the multiplier as a string.
local state = redis.call('HMGET', KEYS[1], 'mult', 'mult_at')
return num_str(current_multiplier(state[1], state[2], now_us(), tonumber(ARGV[1])))
