"""The resume hand-off end to end: attempt 1 ends `incomplete` with some answers, the real results
consumer records it, attempt 2 is placed by the real DialService (livekit-api against the LiveKit
stand-in), and the dispatch metadata the stand-in recorded, read by the agent's own parser,
carries what attempt 1 collected, so the agent does not ask it again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis

from agent.flow import ScreeningFlow
from agent.plan import ScreeningPlan
from dialer.dialing import DialService, room_name
from dialer.livekit_standin import LiveKitStandIn
from dialer.messages import ResultMessage, parse_dispatch_metadata
from dialer.models import CandidateData, JobState, KnockoutAnswer, OpenAnswer, Status
from tests.support.runtime import TestRuntime, make_runtime
from tests.support.seed import seed_request

BRUSSELS = ZoneInfo("Europe/Brussels")
WED_10 = datetime(2026, 3, 4, 10, 0, tzinfo=BRUSSELS).astimezone(UTC)
NUMBER = "+32470123456"
CALL_ID = "resume-1"
OPEN_QUESTIONS = [
    {"id": "oq1", "text": "Waarom wil je hier werken?", "internal_id": "crm_field_3"},
    {"id": "oq2", "text": "Wanneer kan je beginnen?", "internal_id": "crm_field_4"},
]
# What attempt 1 collected before the candidate hung up: consent, both knockout questions (q1
# from the candidate record, q2 in the candidate's words) and the first open question.
KNOCKOUT_SO_FAR = [
    KnockoutAnswer(
        question_id="q1",
        internal_id="crm_field_1",
        question_text="Mag je wettelijk werken in Belgie?",
        result="pass",
        raw_answer="ja",
        candidate_note="known from the candidate record; not asked",
    ),
    KnockoutAnswer(
        question_id="q2",
        internal_id="crm_field_2",
        question_text="Heb je ervaring?",
        result="pass",
        raw_answer="ja, vijf jaar in een bakkerij",
    ),
]
OPEN_SO_FAR = [
    OpenAnswer(
        question_id="oq1",
        internal_id="crm_field_3",
        question_text="Waarom wil je hier werken?",
        answer_summary="Loves baking bread early in the morning.",
    )
]


class Calls:
    """The runtime's own DialService (`Runtime.dial_service`) on one event loop, as a dial
    worker process runs it; dial outcomes it publishes are kept for the consumer."""

    def __init__(self, t: TestRuntime) -> None:
        self.t = t
        self.published: list[ResultMessage] = []
        self.service: DialService = t.runtime.dial_service(self.published.append)
        self.loop = asyncio.new_event_loop()

    def place(self, attempt: int) -> str:
        report = self.loop.run_until_complete(
            self.service.place_call(CALL_ID, attempt, f"task-{attempt}", self.t.clock.now())
        )
        return report.result

    def close(self) -> None:
        self.loop.run_until_complete(self.service.dialer.aclose())
        self.loop.close()


@pytest.fixture()
def standin() -> Iterator[LiveKitStandIn]:
    with LiveKitStandIn(ring_seconds=0.1, slow_seconds=0.3, hang_seconds=30) as lk:
        yield lk


@pytest.fixture()
def calls(r: redis.Redis, standin: LiveKitStandIn) -> Iterator[Calls]:
    t = make_runtime(
        r,
        WED_10,
        livekit_url=standin.url,
        livekit_api_key=standin.api_key,
        livekit_api_secret=standin.api_secret,
        calls_per_second=50,
        # By their env names: these settings are read through their aliases only.
        LIVEKIT_SIP_OUTBOUND_TRUNK_ID="ST_test",
        LIVEKIT_SIP_FROM_NUMBER="+3225550000",
    )
    placed = Calls(t)
    yield placed
    placed.close()


def test_attempt_two_resumes_with_what_attempt_one_collected(
    calls: Calls, standin: LiveKitStandIn
) -> None:
    t = calls.t
    t.runtime.intake.submit(
        seed_request(CALL_ID, NUMBER, open_questions=OPEN_QUESTIONS), t.clock.now()
    )

    # Attempt 1: dialed, answered, the agent's result says the candidate hung up mid-way.
    assert calls.place(1) == "answered"
    incomplete = CandidateData(
        call_id=CALL_ID,
        status=Status.INCOMPLETE,
        attempt=1,
        consent_given=True,
        knockout_answers=KNOCKOUT_SO_FAR,
        open_answers=OPEN_SO_FAR,
        started_at=WED_10,
        ended_at=WED_10 + timedelta(minutes=2),
    )
    consumed = t.runtime.consumer.consume(
        ResultMessage.from_agent(incomplete, t.clock.now()), t.clock.now()
    )
    assert consumed.result == "retry_scheduled"
    assert consumed.decision is not None and consumed.decision.resume
    retry_at = t.runtime.due_jobs.when(CALL_ID)
    assert retry_at == WED_10 + timedelta(minutes=30)

    # Attempt 2, when due: placed through the same DialService against the stand-in.
    t.clock.set(retry_at)
    assert calls.place(2) == "answered"
    assert calls.published == []  # both dials were answered: no dial outcome to record
    job = t.store.get(CALL_ID)
    assert job.state is JobState.IN_CALL and job.attempt == 2

    first, second = standin.dispatches
    _, first_context = parse_dispatch_metadata(first.metadata)
    assert first_context is not None and first_context.resume is None  # nothing to resume yet
    assert second.room == room_name(CALL_ID, 2)
    assert [d.trunk_id for d in standin.dials] == ["ST_test", "ST_test"]

    # The agent's side: the plan it builds from the dispatch metadata the stand-in received.
    plan = ScreeningPlan.from_metadata(second.metadata)
    assert plan.request.call_id == CALL_ID and plan.attempt == 2
    assert [q.id for q in plan.request.open_questions] == ["oq1", "oq2"]
    resume = plan.resume
    assert resume is not None
    assert resume.consent_given is True
    assert resume.knockout_answers == KNOCKOUT_SO_FAR
    assert resume.knockout_answers[1].raw_answer == "ja, vijf jaar in een bakkerij"
    assert resume.open_answers == OPEN_SO_FAR
    assert resume.chosen_timeslot is None and resume.scheduling_preference is None

    # And the flow it runs keeps those answers and asks only what is left (oq2).
    flow = ScreeningFlow(plan.flow_config())
    assert flow.knockout_answers == KNOCKOUT_SO_FAR
    assert flow.open_answers == OPEN_SO_FAR
    assert {"q1", "q2", "oq1"} <= flow.skipped and "oq2" not in flow.skipped
