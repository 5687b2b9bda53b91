"""The tools inside a running text-mode AgentSession: refusals the model hears, one LLM request
per candidate turn, instructions that follow the step, language switches, resuming, the
candidate's own words, silence (with livekit-agents' real away timer), and the ways a call is
closed: bounded playout, the hard maximum duration, a job shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
from livekit.agents import AgentSession, RunResult, StopResponse, llm
from livekit.agents.voice.events import UserInputTranscribedEvent
from livekit.agents.voice.io import TextOutput
from livekit.agents.voice.turn import TurnHandlingOptions

from agent import templates
from agent.controller import CallControl, CollectingSink, NoopCallControl, ScreeningController
from agent.flow import Stage
from agent.plan import ScreeningPlan
from agent.screening_agent import ScreeningAgent
from agent.simulate import run_text_screening_detailed
from dialer.messages import ResumeState
from dialer.models import CandidateData, KnockoutAnswer, Status
from tests.agent.job_standin import wait_until
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
    *,
    user_away_timeout: float | None = None,
    call_control: CallControl | None = None,
    **controller_options: Any,
) -> AsyncIterator[tuple[AgentSession[None], ScreeningController, RunResult[Any]]]:
    controller = ScreeningController(
        plan,
        sink=CollectingSink(),
        call=call_control or NoopCallControl(),
        on_language_change=(languages.append if languages is not None else None),
        **controller_options,
    )
    session: AgentSession[None] = AgentSession(
        llm=scripted,
        vad=None,
        turn_handling=TurnHandlingOptions(turn_detection="manual"),
        user_away_timeout=user_away_timeout,
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
            assert controller.flow.knockout_answers[-1].raw_answer == "Ja, drie jaar."
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

    async def go() -> CandidateData | None:
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
        return await controller.wait_finished(timeout=5)  # the session closed: the result

    data = run(go)
    assert data is not None and data.language == "en"
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

    async def go() -> CandidateData | None:
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
        return await controller.wait_finished(timeout=5)

    data = run(go)
    assert data is not None and data.language == "en"
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


def _agent_lines(controller: ScreeningController) -> list[str]:
    return [text for role, text in controller.transcript.texts() if role == "agent"]


def _reminders(controller: ScreeningController) -> int:
    reminder = templates.render("nl", "still_there")[0]
    return sum(line.startswith(reminder) for line in _agent_lines(controller))


def test_silence_gets_one_reminder_then_ends_the_call() -> None:
    """A real `user_away_timeout`: livekit-agents reports "away" once and then stays away; the
    controller restarts its timer after the reminder, so the second silence ends the call."""
    scripted = ScriptedLLM([call("record_consent", consent_given=True)])

    async def go() -> ScreeningController:
        async with screening(nl_plan(), scripted, user_away_timeout=0.5) as (
            session,
            controller,
            _,
        ):
            await session.run(user_input="Ja.")
            await controller.wait_finished(timeout=5)
            return controller

    controller = run(go)
    assert controller.result is not None
    assert controller.result.status is Status.INCOMPLETE
    assert controller.result.consent_given
    agent_lines = _agent_lines(controller)
    assert agent_lines[-2].startswith(templates.render("nl", "still_there")[0])
    assert agent_lines[-2].endswith("Heb je ervaring?")
    assert agent_lines[-1] == templates.render("nl", "closing_silence")[0]
    assert _reminders(controller) == 1


def test_a_candidate_who_speaks_after_the_reminder_gets_a_new_one() -> None:
    """Any final transcript of the candidate counts as speaking (a mumble no tool records, a
    side question the model answers itself): the next silence is reminded again, not ended."""
    scripted = ScriptedLLM(
        [
            call("record_consent", consent_given=True),
            say("Dat bespreekt de recruiter graag met je."),  # a side question: no tool
        ]
    )

    async def go() -> ScreeningController:
        async with screening(nl_plan(), scripted, user_away_timeout=0.4) as (
            session,
            controller,
            _,
        ):
            await session.run(user_input="Ja.")
            await wait_until(lambda: _reminders(controller) == 1)
            session.emit(  # a final transcript that never becomes a turn ("ehm")
                "user_input_transcribed",
                UserInputTranscribedEvent(transcript="ehm", is_final=True, language="nl"),
            )
            await wait_until(lambda: _reminders(controller) == 2)
            assert not controller.flow.done
            await session.run(user_input="Wat verdien ik eigenlijk?")
            await wait_until(lambda: _reminders(controller) == 3)
            assert not controller.flow.done
            await controller.wait_finished(timeout=5)
            return controller

    controller = run(go)
    assert controller.result is not None
    assert controller.result.status is Status.INCOMPLETE
    assert _agent_lines(controller)[-1] == templates.render("nl", "closing_silence")[0]
    assert len(scripted.requests) == 2


class StalledTextOutput(TextOutput):
    """The call's text output stops taking the agent's words (as a stuck audio track would):
    what the agent says next never finishes playing out until `release` is set."""

    def __init__(self) -> None:
        super().__init__(label="stalled", next_in_chain=None)
        self.release = asyncio.Event()

    async def capture_text(self, text: str) -> None:
        await self.release.wait()

    def flush(self) -> None:
        return None


def test_a_closing_sentence_that_never_plays_out_does_not_keep_the_line_open() -> None:
    scripted = ScriptedLLM([call("record_consent", consent_given=False)])
    line = NoopCallControl()

    async def go() -> CandidateData | None:
        async with screening(nl_plan(), scripted, call_control=line, playout_timeout_s=0.2) as (
            session,
            controller,
            _,
        ):
            stalled = StalledTextOutput()
            session.output.transcription = stalled
            turn: asyncio.Future[RunResult[Any]] = asyncio.ensure_future(
                session.run(user_input="Nee, liever niet.")
            )
            data = await controller.wait_finished(timeout=3)
            assert line.hung_up  # hung up although the goodbye never finished
            stalled.release.set()
            await turn
            return data

    data = run(go)
    assert data is not None and data.status is Status.NOT_INTERESTED


def test_the_maximum_duration_hangs_up_whatever_is_still_going_on() -> None:
    """Once the flow is done a TimeUp changes nothing; the hard stop a few seconds after the
    maximum still hangs up a call whose closing sentence does not end."""
    scripted = ScriptedLLM([call("record_consent", consent_given=False)])
    line = NoopCallControl()

    async def go() -> CandidateData | None:
        async with screening(
            nl_plan(), scripted, call_control=line, playout_timeout_s=60, hard_stop_grace_s=0.3
        ) as (session, controller, _):
            stalled = StalledTextOutput()
            session.output.transcription = stalled
            turn: asyncio.Future[RunResult[Any]] = asyncio.ensure_future(
                session.run(user_input="Nee, liever niet.")
            )
            await wait_until(lambda: controller.flow.done)
            controller.start_deadline(0.05)  # the maximum passes during the goodbye
            data = await controller.wait_finished(timeout=3)
            assert line.hung_up
            stalled.release.set()
            await turn
            return data

    data = run(go)
    assert data is not None and data.status is Status.NOT_INTERESTED


def test_a_job_shutdown_mid_call_hangs_up_and_reports_once() -> None:
    scripted = ScriptedLLM([call("record_consent", consent_given=True)])
    line = NoopCallControl()

    async def go() -> list[CandidateData]:
        async with screening(nl_plan(), scripted, call_control=line) as (session, controller, _):
            await session.run(user_input="Ja.")
            assert not line.hung_up
            await controller.finalize("job shutdown: worker draining")
            assert line.hung_up
        await controller.finalize("session closed")  # later callers: no second result
        assert isinstance(controller.sink, CollectingSink)
        return controller.sink.results

    [data] = run(go)
    assert data.status is Status.INCOMPLETE and data.consent_given


def test_raw_answer_is_what_the_candidate_said_not_the_models_paraphrase() -> None:
    words = "Jawel, drie jaar bij bakkerij Peeters in Mechelen."
    scripted = ScriptedLLM(
        [
            call("record_consent", consent_given=True),
            call(
                "record_knockout_answer",
                question_id="q2",
                passed=True,
                raw_answer="Yes, three years of bakery experience.",  # translated and tidied
            ),
        ]
    )
    outcome = run(
        lambda: run_text_screening_detailed(dispatch_metadata("nl"), scripted, ["Ja.", words])
    )
    q1, q2 = outcome.result.knockout_answers
    assert q1.raw_answer == "ja"  # known from the candidate record, not asked
    assert (q2.question_id, q2.result, q2.raw_answer) == ("q2", "pass", words)
    assert q2.candidate_note == ""


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
