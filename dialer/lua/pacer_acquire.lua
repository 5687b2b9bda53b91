-- GCRA admission of one call for a trunk; mirrors dialer.pacing.gcra in integer microseconds.
-- KEYS[1]  pacing hash: tat (us), mult (back-off multiplier), mult_at (us, last back-off)
-- ARGV[1]  emission interval at full rate (us, integer)
-- ARGV[2]  burst (>= 1)
-- ARGV[3]  back-off recovery half-life (us)
-- ARGV[4]  how far ahead a turn may be reserved (us; 0: only a turn that is due now)
-- Returns {wait_us, now_us, taken}. taken = 1: the turn at now + wait_us is the caller's (the
-- TAT moved on; the caller sleeps wait_us, then sends). taken = 0: no turn within reach; the
-- next one is due in wait_us (nothing stored: a refusal costs nothing). Reserving ahead puts
-- waiters in line at exact intervals instead of racing to poll for each turn as it comes due.
local key = KEYS[1]
local base = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local half_life = tonumber(ARGV[3])
local ahead = tonumber(ARGV[4]) or 0
local now = now_us()

local state = redis.call('HMGET', key, 'tat', 'mult', 'mult_at')
local tat = tonumber(state[1]) or now
local mult = current_multiplier(state[2], state[3], now, half_life)
local emission = math.ceil(base / mult)
local allow_at = tat - emission * (burst - 1)
if allow_at - now > ahead then
  return {allow_at - now, now, 0}
end

local slot = math.max(allow_at, now)
local new_tat = math.max(tat, slot) + emission
redis.call('HSET', key, 'tat', int_str(new_tat))
-- The TAT only matters while it lies in the future; a back-off until it has recovered.
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1000
if mult < 1 then
  ttl_ms = math.max(ttl_ms, math.ceil(half_life * 10 / 1000))
elseif state[2] then
  redis.call('HDEL', key, 'mult', 'mult_at')
end
redis.call('PEXPIRE', key, ttl_ms)
return {slot - now, now, 1}
