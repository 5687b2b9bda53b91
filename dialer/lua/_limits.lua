-- Pacing and concurrency-slot steps shared by the limiter scripts (dialer.limiter), prepended
-- after the prelude.

-- GCRA admission of one call; mirrors dialer.pacing.gcra in integer microseconds.
-- key: pacing hash (tat, mult, mult_at); base: emission interval at full rate (us); burst;
-- half_life: back-off recovery half-life (us); ahead: how far ahead a turn may be reserved (us).
-- Returns {wait_us, now_us, taken} (see pacer_acquire.lua).
local function pacer_take(key, base, burst, half_life, ahead, now)
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
end

-- Take (or confirm and extend) a concurrency slot; see slots_acquire.lua. With a job hash,
-- its dial_stage becomes `stage` once the slot is held. Returns 1 (held) or 0 (all taken).
local function slot_take(key, member, lease, limit, job, stage, now)
  local now_s = tonumber(score_str(now))
  local expiry = score_str(now + lease)
  local held = false
  local score = tonumber(redis.call('ZSCORE', key, member))
  if score ~= nil and score > now_s then
    if tonumber(expiry) > score then
      redis.call('ZADD', key, expiry, member)
    end
    held = true
  elseif redis.call('ZCOUNT', key, '(' .. score_str(now), '+inf') < limit then
    redis.call('ZADD', key, expiry, member)
    held = true
  end
  if not held then
    return 0
  end
  if job then
    redis.call('HSET', job, 'dial_stage', stage)
  end
  return 1
end
