-- A trunk's breaker as seen now. Read-only.
-- KEYS[1]  breaker hash (see breaker_record.lua)
-- Returns {pause remaining (us, 0 when not paused), tripped ('1' or ''), outcomes}.
local state = redis.call('HMGET', KEYS[1], 'outcomes', 'paused_until', 'tripped')
local remaining = (tonumber(state[2]) or 0) - now_us()
if remaining < 0 then
  remaining = 0
end
return {remaining, state[3] or '', state[1] or ''}
