-- Record one dial outcome in a trunk's circuit breaker and decide whether it opens.
-- KEYS[1]  breaker hash: outcomes ('0' ok / '1' throttled, oldest first, at most `window`),
--          paused_until (us), tripped ('1': the pause came from the breaker, so once it ends
--          the breaker is half-open and the next outcome decides)
-- ARGV[1]  '1' throttled, '0' not
-- ARGV[2]  window
-- ARGV[3]  threshold: throttled share that opens the breaker
-- ARGV[4]  pause (us)
-- ARGV[5]  memory (us): the history is forgotten after this long without outcomes
-- Returns the pause remaining (us), 0 when closed.
local key = KEYS[1]
local throttled = ARGV[1] == '1'
local window = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local pause = tonumber(ARGV[4])
local memory_ms = math.ceil(tonumber(ARGV[5]) / 1000)
local now = now_us()

local state = redis.call('HMGET', key, 'outcomes', 'paused_until', 'tripped')
local paused_until = tonumber(state[2]) or 0
if now < paused_until then
  -- Open: these are calls placed before the pause; they say nothing the pause did not.
  return paused_until - now
end

local function open()
  redis.call('HSET', key, 'paused_until', int_str(now + pause), 'tripped', '1', 'outcomes', '')
  redis.call('PEXPIRE', key, math.ceil(pause / 1000) + memory_ms)
  return pause
end

if state[3] == '1' then
  -- Half-open: the first outcome after the pause decides.
  if throttled then
    return open()
  end
  redis.call('HDEL', key, 'paused_until', 'tripped')
  redis.call('HSET', key, 'outcomes', '0')
  redis.call('PEXPIRE', key, memory_ms)
  return 0
end

local outcomes = (state[1] or '') .. (throttled and '1' or '0')
if #outcomes > window then
  outcomes = string.sub(outcomes, -window)
end
local _, hits = string.gsub(outcomes, '1', '')
if #outcomes >= math.ceil(window / 2) and hits / #outcomes >= threshold then
  return open()
end
redis.call('HSET', key, 'outcomes', outcomes)
if state[2] then
  redis.call('HDEL', key, 'paused_until')
end
redis.call('PEXPIRE', key, memory_ms)
return 0
