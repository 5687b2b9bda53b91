-- Scale a trunk's pacing down after a throttled dial; mirrors dialer.pacing.backed_off_multiplier.
-- KEYS[1]  pacing hash (see pacer_acquire.lua)
-- ARGV[1]  factor in (0, 1]
-- ARGV[2]  floor: the multiplier never goes below it
-- ARGV[3]  recovery half-life (us)
-- ARGV[4]  cooldown (us): throttles this soon after the last back-off are the same episode
--          (calls already in flight report it too) and do not compound
-- Returns the multiplier now in force, as a string.
local key = KEYS[1]
local factor = tonumber(ARGV[1])
local floor = tonumber(ARGV[2])
local half_life = tonumber(ARGV[3])
local cooldown = tonumber(ARGV[4])
local now = now_us()

local state = redis.call('HMGET', key, 'mult', 'mult_at')
local mult = current_multiplier(state[1], state[2], now, half_life)
local last = tonumber(state[2])
if last ~= nil and now - last < cooldown then
  return num_str(mult)
end

local new_mult = math.max(floor, mult * factor)
redis.call('HSET', key, 'mult', num_str(new_mult), 'mult_at', int_str(now))
local horizon_ms = math.ceil(half_life * 10 / 1000)
if redis.call('PTTL', key) < horizon_ms then
  redis.call('PEXPIRE', key, horizon_ms)
end
return num_str(new_mult)
