"""The demo's simulated candidates: the LiveKit stand-in answers a call, the persona handler
runs the real flow in text mode, hangs up through the stand-in's API and publishes the result
on the results queue (real Redis)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from agent import templates
from agent.personas import Persona, PersonaCallHandler, PersonaLLM
from agent.simulate import run_text_screening_detailed
from dialer.livekit_standin import LiveKitStandIn
from dialer.messages import RESULTS_QUEUE, ResultMessage, ResumeState
from dialer.models import Status
from tests.agent.requests import dispatch_metadata
from tests.support.livekit import place_answered_call

SECRET = "persona-test-secret-0123456789abcdef"
PERSONAS = {
    "+32470000101": "cooperative",
    "+32470000102": "voicemail",
    "+32470000103": "knockout_fail_interested",
    "+32470000104": "recruiter",
}


@pytest.fixture()
def handler(r: redis.Redis, redis_url: str, tmp_path: Path) -> Iterator[PersonaCallHandler]:
    handler = PersonaCallHandler(PERSONAS, "cooperative")
    with LiveKitStandIn(
        {"+32470000102": "voicemail"}, api_secret=SECRET, ring_seconds=0.05, on_answer=handler
    ) as standin:
        handler.attach(redis_url, tmp_path / "spool", standin)
        yield handler


def _results(r: redis.Redis, count: int, timeout: float = 20) -> list[ResultMessage]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and r.llen(RESULTS_QUEUE) < count:
        time.sleep(0.05)
    out = []
    for raw in reversed(r.lrange(RESULTS_QUEUE, 0, -1)):
        _args, kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
        out.append(ResultMessage.model_validate(kwargs["message"]))
    return out


def test_personas_on_answered_stand_in_calls(handler: PersonaCallHandler, r: redis.Redis) -> None:
    assert handler.standin is not None
    standin = handler.standin

    async def place_all() -> None:
        for i, number in enumerate(PERSONAS, start=1):
            metadata = dispatch_metadata("nl", call_id=f"demo-{i}", phone_number=number)
            await place_answered_call(standin, number, f"room-{i}", metadata)

    asyncio.run(place_all())
    by_call = {m.call_id: m for m in _results(r, len(PERSONAS))}
    assert len(by_call) == len(PERSONAS)

    statuses = {call_id: m.outcome for call_id, m in by_call.items()}
    assert statuses == {
        "demo-1": "completed",
        "demo-2": "voicemail",
        "demo-3": "knockout_failed",
        "demo-4": "escalated",
    }
    completed = by_call["demo-1"].result
    assert completed is not None
    assert completed.chosen_timeslot == "dinsdag 4 maart om 10 uur"
    assert [a.result for a in completed.knockout_answers] == ["pass", "pass"]
    voicemail = by_call["demo-2"].result
    assert voicemail is not None and voicemail.voicemail_detected
    # AMD's verdict came before any greeting: the only words are the voicemail message.
    [message] = voicemail.transcript
    assert message.role == "agent"
    assert (
        message.text
        == templates.render(
            "nl", "voicemail_named", name="Mark Verbeke", job_title="Bakkerij Medewerker"
        )[0]
    )
    # Every line was closed by the agent: participants removed, rooms deleted.
    deadline = time.monotonic() + 5
    while standin.active_calls() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert standin.active_calls() == []
    assert {d.end_reason for d in standin.dials} == {"removed"}


def test_hangup_then_complete_resumes_on_the_second_attempt() -> None:
    first = Persona("hangup_then_complete", attempt=1)
    run1 = asyncio.run(
        run_text_screening_detailed(
            dispatch_metadata("nl"), PersonaLLM(first), first, on_start=first.bind
        )
    )
    assert run1.result.status is Status.INCOMPLETE
    assert [a.question_id for a in run1.result.knockout_answers] == ["q1", "q2"]

    resume = ResumeState(
        consent_given=run1.result.consent_given,
        knockout_answers=run1.result.knockout_answers,
        open_answers=run1.result.open_answers,
    )
    second = Persona("hangup_then_complete", attempt=2)
    model = PersonaLLM(second)
    run2 = asyncio.run(
        run_text_screening_detailed(
            dispatch_metadata("nl", attempt=2, resume=resume), model, second, on_start=second.bind
        )
    )
    assert run2.result.status is Status.COMPLETED
    assert run2.result.attempt == 2
    assert model.requests == 2  # the open question and the timeslot: nothing asked twice


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("cooperative", Status.COMPLETED),
        ("french", Status.COMPLETED),
        ("knockout_fail", Status.NOT_INTERESTED),
        ("off_topic", Status.IRRELEVANT),
        ("unclear", Status.UNCLEAR),
        ("do_not_call", Status.NOT_INTERESTED),
        ("declines_consent", Status.NOT_INTERESTED),
        ("hangup_halfway", Status.INCOMPLETE),
        ("busy_then_answer", Status.COMPLETED),
    ],
)
def test_each_persona_ends_in_its_status(name: str, status: Status) -> None:
    persona = Persona(name)
    run = asyncio.run(
        run_text_screening_detailed(
            dispatch_metadata("nl", language="fr" if name == "french" else "nl"),
            PersonaLLM(persona),
            persona,
            on_start=persona.bind,
        )
    )
    assert run.result.status is status
    assert run.result.do_not_call_requested is (name == "do_not_call")
    if name == "french":
        assert run.result.language == "fr"
        assert run.result.transcript[1].text == "Oui, c'est d'accord."


def test_hangup_halfway_stays_incomplete_while_each_retry_resumes() -> None:
    resume: ResumeState | None = None
    asked_per_attempt = []
    for attempt in (1, 2, 3):
        persona = Persona("hangup_halfway", attempt=attempt)
        run = asyncio.run(
            run_text_screening_detailed(
                dispatch_metadata("nl", attempt=attempt, resume=resume),
                PersonaLLM(persona),
                persona,
                on_start=persona.bind,
            )
        )
        assert run.result.status is Status.INCOMPLETE
        asked_per_attempt.append(list(run.controller.flow.asked))
        resume = ResumeState(
            consent_given=run.result.consent_given,
            knockout_answers=run.result.knockout_answers,
            open_answers=run.result.open_answers,
        )
    # Nothing is asked twice: q2, then oq1, then only the scheduling offer (no question).
    assert asked_per_attempt == [["q2", "oq1"], ["oq1"], []]
