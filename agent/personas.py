"""Simulated candidates for the demo: the real screening flow in text mode, answered by a
persona, on calls the LiveKit stand-in "answers".

    handler = PersonaCallHandler({"+32470100107": "knockout_fail"}, "cooperative")
    standin = LiveKitStandIn(..., on_answer=handler)
    handler.attach(redis_url, spool_dir, standin)

For every answered call the stand-in hands over (`AnsweredCall`), the handler runs
`agent.simulate.run_text_screening_detailed` with the call's dispatch metadata: the same flow,
tools, templates, controller and result building as a real call. The candidate's lines come from
the persona, and so does the "model": with no LLM available offline, `PersonaLLM` reports for
each line the tool call a model would make for it. At the end the agent hangs up through the
stand-in's API (SIP participant removed, room deleted) and publishes the CandidateData on the
results queue (spooled if Redis is away), exactly as the worker does.

Personas: cooperative, french, knockout_fail, knockout_fail_interested, recruiter, off_topic,
unclear, do_not_call, declines_consent, hangup_halfway, hangup_then_complete, voicemail,
voicemail_then_answer; the dial-only ones (busy, no_answer, decline, invalid and their
`*_then_answer` forms) behave as cooperative once a call is answered. A call the stand-in answers
with its `voicemail` scenario is a machine: AMD's verdict is applied before any greeting.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from livekit import api
from livekit.agents import llm
from livekit.agents.llm import ChatChunk, ChatContext, ChoiceDelta, FunctionToolCall, Tool
from livekit.agents.llm.tool_context import ToolChoice
from livekit.agents.types import (
    DEFAULT_API_CONNECT_OPTIONS,
    NOT_GIVEN,
    APIConnectOptions,
    NotGivenOr,
)

from agent import flow as f
from agent.call_control import LiveKitCallControl
from agent.controller import ScreeningController
from agent.plan import ScreeningPlan
from agent.publishing import PublisherSink
from agent.simulate import Turn, run_text_screening_detailed
from dialer.models import CandidateData
from dialer.results_queue import ResultPublisher

if TYPE_CHECKING:
    from dialer.livekit_standin import AnsweredCall, LiveKitStandIn

log = logging.getLogger("agent.personas")

# How long a simulated call whose result was spooled keeps flushing (the real agent: 600 s).
SPOOL_DRAIN_S = 60.0

PERSONAS = frozenset(
    {
        "cooperative",
        "french",
        "knockout_fail",
        "knockout_fail_interested",
        "recruiter",
        "off_topic",
        "unclear",
        "do_not_call",
        "declines_consent",
        "hangup_halfway",
        "hangup_then_complete",
        "voicemail",
        "voicemail_then_answer",
        "busy",
        "busy_then_answer",
        "no_answer",
        "no_answer_then_answer",
        "decline",
        "invalid",
    }
)

# What candidates say, per language (the call's language at that moment).
LINES: dict[str, dict[str, str]] = {
    "nl": {
        "consent_yes": "Ja, dat is goed.",
        "consent_no": "Nee, ik wil niet dat dit gesprek wordt opgenomen.",
        "yes": "Ja, zeker.",
        "no": "Nee, dat niet.",
        "open": "Ik werk graag met mensen en ik woon vlakbij.",
        "summary": "Werkt graag met mensen en woont vlakbij.",
        "slot": "Het eerste moment past mij.",
        "preference": "Liefst op een weekdag in de voormiddag.",
        "preference_summary": "weekdagen, voormiddag",
        "alternatives_yes": "Ja, andere vacatures interesseren me wel.",
        "alternatives_no": "Nee, dan hoeft het niet.",
        "recruiter": "Kan ik met een echte recruiter spreken?",
        "off_topic_1": "Wat voor weer is het vandaag?",
        "off_topic_2": "Weet jij waar ik goedkoop kan tanken?",
        "off_topic_3": "Mijn hond heet trouwens Max.",
        "mumble_1": "Ehm, tja, misschien.",
        "mumble_2": "Hmm, ik weet het niet.",
        "dnc": "Bel me alsjeblieft nooit meer op.",
    },
    "fr": {
        "consent_yes": "Oui, c'est d'accord.",
        "consent_no": "Non, je ne veux pas être enregistré.",
        "yes": "Oui, bien sûr.",
        "no": "Non, pas du tout.",
        "open": "J'aime travailler avec les gens et j'habite tout près.",
        "summary": "Aime travailler avec les gens et habite tout près.",
        "slot": "Le premier moment me convient.",
        "preference": "Plutôt en semaine, le matin.",
        "preference_summary": "en semaine, le matin",
        "alternatives_yes": "Oui, d'autres offres m'intéressent.",
        "alternatives_no": "Non, merci.",
        "recruiter": "Est-ce que je peux parler à un vrai recruteur ?",
        "off_topic_1": "Quel temps fait-il chez vous ?",
        "off_topic_2": "Vous connaissez un bon restaurant ?",
        "off_topic_3": "Mon chien s'appelle Max.",
        "mumble_1": "Euh, peut-être.",
        "mumble_2": "Hmm, je ne sais pas.",
        "dnc": "Ne m'appelez plus jamais, s'il vous plaît.",
    },
    "de": {
        "consent_yes": "Ja, das ist in Ordnung.",
        "consent_no": "Nein, ich möchte nicht aufgezeichnet werden.",
        "yes": "Ja, natürlich.",
        "no": "Nein, leider nicht.",
        "open": "Ich arbeite gern mit Menschen und wohne ganz in der Nähe.",
        "summary": "Arbeitet gern mit Menschen und wohnt in der Nähe.",
        "slot": "Der erste Termin passt mir.",
        "preference": "Am liebsten an einem Wochentag vormittags.",
        "preference_summary": "Wochentage, vormittags",
        "alternatives_yes": "Ja, andere Stellen interessieren mich.",
        "alternatives_no": "Nein, danke.",
        "recruiter": "Kann ich mit einem echten Recruiter sprechen?",
        "off_topic_1": "Wie ist das Wetter bei Ihnen?",
        "off_topic_2": "Kennen Sie ein gutes Restaurant?",
        "off_topic_3": "Mein Hund heißt übrigens Max.",
        "mumble_1": "Ähm, vielleicht.",
        "mumble_2": "Hmm, weiß nicht.",
        "dnc": "Rufen Sie mich bitte nie wieder an.",
    },
    "en": {
        "consent_yes": "Yes, that's fine.",
        "consent_no": "No, I don't want to be recorded.",
        "yes": "Yes, definitely.",
        "no": "No, I'm afraid not.",
        "open": "I like working with people and I live close by.",
        "summary": "Likes working with people and lives close by.",
        "slot": "The first moment works for me.",
        "preference": "Preferably a weekday morning.",
        "preference_summary": "weekday mornings",
        "alternatives_yes": "Yes, I'd like to hear about other vacancies.",
        "alternatives_no": "No, thank you.",
        "recruiter": "Can I talk to a real recruiter, please?",
        "off_topic_1": "What's the weather like over there?",
        "off_topic_2": "Do you know a good restaurant nearby?",
        "off_topic_3": "By the way, my dog is called Max.",
        "mumble_1": "Erm, maybe.",
        "mumble_2": "Hmm, I don't know.",
        "dnc": "Please never call me again.",
    },
}


@dataclass(frozen=True)
class Intent:
    """What a model would report for one candidate line: a tool call, or only words."""

    tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    text: str = ""


class Persona:
    """A simulated candidate: reads the flow's current step and answers it in character."""

    def __init__(self, name: str, *, attempt: int = 1) -> None:
        self.name = name if name in PERSONAS else "cooperative"
        self.attempt = attempt
        self.controller: ScreeningController | None = None
        self.intents: dict[str, Intent] = {}
        self._off_topic = 0
        self._unclear = 0
        self._answered = 0  # questions answered in this call

    def bind(self, controller: ScreeningController) -> None:
        self.controller = controller

    # -- the candidate's side ------------------------------------------------------------------

    def __call__(self, agent_text: str) -> Turn | None:
        if self.controller is None:  # pragma: no cover - bound by the handler
            return None
        flow = self.controller.flow
        if flow.done:
            return None
        lines = LINES.get(flow.language, LINES["en"])
        stage = flow.stage
        name = self.name

        if stage is f.Stage.CONSENT:
            if name == "declines_consent":
                return self._say(lines["consent_no"], "record_consent", consent_given=False)
            if name == "do_not_call":
                return self._say(lines["dnc"], "do_not_call_again")
            return self._say(lines["consent_yes"], "record_consent", consent_given=True)

        if name == "do_not_call":
            return self._say(lines["dnc"], "do_not_call_again")
        if stage in (f.Stage.KNOCKOUT, f.Stage.OPEN):
            special = self._special(lines)
            if special is not None:
                return special
        if stage in (f.Stage.KNOCKOUT, f.Stage.OPEN, f.Stage.SCHEDULING) and self._hangs_up(stage):
            return None
        if stage is f.Stage.KNOCKOUT:
            question = flow.current_question
            assert question is not None
            self._answered += 1
            if name in ("knockout_fail", "knockout_fail_interested"):
                return self._say(
                    lines["no"],
                    "record_knockout_answer",
                    question_id=question.id,
                    passed=False,
                    raw_answer=lines["no"],
                )
            return self._say(
                lines["yes"],
                "record_knockout_answer",
                question_id=question.id,
                passed=True,
                raw_answer=lines["yes"],
            )
        if stage is f.Stage.OPEN:
            question = flow.current_question
            assert question is not None
            self._answered += 1
            return self._say(
                lines["open"],
                "record_open_answer",
                question_id=question.id,
                answer_summary=lines["summary"],
            )
        if stage is f.Stage.OTHER_VACANCIES:
            interested = name != "knockout_fail"
            line = lines["alternatives_yes"] if interested else lines["alternatives_no"]
            return self._say(line, "record_other_vacancies_interest", interested=interested)
        if stage is f.Stage.SCHEDULING:
            slots = flow.config.timeslots
            if slots:
                return self._say(lines["slot"], "choose_timeslot", timeslot=slots[0])
            return self._say(
                lines["preference"],
                "record_scheduling_preference",
                preference=lines["preference_summary"],
            )
        return None

    def _special(self, lines: Mapping[str, str]) -> Turn | None:
        if self.name == "recruiter":
            return self._say(lines["recruiter"], "request_recruiter", reason="wants a person")
        if self.name == "off_topic":
            self._off_topic += 1
            line = lines[f"off_topic_{min(self._off_topic, 3)}"]
            return self._say(line, "record_off_topic", raw_answer=line)
        if self.name == "unclear":
            self._unclear += 1
            line = lines[f"mumble_{min(self._unclear, 2)}"]
            return self._say(line, "record_unclear_answer", raw_answer=line)
        return None

    def _hangs_up(self, stage: f.Stage) -> bool:
        """hangup_halfway hangs up after answering one question, and always before picking an
        interview slot, on every attempt (each retry resumes after what was answered, and the
        job ends `incomplete` when attempts run out); hangup_then_complete does so on the first
        attempt only."""
        halfway = self.name == "hangup_halfway" or (
            self.name == "hangup_then_complete" and self.attempt == 1
        )
        return halfway and (self._answered >= 1 or stage is f.Stage.SCHEDULING)

    def _say(self, line: str, tool: str, **arguments: Any) -> str:
        self.intents[line] = Intent(tool, arguments)
        return line

    # -- the "model" -------------------------------------------------------------------------

    def interpret(self, user_text: str) -> Intent:
        return self.intents.get(user_text, Intent())


class PersonaLLM(llm.LLM[Any]):
    """The model stand-in for a persona: reports the tool call the persona meant. Each request
    is counted in `requests`, like a real model's."""

    def __init__(self, persona: Persona) -> None:
        super().__init__()
        self.persona = persona
        self.requests = 0

    @property
    def model(self) -> str:
        return f"persona:{self.persona.name}"

    @property
    def provider(self) -> str:
        return "demo"

    def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: list[Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        self.requests += 1
        intent = Intent()
        last = chat_ctx.items[-1] if chat_ctx.items else None
        if (
            tool_choice != "none"
            and last is not None
            and last.type == "message"
            and last.role == "user"
        ):
            intent = self.persona.interpret(last.text_content or "")
        return _PersonaStream(
            self,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
            intent=intent,
            index=self.requests,
        )


class _PersonaStream(llm.LLMStream):
    def __init__(
        self,
        model: PersonaLLM,
        *,
        chat_ctx: ChatContext,
        tools: list[Tool],
        conn_options: APIConnectOptions,
        intent: Intent,
        index: int,
    ) -> None:
        super().__init__(model, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._intent = intent
        self._index = index

    async def _run(self) -> None:
        calls = []
        if self._intent.tool:
            calls.append(
                FunctionToolCall(
                    name=self._intent.tool,
                    arguments=json.dumps(self._intent.arguments, ensure_ascii=False),
                    call_id=f"persona_{self._index}",
                )
            )
        self._event_ch.send_nowait(
            ChatChunk(
                id=f"persona-{self._index}",
                delta=ChoiceDelta(
                    role="assistant", content=self._intent.text or None, tool_calls=calls
                ),
            )
        )


class PersonaCallHandler:
    """`on_answer` hook of the LiveKit stand-in: one simulated screening per answered call."""

    def __init__(self, personas: Mapping[str, str], default_persona: str = "cooperative") -> None:
        self.personas = dict(personas)
        self.default_persona = default_persona
        self.redis_url: str | None = None
        self.spool_dir: Path | None = None
        self.standin: LiveKitStandIn | None = None
        self.results: list[CandidateData] = []

    def attach(self, redis_url: str, spool_dir: Path, standin: LiveKitStandIn) -> None:
        """Where results go (the results queue on `redis_url`, spooled under `spool_dir`) and
        which stand-in's API ends the calls."""
        self.redis_url, self.spool_dir, self.standin = redis_url, Path(spool_dir), standin

    def persona_for(self, call: AnsweredCall, attempt: int) -> Persona:
        name = self.personas.get(call.phone_number, self.default_persona)
        return Persona(name, attempt=attempt)

    async def __call__(self, call: AnsweredCall) -> None:
        if self.redis_url is None or self.spool_dir is None or self.standin is None:
            log.error("persona handler not attached; call %s left to the stand-in", call.room_name)
            return
        metadata = call.dispatch_metadata or call.room_metadata
        try:
            plan = ScreeningPlan.from_metadata(metadata)
        except ValueError as exc:
            log.error("call %s has unusable metadata: %s", call.room_name, type(exc).__name__)
            return
        persona = self.persona_for(call, plan.attempt)
        lkapi = api.LiveKitAPI(
            self.standin.url, self.standin.api_key, self.standin.api_secret, failover=False
        )
        publisher = ResultPublisher(self.redis_url, self.spool_dir)
        sink = PublisherSink(publisher)
        try:
            run = await run_text_screening_detailed(
                metadata,
                PersonaLLM(persona),
                persona,
                plan=plan,
                sink=sink,
                call=LiveKitCallControl(lkapi, call.room_name, call.participant_identity),
                on_start=persona.bind,
                # The stand-in's `voicemail` scenario is a machine: AMD's verdict, no greeting.
                answering_machine=call.scenario == "voicemail",
            )
            self.results.append(run.result)
        except Exception:
            log.exception("simulated screening in %s failed", call.room_name)
        finally:
            await lkapi.aclose()
            if sink.spooled:  # as the real agent's job does before it ends
                await sink.drain(SPOOL_DRAIN_S, first_delay_s=0.5, max_delay_s=2.0)
            publisher.close()
