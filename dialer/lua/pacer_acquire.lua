-- GCRA admission of one call for a trunk (pacer_take in _limits.lua).
-- KEYS[1]  pacing hash: tat (us), mult (back-off multiplier), mult_at (us, last back-off)
-- ARGV[1]  emission interval at full rate (us, integer)
-- ARGV[2]  burst (>= 1)
-- ARGV[3]  back-off recovery half-life (us)
-- ARGV[4]  how far ahead a turn may be reserved (us; 0: only a turn that is due now)
-- Returns {wait_us, now_us, taken}. taken = 1: the turn at now + wait_us is the caller's (the
-- TAT moved on; the caller sleeps wait_us, then sends). taken = 0: no turn within reach; the
-- next one is due in wait_us (nothing stored: a refusal costs nothing). Reserving ahead puts
-- waiters in line at exact intervals instead of racing to poll for each turn as it comes due.
return pacer_take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]) or 0, now_us())
