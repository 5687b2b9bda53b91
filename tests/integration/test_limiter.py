"""Per-trunk gates against a real Redis, with real worker processes where it matters."""

from __future__ import annotations

import itertools
import multiprocessing
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from dialer.embedded_redis import EmbeddedRedis
from dialer.keys import Keys
from dialer.limiter import CircuitBreaker, ConcurrencySlots, InviteGate, RedisPacer
from dialer.pacing import most_in_window

KEYS = Keys()
TRUNK = "trunk-a"
SPAWN = multiprocessing.get_context("spawn")


def run_workers(target: Callable[..., None], count: int, *args: object) -> None:
    procs = [SPAWN.Process(target=target, args=(n, *args)) for n in range(count)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=30)
    assert all(proc.exitcode == 0 for proc in procs), [proc.exitcode for proc in procs]


# -- workers (module level so a spawned process can import them) ---------------------------------


def pacing_worker(n: int, url: str, rate: float, start_at: float, end_at: float) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    pacer = RedisPacer(client, KEYS, TRUNK, rate)
    while time.time() < start_at:
        time.sleep(0.001)
    while (left := end_at - time.time()) > 0:
        if pacer.acquire(left):
            local = time.time()
            client.rpush("test:admitted", f"{pacer.last_admitted_at!r} {local!r} {n}")


def slots_worker(n: int, url: str, limit: int, start_at: float, end_at: float) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    slots = ConcurrencySlots(client, KEYS, TRUNK, limit)
    rng = random.Random(n)
    while time.time() < start_at:
        time.sleep(0.001)
    i = 0
    while time.time() < end_at:
        i += 1
        member = f"w{n}-{i}:1"
        if not slots.acquire(member, 30):
            time.sleep(rng.uniform(0, 0.003))
            continue
        holders = client.incr("test:holders")
        client.rpush("test:holders_seen", holders)
        client.rpush("test:in_use_seen", slots.in_use())
        time.sleep(rng.uniform(0, 0.02))
        client.decr("test:holders")
        assert slots.release(member)


# -- pacing --------------------------------------------------------------------------------------


def test_two_processes_never_exceed_calls_per_second(
    r: redis.Redis, redis_url: str, record_property: Callable[[str, object], None]
) -> None:
    rate, seconds = 20.0, 3.0
    start_at = time.time() + 1.5  # both spawned processes are importing by then
    end_at = start_at + seconds
    run_workers(pacing_worker, 2, redis_url, rate, start_at, end_at)

    rows = [line.split() for line in r.lrange("test:admitted", 0, -1)]
    server = [float(row[0]) for row in rows]
    local = [float(row[1]) for row in rows]
    by_worker = {row[2]: sum(1 for other in rows if other[2] == row[2]) for row in rows}
    expected = rate * seconds
    figures = {
        "admitted": len(rows),
        "expected": expected,
        "by_worker": by_worker,
        "max_server_1s": most_in_window(server),
        "max_local_1s": most_in_window(local),
    }
    record_property("pacing", figures)
    print(figures)
    assert most_in_window(server) <= rate, figures  # as admitted by the script (Redis TIME)
    assert len(rows) >= 0.95 * expected, figures
    assert len(by_worker) == 2, figures  # both processes got turns
    # What a trunk would see: local stamps add only the reply's jitter on top.
    assert most_in_window(local) <= rate + 1, figures


def test_try_acquire_stores_the_tat_and_reports_the_exact_wait(r: redis.Redis) -> None:
    pacer = RedisPacer(r, KEYS, TRUNK, 4)
    assert pacer.try_acquire() == 0.0
    first = pacer.last_admitted_at
    assert first is not None
    tat = int(r.hget(KEYS.pacing(TRUNK), "tat"))  # type: ignore[arg-type]
    assert tat == round(first * 1_000_000) + 250_000
    wait = pacer.try_acquire()
    assert 0.2 < wait <= 0.25
    assert int(r.hget(KEYS.pacing(TRUNK), "tat")) == tat  # type: ignore[arg-type]
    assert 0 < r.pttl(KEYS.pacing(TRUNK)) <= 1250


def test_headroom_spaces_turns_that_share_further_apart(r: redis.Redis) -> None:
    # 4 calls/s with 10 % headroom: turns 1 / 3.6 s apart, not 1 / 4 s.
    pacer = RedisPacer(r, KEYS, TRUNK, 4, headroom=0.1)
    assert pacer.try_acquire() == 0.0
    first = pacer.last_admitted_at
    assert first is not None
    tat = int(r.hget(KEYS.pacing(TRUNK), "tat"))  # type: ignore[arg-type]
    assert tat == round(first * 1_000_000) + 277_778
    with pytest.raises(ValueError, match="headroom"):
        RedisPacer(r, KEYS, TRUNK, 4, headroom=1.0)


def test_waiters_reserve_the_next_turns_in_line_at_exact_intervals(r: redis.Redis) -> None:
    slept: list[float] = []
    pacer = RedisPacer(r, KEYS, TRUNK, 10, reserve_ahead_s=1.0, sleep=slept.append)
    slots = []
    for _ in range(10):  # the sleeps are not slept: every turn is reserved ahead, in line
        assert pacer.acquire(5.0)
        assert pacer.last_admitted_at is not None
        slots.append(round(pacer.last_admitted_at * 1_000_000))
    assert [b - a for a, b in itertools.pairwise(slots)] == [100_000] * 9
    assert slept[0] > 0.05 or len(slept) == 9  # the first turn was due at once (no sleep)
    assert all(abs(w - 0.1 * k) < 0.05 for k, w in enumerate(slept[-9:], start=1)), slept
    tat = int(r.hget(KEYS.pacing(TRUNK), "tat"))  # type: ignore[arg-type]
    assert tat == slots[-1] + 100_000
    # A plain try_acquire never reserves: the next turn is a second away.
    assert 0.8 < pacer.try_acquire() <= 1.0
    assert int(r.hget(KEYS.pacing(TRUNK), "tat")) == tat  # type: ignore[arg-type]


def test_a_turn_woken_for_too_late_is_let_go_and_the_next_one_taken(r: redis.Redis) -> None:
    """Sending a call 20 ms after its turn would put it 30 ms from the next at 20 calls/s."""
    clock = [1000.0]
    oversleep = [0.020, 0.0]  # the first wake-up is late, the second on time

    def sleep(seconds: float) -> None:
        clock[0] += seconds + (oversleep.pop(0) if oversleep else 0.0)

    pacer = RedisPacer(
        r, KEYS, TRUNK, 20, max_late_s=0.005, sleep=sleep, monotonic=lambda: clock[0]
    )
    assert pacer.acquire(5.0)  # due at once: no sleep, not late
    first = pacer.last_admitted_at
    assert pacer.acquire(5.0)  # its turn (+50 ms) woken 20 ms late: skipped; the next one taken
    assert pacer.late_turns == 1
    assert first is not None and pacer.last_admitted_at is not None
    assert round((pacer.last_admitted_at - first) * 1000) == 100, "the turn after the missed one"


def test_a_reservation_never_reaches_past_the_deadline(r: redis.Redis) -> None:
    slept: list[float] = []
    pacer = RedisPacer(r, KEYS, TRUNK, 10, reserve_ahead_s=1.0, sleep=slept.append)
    assert pacer.acquire(1.0)
    tat = r.hget(KEYS.pacing(TRUNK), "tat")
    assert not pacer.acquire(0.05)  # the next turn is ~0.1 s away: out of reach, not taken
    assert r.hget(KEYS.pacing(TRUNK), "tat") == tat
    assert slept == []


def test_acquire_gives_up_when_the_turn_is_past_the_deadline(r: redis.Redis) -> None:
    pacer = RedisPacer(r, KEYS, TRUNK, 0.5)  # one call every 2 s
    assert pacer.acquire(0.1)
    started = time.monotonic()
    assert not pacer.acquire(0.5)
    assert time.monotonic() - started < 0.1, "must not sleep when the turn cannot come in time"


def test_backoff_reduces_the_rate_and_it_recovers(r: redis.Redis) -> None:
    slow = RedisPacer(r, KEYS, TRUNK, 20, recovery_half_life_s=600, backoff_cooldown_s=0)
    assert slow.multiplier() == 1.0
    assert slow.backoff(0.5) == 0.5
    assert slow.current_rate() == pytest.approx(10, rel=1e-3)
    started = time.monotonic()
    admitted = 0
    while (left := 1.0 - (time.monotonic() - started)) > 0:
        admitted += slow.acquire(left)
    assert 9 <= admitted <= 11  # 10/s instead of 20/s

    assert slow.backoff(0.5) == pytest.approx(0.25, rel=3e-3)  # 1 s of recovery
    for _ in range(10):
        slow.backoff(0.5)
    assert slow.multiplier() == pytest.approx(0.1, rel=1e-3), "the floor keeps pacing from stopping"

    quick = RedisPacer(r, KEYS, "trunk-b", 20, recovery_half_life_s=0.2)
    assert quick.backoff(0.5) == 0.5
    same_episode = quick.backoff(0.5)  # within the cooldown: only recovery since the first
    assert same_episode == pytest.approx(0.5, abs=0.01), "a throttle soon after did compound"
    time.sleep(0.2)
    assert 0.65 <= quick.multiplier() <= 0.85  # about half the gap closed after one half-life
    time.sleep(1.8)  # ten half-lives: back to full rate
    assert quick.multiplier() == 1.0
    assert quick.try_acquire() == 0.0
    assert r.hkeys(KEYS.pacing("trunk-b")) == ["tat"], "a recovered back-off is cleaned up"


# -- concurrency slots ---------------------------------------------------------------------------


# -- the invite gate (turn + slot) --------------------------------------------------------------


def gate(r: redis.Redis, rate: float, limit: int, **pacer: object) -> InviteGate:
    return InviteGate(
        RedisPacer(r, KEYS, TRUNK, rate, **pacer),  # type: ignore[arg-type]
        ConcurrencySlots(r, KEYS, TRUNK, limit),
    )


def evalsha_calls(r: redis.Redis) -> int:
    stats = r.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0


def test_a_turn_due_now_takes_the_slot_and_records_the_stage_in_one_step(r: redis.Redis) -> None:
    g = gate(r, 10, 2)
    r.script_load(g._script.script)  # loaded, as after the first call of a process
    r.hset("job", "dial_stage", "room_created")
    before = evalsha_calls(r)
    assert g.take("c:1", 60, 5.0, job_key="job", stage="sip_requested") == "held"
    assert evalsha_calls(r) - before == 1, "one script call: turn, slot and stage together"
    assert r.hget("job", "dial_stage") == "sip_requested"
    assert g.slots.in_use() == 1 and g.pacer.last_admitted_at is not None


def test_a_turn_reserved_ahead_is_slept_for_then_the_slot_taken(r: redis.Redis) -> None:
    slept: list[float] = []
    g = gate(r, 10, 5, sleep=slept.append)
    r.script_load(g._script.script)
    assert g.take("c:1", 60, 5.0, job_key="job", stage="s") == "held"
    first = g.pacer.last_admitted_at
    r.hdel("job", "dial_stage")
    slots_before = g.slots.in_use()
    assert g.take("c:2", 60, 5.0, job_key="job", stage="sip_requested") == "held"
    assert first is not None and g.pacer.last_admitted_at is not None
    assert round((g.pacer.last_admitted_at - first) * 1000) == 100, "the next turn, in line"
    assert len(slept) == 1 and 0.05 < slept[0] <= 0.1, "slept until the reserved turn"
    assert slots_before == 1 and g.slots.in_use() == 2
    assert r.hget("job", "dial_stage") == "sip_requested"


def test_waiting_for_a_reserved_turn_holds_no_slot(r: redis.Redis) -> None:
    """With a tight cap, waiters must not sit on slots the ringing calls need."""
    seen: list[int] = []
    g = gate(r, 10, 5)
    g.pacer._sleep = lambda _s: seen.append(g.slots.in_use())  # type: ignore[method-assign]
    assert g.take("c:1", 60, 5.0, job_key="job", stage="s") == "held"
    assert g.take("c:2", 60, 5.0, job_key="job", stage="s") == "held"
    assert seen == [1], "while c:2 slept for its turn only c:1 held a slot"


def test_a_late_wake_up_takes_the_next_turn_and_one_slot(r: redis.Redis) -> None:
    clock = [1000.0]
    oversleep = [0.020, 0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds + (oversleep.pop(0) if oversleep else 0.0)

    g = gate(r, 20, 5, sleep=sleep, monotonic=lambda: clock[0], max_late_s=0.005)
    assert g.take("c:1", 60, 5.0, job_key="job", stage="s") == "held"
    first = g.pacer.last_admitted_at
    assert g.take("c:2", 60, 5.0, job_key="job", stage="s") == "held"
    assert g.pacer.late_turns == 1 and first is not None and g.pacer.last_admitted_at is not None
    assert round((g.pacer.last_admitted_at - first) * 1000) == 100, "the turn after the missed one"
    assert g.slots.in_use() == 2, "one slot per call"


def test_a_slot_that_comes_too_late_for_its_turn_keeps_the_slot_for_the_next_turn(
    r: redis.Redis,
) -> None:
    clock = [1000.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    g = gate(r, 20, 5, sleep=sleep, monotonic=lambda: clock[0], max_late_s=0.005)
    assert g.take("c:1", 60, 5.0, job_key="job", stage="s") == "held"
    first = g.pacer.last_admitted_at
    slow_slot = g.slots.acquire
    taken: list[str] = []

    def slot_after_20_ms(member: str, lease_s: float, **kw: str) -> bool:
        clock[0] += 0.020  # the slot's round trip is slow: the turn (due at once) is missed
        taken.append(member)
        return slow_slot(member, lease_s, **kw)

    g.slots.acquire = slot_after_20_ms  # type: ignore[method-assign]
    assert g.take("c:2", 60, 5.0, job_key="job", stage="s") == "held"
    assert taken == ["c:2"], "the slot is taken once and kept"
    assert g.pacer.late_turns == 1 and first is not None and g.pacer.last_admitted_at is not None
    assert round((g.pacer.last_admitted_at - first) * 1000) == 100, "the turn after the missed one"


def test_no_free_slot_and_no_turn_in_time_are_told_apart(r: redis.Redis) -> None:
    g = gate(r, 1000, 1)
    assert g.take("c:1", 60, 5.0, job_key="job", stage="s") == "held"
    r.hdel("job", "dial_stage")
    assert g.take("c:2", 60, 5.0, job_key="job", stage="s") == "no_slot"
    assert r.hget("job", "dial_stage") is None, "no stage without a slot"
    slow = gate(r, 0.5, 5)  # one call every 2 s, on the same trunk key
    r.delete(KEYS.pacing(TRUNK))
    assert slow.take("c:3", 60, 5.0, job_key="job", stage="s") == "held"
    assert slow.take("c:4", 60, 0.5, job_key="job", stage="s") == "no_turn"
    assert slow.slots.in_use() == 2, "c:1 and c:3; the turn out of reach took no slot"


def test_several_processes_never_hold_more_than_the_limit(r: redis.Redis, redis_url: str) -> None:
    limit = 3
    start_at = time.time() + 1.5
    run_workers(slots_worker, 4, redis_url, limit, start_at, start_at + 2.0)
    holders = [int(v) for v in r.lrange("test:holders_seen", 0, -1)]
    in_use = [int(v) for v in r.lrange("test:in_use_seen", 0, -1)]
    print({"acquisitions": len(holders), "max_holders": max(holders), "max_in_use": max(in_use)})
    assert max(holders) <= limit and max(in_use) <= limit
    assert max(holders) == limit, "the test never reached the limit: it proves nothing"
    assert len(holders) > 100
    assert ConcurrencySlots(r, KEYS, TRUNK, limit).in_use() == 0


def test_expired_leases_free_their_slot_and_are_reaped_once(r: redis.Redis) -> None:
    slots = ConcurrencySlots(r, KEYS, TRUNK, 1)
    assert slots.acquire("crashed:1", 0.2)
    assert not slots.acquire("next:1", 60)
    time.sleep(0.25)
    assert slots.in_use() == 0
    assert slots.acquire("next:1", 60), "an expired lease must not hold the slot"
    assert not slots.extend("crashed:1", 60), "an expired lease is not revived"
    assert slots.reap_expired() == ["crashed:1"]
    assert slots.reap_expired() == []
    assert slots.in_use() == 1


def test_reacquire_is_idempotent_and_extends(r: redis.Redis) -> None:
    slots = ConcurrencySlots(r, KEYS, TRUNK, 1)
    key = KEYS.slots(TRUNK)
    assert slots.acquire("job:1", 10)
    first = r.zscore(key, "job:1")
    assert slots.acquire("job:1", 20), "the holder asking again keeps its slot"
    second = r.zscore(key, "job:1")
    assert first is not None and second is not None and second > first + 9
    assert slots.acquire("job:1", 1) and r.zscore(key, "job:1") == second, "never shortened"
    assert slots.in_use() == 1
    assert slots.extend("job:1", 100)
    assert r.zscore(key, "job:1") > second  # type: ignore[operator]
    assert not slots.extend("other:1", 100)
    assert not slots.release("unknown:1")
    assert slots.release("job:1")
    assert not slots.release("job:1")
    assert slots.in_use() == 0


def test_slots_work_with_a_client_that_does_not_decode(redis_url: str, r: redis.Redis) -> None:
    raw = redis.Redis.from_url(redis_url)
    try:
        slots = ConcurrencySlots(raw, KEYS, TRUNK, 2)
        assert slots.acquire("a:1", 0.01)
        time.sleep(0.02)
        assert slots.reap_expired() == ["a:1"]
        breaker = CircuitBreaker(raw, KEYS, TRUNK)
        breaker.record(False)
        assert breaker.status().samples == 1
        assert RedisPacer(raw, KEYS, TRUNK, 5).backoff() == 0.5
    finally:
        raw.close()


# -- circuit breaker -----------------------------------------------------------------------------


def test_breaker_opens_on_a_throttle_spike_then_half_opens_and_closes(r: redis.Redis) -> None:
    breaker = CircuitBreaker(r, KEYS, TRUNK, window=10, threshold=0.5, pause_s=0.3)
    for _ in range(4):
        assert breaker.record(True) == 0.0  # 4 samples: fewer than half a window
    assert breaker.status().state == "closed"
    paused = breaker.record(True)
    assert 0.29 < paused <= 0.3
    assert breaker.status().state == "open"
    assert 0 < breaker.paused_for() <= 0.3
    assert breaker.record(False) > 0, "outcomes of calls placed before the pause are ignored"

    time.sleep(0.31)
    assert breaker.paused_for() == 0.0
    assert breaker.status().state == "half_open"
    assert breaker.record(True) > 0.29, "half-open: one throttle opens it again"
    time.sleep(0.31)
    assert breaker.record(False) == 0.0
    status = breaker.status()
    assert (status.state, status.samples, status.throttled) == ("closed", 1, 0)


def test_breaker_judges_a_sliding_window(r: redis.Redis) -> None:
    breaker = CircuitBreaker(r, KEYS, TRUNK, window=10, threshold=0.5, pause_s=60)
    for throttled in [False] * 6 + [True] * 4:
        assert breaker.record(throttled) == 0.0  # 4 of 10
    assert breaker.status().throttled == 4
    assert breaker.record(True) > 59  # the oldest ok falls out: 5 of 10
    assert breaker.status().state == "open"


def test_operator_pause_and_resume(r: redis.Redis) -> None:
    breaker = CircuitBreaker(r, KEYS, TRUNK, window=10)
    breaker.record(True)
    breaker.pause(5)
    assert 4.9 < breaker.paused_for() <= 5
    assert breaker.status().state == "open"
    breaker.resume()
    assert breaker.paused_for() == 0.0
    status = breaker.status()
    assert (status.state, status.samples) == ("closed", 0)
    breaker.pause(0.05)
    time.sleep(0.06)
    assert breaker.status().state == "closed", "an operator pause is not a trip"
    with pytest.raises(ValueError):
        breaker.pause(0)


def test_breaker_history_expires(r: redis.Redis) -> None:
    breaker = CircuitBreaker(r, KEYS, TRUNK, window=10, memory_s=0.1)
    breaker.record(True)
    assert 0 < r.pttl(KEYS.breaker(TRUNK)) <= 100


# -- scripts survive SCRIPT FLUSH and a Redis restart -------------------------------------------


def exercise(client: redis.Redis, trunk: str) -> None:
    pacer = RedisPacer(client, KEYS, trunk, 1000)
    slots = ConcurrencySlots(client, KEYS, trunk, 5)
    breaker = CircuitBreaker(client, KEYS, trunk)
    for step in range(2):
        assert pacer.acquire(1)
        pacer.backoff(0.9)
        assert pacer.multiplier() < 1
        assert slots.acquire(f"c:{step}", 60) and slots.extend(f"c:{step}", 60)
        assert slots.in_use() == step + 1 and slots.reap_expired() == []
        breaker.record(False)
        breaker.pause(1)
        assert breaker.paused_for() > 0
        breaker.resume()
        if step == 0:
            client.script_flush()


def test_scripts_reload_after_script_flush(r: redis.Redis) -> None:
    exercise(r, TRUNK)


def test_scripts_work_across_a_redis_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, appendonly=True).start()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        pacer = RedisPacer(client, KEYS, TRUNK, 1000)
        slots = ConcurrencySlots(client, KEYS, TRUNK, 2)
        invite = InviteGate(pacer, slots)
        assert pacer.acquire(1) and slots.acquire("c:1", 60)
        server.restart()  # script cache gone; the data survives through the AOF
        assert pacer.acquire(1)
        assert invite.take("c:0", 60, 1.0, job_key="job", stage="s") == "held"
        assert slots.release("c:0")
        assert slots.in_use() == 1 and slots.acquire("c:2", 60) and not slots.acquire("c:3", 60)
        client.close()
    finally:
        server.stop()
