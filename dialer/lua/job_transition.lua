-- One checked job state change (dialer.store.JobStore.transition).
-- KEYS[1] job hash   KEYS[2] due-set   KEYS[3] the job's attempt list
-- ARGV: call_id, to, allowed source states (space separated), expected attempt ('' = any),
--       key prefix, due score ('' = none), next_at, clear due ('1'), attempt record JSON ('' =
--       none), final status ('' = none), then field, value pairs to write.
-- Returns {'ok', previous state}, {'missing'} or {'refused', state, attempt, why}.
local fields = {}
for i = 11, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
return job_transition({
  job = KEYS[1], due = KEYS[2], attempts = KEYS[3],
  call_id = ARGV[1], to = ARGV[2], sources = word_set(ARGV[3]), expect = ARGV[4],
  prefix = ARGV[5], due_score = ARGV[6], next_at = ARGV[7], clear_due = ARGV[8],
  record = ARGV[9], final_status = ARGV[10], fields = fields,
})
