-- Keep a live marker alive while its holder works (dialer.liveness).
-- KEYS[1] marker   ARGV[1] the holder's token   ARGV[2] ttl (ms)
-- Returns 1 when refreshed, 0 when the marker lapsed or belongs to someone else.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
