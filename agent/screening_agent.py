"""The livekit-agents `Agent` of the screening call: instructions and function tools.

Every tool turns what the LLM understood into one flow event and returns without asking for a
reply (`reply_required=False`): the flow's next line is already being spoken with
`session.say`, so a candidate turn costs exactly one LLM request. An event that does not fit
(unknown question id, an answer for a question that is not being asked, a timeslot that was not
offered) raises `ToolError`, which the LLM hears and can correct.
"""

from __future__ import annotations

from typing import Annotated

from livekit.agents import Agent, StopResponse, ToolResult, function_tool, llm
from pydantic import Field

from agent import flow as f
from agent.controller import ScreeningController


def _done(output: str) -> ToolResult:
    return ToolResult(output, reply_required=False)


class ScreeningAgent(Agent):
    def __init__(self, controller: ScreeningController) -> None:
        super().__init__(instructions=controller.instructions())
        self.controller = controller

    async def on_enter(self) -> None:
        self.controller.attach(self.session, self.update_instructions)
        if self.controller.greet_on_enter:
            await self.controller.begin()

    async def on_user_turn_completed(
        self, turn_ctx: llm.ChatContext, new_message: llm.ChatMessage
    ) -> None:
        """Before the greeting (a phone call while AMD listens) nobody is answered: what the
        line says then ("Hallo?", a mailbox greeting) goes to AMD, not to an LLM request."""
        if self.controller.flow.stage is f.Stage.GREETING:
            raise StopResponse()

    # -- the current question ----------------------------------------------------------------

    @function_tool
    async def record_consent(self, consent_given: bool) -> ToolResult:
        """Call when the candidate has answered the recording consent question.

        Args:
            consent_given: true if they agree to the recording, false if they refuse.
        """
        return _done(await self.controller.tool(f.ConsentAnswered(consent_given)))

    @function_tool
    async def record_knockout_answer(
        self,
        question_id: str,
        passed: bool,
        raw_answer: str,
        note: str = "",
    ) -> ToolResult:
        """Call when the candidate has answered the yes/no requirement (knockout) question that
        was just asked. Only for that question: never for one that was not asked yet.

        Args:
            question_id: the id of the question being answered, e.g. "q1".
            passed: true if the answer meets the requirement, false if it does not.
            raw_answer: the candidate's answer in their own words.
            note: anything the candidate added that a recruiter should know (optional).
        """
        event = f.KnockoutAnswered(question_id, passed, raw_answer, note)
        return _done(await self.controller.tool(event))

    @function_tool
    async def record_open_answer(
        self,
        question_id: str,
        answer_summary: str,
        note: str = "",
    ) -> ToolResult:
        """Call when the candidate has answered the open question that was just asked.

        Args:
            question_id: the id of the question being answered, e.g. "oq1".
            answer_summary: a faithful one- or two-sentence summary of the answer.
            note: anything else a recruiter should know (optional).
        """
        event = f.OpenAnswered(question_id, answer_summary, note)
        return _done(await self.controller.tool(event))

    @function_tool
    async def record_unclear_answer(self, raw_answer: str) -> ToolResult:
        """Call when you cannot tell what the candidate's answer to the current question means
        (mumbled, ambiguous, "maybe"). Do not guess an answer instead. The question is asked
        again once.

        Args:
            raw_answer: what the candidate said.
        """
        return _done(await self.controller.tool(f.AnswerUnclear(raw_answer)))

    @function_tool
    async def record_off_topic(self, raw_answer: str) -> ToolResult:
        """Call when the candidate talks about something unrelated to the current question.

        Args:
            raw_answer: what the candidate said.
        """
        return _done(await self.controller.tool(f.OffTopic(raw_answer)))

    @function_tool
    async def record_other_vacancies_interest(self, interested: bool) -> ToolResult:
        """Call when the candidate has answered whether they are interested in other vacancies
        (asked after a requirement was not met).

        Args:
            interested: true if they want to hear about other vacancies.
        """
        return _done(await self.controller.tool(f.OtherVacanciesAnswered(interested)))

    @function_tool
    async def choose_timeslot(self, timeslot: str) -> ToolResult:
        """Call when the candidate has picked one of the offered interview timeslots.

        Args:
            timeslot: the chosen timeslot, copied exactly as offered.
        """
        return _done(await self.controller.tool(f.TimeslotChosen(timeslot)))

    @function_tool
    async def record_scheduling_preference(self, preference: str) -> ToolResult:
        """Call when the candidate has said when an interview would suit them (no timeslots
        were offered, or none of them suits).

        Args:
            preference: their preference in their own words, e.g. "weekday mornings".
        """
        return _done(await self.controller.tool(f.PreferenceGiven(preference)))

    # -- at any time -------------------------------------------------------------------------

    @function_tool
    async def request_recruiter(self, reason: str) -> ToolResult:
        """Call when the candidate asks to speak with a human recruiter.

        Args:
            reason: why, in a few words (in English).
        """
        return _done(await self.controller.tool(f.EscalationRequested(reason)))

    @function_tool
    async def decline_screening(self, reason: str = "") -> ToolResult:
        """Call when the candidate does not want to continue or is not interested in the job.

        Args:
            reason: their reason, if they gave one.
        """
        return _done(await self.controller.tool(f.NotInterested(reason)))

    @function_tool
    async def do_not_call_again(self) -> ToolResult:
        """Call when the candidate asks never to be called again."""
        return _done(await self.controller.tool(f.DoNotCall()))

    @function_tool
    async def answering_machine_detected(self) -> ToolResult:
        """Call when you hear a voicemail greeting, a beep or a recorded message instead of a
        person, before anyone has answered a question."""
        return _done(await self.controller.tool(f.AnsweringMachine()))

    @function_tool
    async def switch_language(
        self,
        language: Annotated[str, Field(description="ISO 639-1 code, e.g. 'en', 'nl', 'fr'")],
    ) -> ToolResult:
        """Call when the candidate asks to continue in another language, or keeps answering in
        another language than the one being spoken.

        Args:
            language: the language to continue in, as a two-letter code.
        """
        return _done(await self.controller.switch_language(language))
