"""The tools inside a running text-mode AgentSession: refusals the model hears, one LLM request
per candidate turn, instructions that follow the step, language switches, and resuming."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
from livekit.agents import AgentSession, RunResult, StopResponse, llm
from livekit.agents.voice.events import UserInputTranscribedEvent, UserStateChangedEvent
from livekit.agents.voice.turn import TurnHandlingOptions

from agent import templates
from agent.controller import CollectingSink, NoopCallControl, ScreeningController
from agent.flow import Stage
from agent.plan import ScreeningPlan
from agent.screening_agent import ScreeningAgent
from agent.simulate import run_text_screening_detailed
from dialer.messages import ResumeState
from dialer.models import KnockoutAnswer, Status
from tests.agent.requests import dispatch_metadata
from tests.agent.scripted_llm import ScriptedLLM, call, say

T = TypeVar("T")


def run(factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await factory()

    return asyncio.run(main())


@asynccontextmanager
async def screening(
    plan: ScreeningPlan,
    scripted: ScriptedLLM,
    languages: list[str] | None = None,
) -> AsyncIterator[tuple[AgentSession[None], ScreeningController, RunResult[Any]]]:
    controller = ScreeningController(
        plan,
        sink=CollectingSink(),
        call=NoopCallControl(),
        on_language_change=(languages.append if languages is not None else None),
    )
    session: AgentSession[None] = AgentSession(
        llm=scripted,
        vad=None,
        turn_handling=TurnHandlingOptions(turn_detection="manual"),
        user_away_timeout=None,
    )
    async with session:
        controller.mark_answered()
        greeting = await session.start(ScreeningAgent(controller), capture_run=True)
        yield session, controller, greeting


def nl_plan(**dial: Any) -> ScreeningPlan:
    return ScreeningPlan.from_metadata(dispatch_metadata("nl", **dial))


def test_greeting_costs_no_llm_request_and_each_answer_one() -> None:
    scripted = ScriptedLLM(
        [
            call("record_consent", consent_given=True),
            call("record_knockout_answer", question_id="q2", passed=True, raw_answer="ja"),
        ]
    )

    async def go() -> None:
        async with screening(nl_plan(), scripted) as (session, controller, greeting):
            greeting.expect.skip_next_event_if(type="agent_handoff")
            greeting.expect.next_event().is_message(role="assistant")
            greeting.expect.no_more_events()
            assert scripted.requests == []

            result: RunResult[Any] = await session.run(user_input="Ja hoor.")
            result.expect.next_event().is_function_call(
                name="record_consent", arguments={"consent_given": True}
            )
            result.expect.next_event().is_function_call_output(is_error=False)
            message = result.expect.next_event().is_message(role="assistant")
            assert (
                message.event().item.text_content
                == "Ik heb een paar korte vragen voor je. Heb je ervaring?"
            )
            result.expect.no_more_events()
            assert len(scripted.requests) == 1

            await session.run(user_input="Ja.")
            assert len(scripted.requests) == 2
            assert controller.flow.stage is Stage.OPEN

    run(go)


def test_a_wrong_question_id_is_refused_and_the_model_corrects_itself() -> None:
    scripted = ScriptedLLM(
        [
            call("record_consent", consent_given=True),
            call("record_knockout_answer", question_id="q7", passed=True, raw_answer="ja"),
            call("record_open_answer", question_id="oq1", answer_summary="te vroeg"),
            call("record_knockout_answer", question_id="q2", passed=True, raw_answer="ja"),
        ]
    )

    async def go() -> None:
        async with screening(nl_plan(), scripted) as (session, controller, _):
            await session.run(user_input="Ja.")
            result: RunResult[Any] = await session.run(user_input="Ja, drie jaar.")
            result.expect.next_event().is_function_call(name="record_knockout_answer")
            refusal = result.expect.next_event().is_function_call_output(is_error=True)
            assert "unknown question id 'q7'" in refusal.event().item.output
            result.expect.next_event().is_function_call(name="record_open_answer")
            refusal = result.expect.next_event().is_function_call_output(is_error=True)
            assert "question 'oq1' is not being asked now" in refusal.event().item.output
            assert "knockout question q2" in refusal.event().item.output
            result.expect.next_event().is_function_call(name="record_knockout_answer")
            result.expect.next_event().is_function_call_output(is_error=False)
            result.expect.next_event().is_message(role="assistant")
            # The model saw the refusal before trying again.
            assert "unknown question id 'q7'" in _all_text(scripted.requests[2])
            assert controller.flow.stage is Stage.OPEN
            assert controller.flow.knockout_answers[-1].raw_answer == "ja"
            assert len(scripted.requests) == 4

    run(go)


def test_instructions_follow_the_current_step() -> None:
    scripted = ScriptedLLM(
        [
            call("record_consent", consent_given=True),
            say("Het salaris bespreekt de recruiter met je."),  # a question: no tool
            call("record_knockout_answer", question_id="q2", passed=True, raw_answer="ja"),
        ]
    )

    async def go() -> None:
        async with screening(nl_plan(), scripted) as (session, controller, _):
            await session.run(user_input="Ja.")
            await session.run(user_input="Wat verdien ik?")
            assert controller.flow.stage is Stage.KNOCKOUT  # a side question moves nothing
            await session.run(user_input="Ja, ervaring heb ik.")

    run(go)
    first, second, third = (r.instructions for r in scripted.requests)
    assert "recording consent question" in first and "record_consent" in first
    assert 'record_knockout_answer(question_id="q2"' in second
    assert "Dutch (Nederlands)" in second
    assert 'record_knockout_answer(question_id="q2"' in third


def test_switch_language_tool_reasks_in_the_new_language() -> None:
    languages: list[str] = []
    scripted = ScriptedLLM(
        [
            call("switch_language", language="en"),
            call("record_consent", consent_given=True),
            # The question text is Dutch: the agent has the model translate it, once.
            say("I have a few short questions for you. Do you have experience?"),
        ]
    )

    async def go() -> None:
        async with screening(nl_plan(), scripted, languages) as (session, controller, _):
            result: RunResult[Any] = await session.run(user_input="Sorry, can we speak English?")
            result.expect.next_event().is_function_call(name="switch_language")
            result.expect.next_event().is_function_call_output(is_error=False)
            message = result.expect.next_event().is_message(role="assistant")
            assert (
                message.event().item.text_content == templates.render("en", "consent_question")[0]
            )
            await session.run(user_input="Yes, fine.")
            assert controller.flow.language == "en"

    run(go)
    assert languages == ["en"]
    translation = scripted.requests[2]
    assert translation.tool_choice == "none"
    assert "translated faithfully into English" in _all_text(translation)
    assert "Heb je ervaring?" in _all_text(translation)


def test_a_transcript_in_another_language_switches_the_call() -> None:
    languages: list[str] = []
    scripted = ScriptedLLM(
        [call("record_consent", consent_given=True), say("Do you have experience?")]
    )

    async def go() -> None:
        async with screening(nl_plan(), scripted, languages) as (session, controller, _):
            # What Deepgram's multilingual model reports for the candidate's answer.
            session.emit(
                "user_input_transcribed",
                UserInputTranscribedEvent(
                    transcript="yes that is fine with me", is_final=True, language="en"
                ),
            )
            await asyncio.sleep(0)
            await session.run(user_input="yes that is fine with me")
            assert controller.flow.language == "en"

    run(go)
    assert languages == ["en"]


def test_resume_does_not_ask_again_what_an_earlier_attempt_answered() -> None:
    resume = ResumeState(
        consent_given=True,
        knockout_answers=[
            KnockoutAnswer(
                question_id="q2",
                internal_id="crm_field_2",
                question_text="Heb je ervaring?",
                result="pass",
                raw_answer="ja, drie jaar",
            )
        ],
    )
    scripted = ScriptedLLM(
        [
            call("record_open_answer", question_id="oq1", answer_summary="Bakt graag."),
            call("choose_timeslot", timeslot="woensdag 5 maart om 14 uur"),
        ]
    )
    metadata = dispatch_metadata("nl", attempt=2, resume=resume)
    outcome = run(
        lambda: run_text_screening_detailed(
            metadata, scripted, ["Ik bak heel graag.", "Woensdag graag."]
        )
    )
    data = outcome.result
    assert data.status is Status.COMPLETED
    assert data.attempt == 2
    assert data.consent_given
    assert [(a.question_id, a.raw_answer) for a in data.knockout_answers] == [
        ("q1", "ja"),
        ("q2", "ja, drie jaar"),
    ]
    agent_lines = [t.text for t in data.transcript if t.role == "agent"]
    assert "Heb je ervaring?" not in " ".join(agent_lines)
    assert templates.render("nl", "consent_question")[0] not in " ".join(agent_lines)
    assert templates.render("nl", "resume_intro")[0] in agent_lines[0]
    assert agent_lines[0].endswith("Waarom wil je hier werken?")
    assert len(scripted.requests) == 2


def _all_text(request: Any) -> str:
    parts = []
    for item in request.chat_ctx.items:
        if item.type == "message":
            parts.append(item.text_content or "")
        elif item.type == "function_call_output":
            parts.append(str(item.output))
    return "\n".join(parts)


def test_the_call_closing_mid_screening_gives_one_incomplete_result() -> None:
    """The candidate hangs up: the session closes, the answers so far are kept, exactly once."""
    scripted = ScriptedLLM([call("record_consent", consent_given=True)])
    sink = CollectingSink()

    async def go() -> None:
        controller = ScreeningController(nl_plan(), sink=sink, call=NoopCallControl())
        session: AgentSession[None] = AgentSession(
            llm=scripted,
            vad=None,
            turn_handling=TurnHandlingOptions(turn_detection="manual"),
            user_away_timeout=None,
        )
        controller.mark_answered()
        await session.start(ScreeningAgent(controller), capture_run=True)
        await session.run(user_input="Ja.")
        await session.aclose()  # what RoomIO does when the SIP participant disconnects
        await controller.wait_finished(timeout=5)
        await controller.finalize("job shutdown")  # the shutdown callback runs too: no-op

    run(go)
    [data] = sink.results
    assert data.status is Status.INCOMPLETE
    assert data.consent_given
    assert [t.role for t in data.transcript] == ["agent", "candidate", "agent"]


def test_the_maximum_call_duration_closes_the_call_politely() -> None:
    scripted = ScriptedLLM([call("record_consent", consent_given=True)])

    async def go() -> ScreeningController:
        async with screening(nl_plan(), scripted) as (session, controller, _):
            controller.start_deadline(0.05)
            await session.run(user_input="Ja.")
            await controller.wait_finished(timeout=5)
            return controller

    controller = run(go)
    assert controller.result is not None
    assert controller.result.status is Status.INCOMPLETE
    assert controller.result.transcript[-1].text == templates.render("nl", "closing_time_up")[0]


def test_silence_gets_one_reminder_then_ends_the_call() -> None:
    scripted = ScriptedLLM([call("record_consent", consent_given=True)])

    async def go() -> ScreeningController:
        async with screening(nl_plan(), scripted) as (session, controller, _):
            await session.run(user_input="Ja.")
            for _ in range(2):  # what AgentSession emits after `user_away_timeout` of silence
                session.emit(
                    "user_state_changed",
                    UserStateChangedEvent(old_state="listening", new_state="away"),
                )
                await asyncio.sleep(0.05)
                await controller.settle()
            await controller.wait_finished(timeout=5)
            return controller

    controller = run(go)
    assert controller.result is not None
    assert controller.result.status is Status.INCOMPLETE
    agent_lines = [t.text for t in controller.result.transcript if t.role == "agent"]
    assert agent_lines[-2].startswith(templates.render("nl", "still_there")[0])
    assert agent_lines[-1] == templates.render("nl", "closing_silence")[0]


def test_nothing_said_before_the_greeting_reaches_the_llm() -> None:
    """While AMD listens on a phone call, what the line says is not answered by the model."""
    controller = ScreeningController(
        nl_plan(), sink=CollectingSink(), call=NoopCallControl(), greet_on_enter=False
    )
    agent = ScreeningAgent(controller)
    message = llm.ChatMessage(role="user", content=["Hallo, met Mark?"])
    with pytest.raises(StopResponse):
        run(lambda: agent.on_user_turn_completed(llm.ChatContext.empty(), message))
    controller.flow.start()  # greeted: from now on every candidate turn is interpreted
    run(lambda: agent.on_user_turn_completed(llm.ChatContext.empty(), message))
