-- A pacing turn and, when the turn is due now, the concurrency slot in the same step
-- (dialer.limiter.InviteGate): the common case of a dial costs one round trip instead of two.
-- A turn reserved ahead gets its slot only once it comes (dialer/limiter.py says why).
-- KEYS[1] pacing hash  KEYS[2] slots sorted set  KEYS[3] job hash (its dial_stage is written
-- once the slot is held)
-- ARGV[1..4] as pacer_acquire.lua; ARGV[5] member  ARGV[6] lease (us)  ARGV[7] slot limit
-- ARGV[8] the dial stage to record
-- Returns {wait_us, now_us, taken, slot}: with a turn due now, slot is 1 (held) or 0 (every
-- slot taken: the turn is lost); otherwise slot is -1 (not tried).
local now = now_us()
local turn = pacer_take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]) or 0, now)
if turn[3] == 1 and turn[1] == 0 then
  turn[4] = slot_take(KEYS[2], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), KEYS[3], ARGV[8],
    now)
else
  turn[4] = -1
end
return turn
