-- Number of live leases (expiry after now). Read-only.
-- KEYS[1]  slots sorted set (see slots_acquire.lua)
return redis.call('ZCOUNT', KEYS[1], '(' .. score_str(now_us()), '+inf')
