-- Take a concurrency slot for one call attempt (slot_take in _limits.lua).
-- KEYS[1]  sorted set: member "{call_id}:{attempt}", score = lease expiry (epoch s, server time)
-- ARGV[1]  member
-- ARGV[2]  lease (us)
-- ARGV[3]  limit: live leases allowed at once
-- KEYS[2], ARGV[4]  optional: a job hash and the dial stage to write in it once the slot is
--          held (the dial path records "sip_requested" in the same step)
-- Returns 1 when the member holds a slot (newly, or already: then the lease is extended and
-- never shortened), 0 when every slot is taken.
-- Expired leases do not count against the limit but stay in the set for slots_reap.lua, which
-- hands them to the beat so it can report the lost attempt; deleting them here would hide it.
return slot_take(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), KEYS[2], ARGV[4],
  now_us())
