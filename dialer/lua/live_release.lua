-- Drop a live marker if it is still the holder's (dialer.liveness).
-- KEYS[1] marker   ARGV[1] the holder's token
-- Returns 1 when dropped, 0 when it had lapsed or belongs to someone else.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
