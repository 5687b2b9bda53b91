"""The dial path across real processes (issue 2): Celery worker subprocesses and a beat on an
embedded Redis (`dialer.local_stack.LocalStack`, the production command line), the LiveKit
stand-in in this process (real Twirp protocol, real `livekit-api` client in the workers).

There is no voice agent here. A simulated agent (the stand-in's `on_answer` hook) holds each
answered call briefly, hangs up through the stand-in and publishes a ResultMessage (agent_result,
completed) on the results queue, as the agent would, so the results consumer frees the slot and
ends the job.

Topology: the dial workers consume only the "dial" queue and one more worker consumes the rest,
the split DESIGN section 4 asks for ("dial tasks routed to their own queue"), as recommended in
docs/OPERATIONS.md. (`bench/pacing.py` runs the `dialer worker` default, every queue on every
worker, results drained first.)

Redelivery after SIGKILL: Celery's Redis transport hands a dead worker's unacknowledged message
out again once it is older than `visibility_timeout`; DIALER_VISIBILITY_TIMEOUT_S (read by
celeryconfig) makes that 3 s here instead of an hour.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from dialer.client import Dialer
from dialer.keys import Keys
from dialer.livekit_standin import AnsweredCall, LiveKitStandIn
from dialer.local_stack import KOMBU_UNACKED_INDEX, KOMBU_UNACKED_KEY, LocalStack, point_app_at
from dialer.models import JobState, Status
from dialer.pacing import most_in_window
from dialer.runtime import Runtime
from dialer.settings import Settings
from tests.support.livekit import publish_completed

TRUNK = "ST_test_trunk"
ALWAYS_OPEN = {
    day: [{"start": "00:00", "end": "24:00"}]
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
}
REST_QUEUES = "intake,results,webhooks,beat,default"
VISIBILITY_S = 3


def request(call_id: str, phone: str) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "candidate_name": "Test Candidate",
        "job_title": "Warehouse Operator",
        "knockout_questions": [{"id": "q1", "text": "Mag je in Belgie werken?"}],
        "open_questions": [],
        "phone_number": phone,
        "timezone": "Europe/Brussels",
        "calling_window": ALWAYS_OPEN,
    }


class SimulatedAgent:
    """on_answer hook: hold, hang up, publish agent_result/completed (off the stand-in's loop)."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.standin: LiveKitStandIn | None = None
        self.errors: list[BaseException] = []
        self._pool = ThreadPoolExecutor(max_workers=1)

    async def __call__(self, call: AnsweredCall) -> None:
        await asyncio.sleep(self.hold_s)
        assert self.standin is not None
        self.standin.hang_up(call.room_name)
        self._pool.submit(self._publish, call)

    def _publish(self, call: AnsweredCall) -> None:
        try:
            publish_completed(call)
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@pytest.fixture()
def agent() -> Iterator[SimulatedAgent]:
    simulated = SimulatedAgent(hold_s=0.3)
    yield simulated
    simulated.close()


def stand_in(agent: SimulatedAgent, scenarios: dict[str, Any], **knobs: Any) -> LiveKitStandIn:
    standin = LiveKitStandIn(scenarios, on_answer=agent, **knobs)
    agent.standin = standin
    return standin.start()


def make_stack(tmp_path: Path, standin: LiveKitStandIn, **env: str) -> LocalStack:
    stack = LocalStack(
        tmp_path / "stack",
        workers=0,  # started below, per queue
        concurrency=4,
        redis_appendonly=False,
        env_overrides={
            "LIVEKIT_URL": standin.url,
            "LIVEKIT_API_KEY": standin.api_key,
            "LIVEKIT_API_SECRET": standin.api_secret,
            "LIVEKIT_SIP_OUTBOUND_TRUNK_ID": TRUNK,
            "DIALER_SPOOL_DIR": str(tmp_path / "spool"),
            **env,
        },
    )
    return stack.start()


def runtime_for(stack: LocalStack) -> Runtime:
    assert stack.redis_url
    point_app_at(stack.redis_url)  # the simulated agent publishes through this process's app
    return Runtime.for_url(stack.redis_url, Settings())


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def logs_of(stack: LocalStack) -> str:
    return "\n".join(
        c.log_path.read_text(errors="replace") for c in stack.children if c.log_path.exists()
    )


def submit_and_wait_until_done(stack: LocalStack, jobs: int) -> tuple[Runtime, list[str]]:
    """Once the workers are ready: submit `jobs` jobs and wait until every one has ended."""
    stack.wait_ready(timeout=60)
    rt = runtime_for(stack)
    dialer = Dialer(rt)
    ids = [dialer.submit(request(f"job-{n:02d}", f"+3247000{n:04d}")) for n in range(jobs)]
    wait_for(
        lambda: rt.store.count_by_state().get(JobState.DONE.value, 0) == jobs,
        timeout=45,
        what=f"all {jobs} jobs to end",
    )
    return rt, ids


def run_jobs(
    tmp_path: Path, agent: SimulatedAgent, *, limit: int, cap: int, jobs: int
) -> tuple[LiveKitStandIn, LocalStack, Runtime, list[str]]:
    """Two dial workers (plus one for the other queues) dial `jobs` jobs until all have ended.
    The caller stops the stack and the stand-in."""
    standin = stand_in(agent, {}, ring_seconds=0.2)
    stack = make_stack(
        tmp_path,
        standin,
        DIALER_CALLS_PER_SECOND=str(limit),
        DIALER_MAX_CONCURRENT_CALLS=str(cap),
    )
    try:
        stack.start_worker(0, queues="dial")
        stack.start_worker(1, queues="dial")
        stack.start_worker(2, queues=REST_QUEUES)
        rt, ids = submit_and_wait_until_done(stack, jobs)
    except BaseException:
        stack.stop()
        standin.stop()
        raise
    return standin, stack, rt, ids


def check_one_dial_per_job_and_all_completed(
    standin: LiveKitStandIn, rt: Runtime, ids: list[str]
) -> None:
    dials = standin.dials
    assert sorted(d.room_name for d in dials) == sorted(f"screening-{i}-1" for i in ids), (
        "not exactly one dial per job"
    )
    for call_id in ids:
        assert rt.store.get(call_id).final_status is Status.COMPLETED


def check_every_job_ended_with_one_dial(
    standin: LiveKitStandIn, stack: LocalStack, rt: Runtime, ids: list[str]
) -> None:
    check_one_dial_per_job_and_all_completed(standin, rt, ids)
    dial_workers = [c for c in stack.children if c.name.startswith(("worker-0-", "worker-1-"))]
    assert len(dial_workers) == 2
    dial_logs = [c.log_path.read_text(errors="replace") for c in dial_workers]
    assert all(": answered" in text for text in dial_logs), "one of the dial workers never dialed"


def test_a_dial_worker_with_a_thread_pool_rings_many_calls_at_once(
    tmp_path: Path, agent: SimulatedAgent
) -> None:
    """`dialer worker --queues dial --pool threads -c 8`: one process, eight dials waiting for
    their answer side by side (a prefork worker needs a process per ringing call)."""
    jobs = 16
    standin = stand_in(agent, {}, default_scenario="slow", slow_seconds=1.0)
    stack = make_stack(
        tmp_path, standin, DIALER_CALLS_PER_SECOND="50", DIALER_MAX_CONCURRENT_CALLS="16"
    )
    try:
        stack.start_worker(0, queues="dial", pool="threads", concurrency=8)
        stack.start_worker(1, queues=REST_QUEUES)
        rt, ids = submit_and_wait_until_done(stack, jobs)
        assert not agent.errors
        check_one_dial_per_job_and_all_completed(standin, rt, ids)
        assert standin.max_concurrent >= 6, "the threads did not ring calls side by side"
    finally:
        stack.stop()
        standin.stop()


def test_concurrency_cap_is_never_exceeded_with_two_worker_processes_and_every_job_ends(
    tmp_path: Path, agent: SimulatedAgent
) -> None:
    # 3 slots for calls held 0.3 s at up to 10 calls/s: the cap binds, jobs are handed back
    # and dialed later, and no more than 3 calls are ever in progress at the "trunk".
    limit, cap, jobs = 10, 3, 30
    standin, stack, rt, ids = run_jobs(tmp_path, agent, limit=limit, cap=cap, jobs=jobs)
    try:
        assert not agent.errors
        check_every_job_ended_with_one_dial(standin, stack, rt, ids)
        assert standin.max_concurrent <= cap, "more calls in progress than the concurrency cap"
        assert standin.max_concurrent == cap, "the test should make the cap bind"
        assert most_in_window([d.monotonic for d in standin.dials]) <= limit
    finally:
        stack.stop()
        standin.stop()


def test_calls_per_second_limit_holds_at_the_trunk_with_two_worker_processes(
    tmp_path: Path, agent: SimulatedAgent
) -> None:
    # The cap is out of the way, so both dial workers wait on the shared pacer: a backlog, the
    # pacer saturated, calls spaced exactly 1/limit apart at the pacer.
    limit, cap, jobs = 10, 10, 40
    standin, stack, rt, ids = run_jobs(tmp_path, agent, limit=limit, cap=cap, jobs=jobs)
    try:
        assert not agent.errors
        check_every_job_ended_with_one_dial(standin, stack, rt, ids)
        times = sorted(d.monotonic for d in standin.dials)
        assert standin.max_concurrent <= cap
        # The limit was reached (40 calls at 10/s take just under 4 s), and never exceeded in
        # any sliding 1 s window at the trunk.
        assert (jobs - 1) / (times[-1] - times[0]) >= 0.95 * limit
        tightest = min(times[i + limit] - times[i] for i in range(len(times) - limit))
        assert most_in_window(times) <= limit, (
            f"{limit + 1} calls reached the trunk within {tightest * 1000:.1f} ms"
        )
    finally:
        stack.stop()
        standin.stop()


def test_worker_killed_mid_dial_and_message_redelivered_dials_once(
    tmp_path: Path, agent: SimulatedAgent
) -> None:
    number = "+32470009999"
    # `slow`: the stand-in has sent the INVITE (the dial is recorded, the participant is in the
    # room, ringing) and answers after 15 s; the worker is inside CreateSIPParticipant meanwhile.
    standin = stand_in(agent, {number: "slow"}, slow_seconds=15.0)
    stack = make_stack(tmp_path, standin, DIALER_VISIBILITY_TIMEOUT_S=str(VISIBILITY_S))
    try:
        first = stack.start_worker(0, queues="dial")
        stack.start_worker(1, queues=REST_QUEUES)
        stack.wait_ready(timeout=60)
        rt = runtime_for(stack)
        call_id = Dialer(rt).submit(request("crash-1", number))
        room = f"screening-{call_id}-1"

        wait_for(lambda: any(d.room_name == room for d in standin.dials), 20, "the INVITE")
        job = rt.store.get(call_id)
        assert job.state is JobState.DIALING and job.dial_stage == "sip_requested"
        owner = job.raw["dial_owner"]  # the Celery task id: the same on redelivery

        first.kill()  # SIGKILL the worker's process group, mid CreateSIPParticipant
        assert not first.alive()
        client = stack.client()
        assert client.hlen(KOMBU_UNACKED_KEY) == 1, "the dial message is left unacknowledged"

        # Kombu hands an unacknowledged message out again once it is older than the visibility
        # timeout, when a consumer sweeps: a starting worker sweeps at once (a running one only
        # every 100 s by default). So the replacement starts once the message is old enough.
        delivered_at = float(client.zrange(KOMBU_UNACKED_INDEX, 0, 0, withscores=True)[0][1])
        time.sleep(max(0.0, delivered_at + VISIBILITY_S + 0.5 - time.time()))
        replacement = stack.start_worker(2, queues="dial")
        # It finds its own attempt lock (same task id) at stage sip_requested, asks LiveKit
        # whether the call is there, and does not dial again.
        wait_for(
            lambda: f"place_call[{owner}] received" in replacement.log_path.read_text(),
            timeout=30,
            what="the dial message to be redelivered to the replacement worker",
        )
        wait_for(lambda: not client.hlen(KOMBU_UNACKED_KEY), 20, "the redelivered dial to finish")
        wait_for(
            lambda: rt.store.get(call_id).state in (JobState.DONE, JobState.RETRY_SCHEDULED),
            timeout=30,
            what="the job to end",
        )
        time.sleep(0.5)  # room for a (wrong) second dial to show up

        sip_requests = [
            r
            for r in standin.requests_for("CreateSIPParticipant")
            if f"room_name={room}" in r.summary
        ]
        assert len(sip_requests) == 1, "the attempt was dialed more than once"
        assert [d.room_name for d in standin.dials] == [room]
        assert not agent.errors
        job = rt.store.get(call_id)
        if job.state is JobState.DONE:
            assert job.final_status is Status.COMPLETED
            assert [a.outcome for a in rt.store.attempts(call_id)] == ["completed"]
        else:  # reported as interrupted, to be retried: never silently lost
            assert [a.outcome for a in rt.store.attempts(call_id)] == ["interrupted"]
        assert f"dial {call_id} attempt 1: in_call" in logs_of(stack), (
            "the redelivered dial should have found the live call and not dialed again"
        )
        assert not client.llen(Keys().dead_letters)
    finally:
        stack.stop()
        standin.stop()
