-- Job-state helpers shared by the job scripts (see dialer.store), prepended after the prelude.
-- A job is one hash per call_id; its state is also kept in one index set per state
-- (<prefix>:state:<state>), a final job in one set per status (<prefix>:status:<status>), and a
-- job waiting for a dial in the due-set (sorted set, score = epoch seconds).

-- "a b c" -> {a = true, b = true, c = true}
local function word_set(text)
  local set = {}
  for word in string.gmatch(text, '%S+') do
    set[word] = true
  end
  return set
end

-- Check and apply one state change; mirrors dialer.store.JobStore.transition.
-- t: job, due, attempts (keys); call_id, to, sources (word set), expect ('' = any attempt),
--    prefix, due_score ('' = none), next_at, clear_due ('1'), record ('' = none),
--    final_status ('' = none), fields (flat list of field, value)
-- Returns {'ok', previous state}, {'missing'} or {'refused', state, attempt, why}, why being
-- 'state' (not in an allowed state) or 'attempt' (on another attempt).
local function job_transition(t)
  local current = redis.call('HMGET', t.job, 'state', 'attempt')
  local state = current[1]
  if not state then
    return {'missing'}
  end
  local attempt = current[2] or '0'
  if not t.sources[state] then
    return {'refused', state, attempt, 'state'}
  end
  if t.expect ~= '' and attempt ~= t.expect then
    return {'refused', state, attempt, 'attempt'}
  end
  redis.call('HSET', t.job, 'state', t.to, unpack(t.fields))
  if state ~= t.to then
    redis.call('SMOVE', t.prefix .. ':state:' .. state, t.prefix .. ':state:' .. t.to, t.call_id)
  end
  if t.due_score ~= '' then
    redis.call('ZADD', t.due, t.due_score, t.call_id)
    redis.call('HSET', t.job, 'next_at', t.next_at)
  elseif t.clear_due == '1' or t.to == 'dialing' or t.to == 'done' then
    redis.call('ZREM', t.due, t.call_id)
  end
  if t.record ~= '' then
    redis.call('RPUSH', t.attempts, t.record)
  end
  if t.to == 'done' and t.final_status ~= '' then
    redis.call('SADD', t.prefix .. ':status:' .. t.final_status, t.call_id)
  end
  return {'ok', state}
end
