-- Shared helpers, prepended to every limiter script by dialer.limiter (not run on its own).
-- Time is always Redis server time in integer microseconds, so worker clocks do not matter.
-- Numbers go back into Redis through string.format: Lua's default conversion keeps only
-- 14 significant digits, which would drop the microseconds of an epoch timestamp.

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function int_str(n)
  return string.format('%.0f', n)
end

local function num_str(n)
  return string.format('%.17g', n)
end

-- Epoch seconds with microseconds, for sorted-set scores a human can read.
local function score_str(us)
  return string.format('%.6f', us / 1000000)
end

-- dialer.pacing.recovered_multiplier, reading the stored fields (nil when never backed off).
local function current_multiplier(stored, stored_at, now, half_life)
  local mult = tonumber(stored)
  local at = tonumber(stored_at)
  if mult == nil or at == nil then
    return 1
  end
  local elapsed = now - at
  if elapsed > 0 then
    if half_life <= 0 then
      return 1
    end
    mult = 1 - (1 - mult) * (0.5 ^ (elapsed / half_life))
  end
  if mult >= 0.999 then
    return 1
  end
  return mult
end
