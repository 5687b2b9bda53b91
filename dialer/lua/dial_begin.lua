-- The dial gates that live in Redis, and the move to `dialing`, as one atomic step
-- (dialer.dialing.DialService.place_call). In the order of DESIGN section 5: the job is still
-- due for this attempt, not cancelled, not on the do-not-call list; then the gates the caller
-- worked out from the job (expired, campaign paused, outside the calling window: passed in as
-- the first one that failed); the trunk's circuit breaker; the attempt lock
-- (SET dial:{call_id}:{attempt} NX, owned by the Celery message id); the live marker of this
-- delivery; and the transition to `dialing` with the first dial stage.
-- KEYS[1] job hash   KEYS[2] due-set   KEYS[3] attempt list   KEYS[4] attempt lock
-- KEYS[5] live marker   KEYS[6] do-not-call set   KEYS[7] trunk breaker hash
-- ARGV[1] call_id  ARGV[2] attempt  ARGV[3] previous attempt  ARGV[4] owner (message id)
-- ARGV[5] live marker token  ARGV[6] live marker ttl (ms)  ARGV[7] lock ttl (s)
-- ARGV[8] phone (E.164)  ARGV[9] failed caller-side gate ('' | 'expired' | 'paused' | 'window')
-- ARGV[10] key prefix  ARGV[11..] field, value pairs written with the transition
-- Returns {'ok'}, {'missing'}, {'stale', state, attempt}, {'cancelled'}, {'dnc'}, {gate},
-- {'breaker', pause remaining (us)}, {'duplicate'} or {'in_progress'}.
local job = KEYS[1]
local current = redis.call('HMGET', job, 'state', 'attempt', 'cancel_requested')
if not current[1] then
  return {'missing'}
end
local state, attempt = current[1], current[2] or '0'
if (state ~= 'scheduled' and state ~= 'retry_scheduled') or attempt ~= ARGV[3] then
  return {'stale', state, attempt}
end
if current[3] == '1' then
  return {'cancelled'}
end
if redis.call('SISMEMBER', KEYS[6], ARGV[8]) == 1 then
  return {'dnc'}
end
if ARGV[9] ~= '' then
  return {ARGV[9]}
end
local paused_until = tonumber(redis.call('HGET', KEYS[7], 'paused_until'))
if paused_until ~= nil then
  local remaining = paused_until - now_us()
  if remaining > 0 then
    return {'breaker', int_str(remaining)}
  end
end
local owner = ARGV[4]
if not redis.call('SET', KEYS[4], owner, 'NX', 'EX', ARGV[7]) then
  if redis.call('GET', KEYS[4]) ~= owner then
    return {'duplicate'}
  end
end
if not redis.call('SET', KEYS[5], ARGV[5], 'NX', 'PX', ARGV[6]) then
  return {'in_progress'}
end
local fields = {}
for i = 11, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local moved = job_transition({
  job = job, due = KEYS[2], attempts = KEYS[3],
  call_id = ARGV[1], to = 'dialing', sources = word_set('scheduled retry_scheduled'),
  expect = ARGV[3], prefix = ARGV[10], due_score = '', next_at = '', clear_due = '1',
  record = '', final_status = '', fields = fields,
})
return {moved[1]}
