"""One text-mode conversation per seed status, in Dutch and in English.

Each runs the real agent (flow, tools, templates, controller, result building) in an
`AgentSession` with a scripted LLM that emits the tool calls a model would make, and asserts
the exact CandidateData the worker would publish, the exact transcript, and the number of LLM
requests. Timestamps are real; they are checked for order rather than value.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from agent import templates
from agent.controller import CollectingSink
from agent.flow import KNOWN_ANSWER_NOTE, Event, Silence, TimeUp
from agent.simulate import TextScreening, run_text_screening_detailed
from dialer.models import CandidateData, KnockoutAnswer, OpenAnswer, Status, TranscriptTurn
from dialer.phone import mask
from tests.agent.requests import REQUESTS, dispatch_metadata
from tests.agent.scripted_llm import Reply, ScriptedLLM, call

LINES: dict[str, dict[str, str]] = {
    "nl": {
        "consent_yes": "Ja, dat is goed.",
        "consent_no": "Nee, ik wil niet dat dit wordt opgenomen.",
        "exp_yes": "Ja, ik heb drie jaar in een bakkerij gewerkt.",
        "exp_no": "Nee, ik heb nog nooit in een bakkerij gewerkt.",
        "motivation": "Ik bak graag en de winkel ligt vlak bij mijn huis.",
        "summary": "Bakt graag en woont vlak bij de winkel.",
        "slot": "Dinsdag om tien uur past mij prima.",
        "voicemail": "Hallo, dit is de voicemail van Mark. Spreek een bericht in na de piep.",
        "no_interest": "Nee sorry, ik heb intussen al een andere job gevonden.",
        "dnc": "Bel me alsjeblieft nooit meer op.",
        "alt_yes": "Ja, andere vacatures interesseren me wel.",
        "alt_no": "Nee, dan hoeft het niet meer.",
        "human": "Kan ik met een echte recruiter praten?",
        "mumble1": "Ehm, misschien, ik weet het eigenlijk niet.",
        "mumble2": "Tja, hmm.",
        "off1": "Wat voor weer is het daar eigenlijk?",
        "off2": "Ken jij een goede pizzeria in Antwerpen?",
        "off3": "Mijn kat heet trouwens Minoes.",
    },
    "en": {
        "consent_yes": "Yes, that's fine.",
        "consent_no": "No, I don't want to be recorded.",
        "exp_yes": "Yes, I worked in a bakery for three years.",
        "exp_no": "No, I have never worked in a bakery.",
        "motivation": "I love baking and the shop is close to my home.",
        "summary": "Loves baking and lives close to the shop.",
        "slot": "Tuesday at ten works for me.",
        "voicemail": "Hi, you've reached Jane's voicemail. Please leave a message after the tone.",
        "no_interest": "No sorry, I already found another job.",
        "dnc": "Please never call me again.",
        "alt_yes": "Yes, I'd like to hear about other vacancies.",
        "alt_no": "No, then it's not for me.",
        "human": "Can I talk to a real recruiter please?",
        "mumble1": "Erm, maybe, I don't really know.",
        "mumble2": "Well, hmm.",
        "off1": "What's the weather like over there?",
        "off2": "Do you know a good pizza place in London?",
        "off3": "By the way, my cat is called Tom.",
    },
}

RECRUITER = "+3225550100"


def t(lang: str, key: str, **params: str) -> str:
    req = REQUESTS[lang]
    base = {"name": req["candidate_name"], "job_title": req["job_title"]}
    return templates.render(lang, key, **{**base, **params})[0]


def agent(*parts: str) -> tuple[str, str]:
    return ("agent", " ".join(parts))


def cand(text: str) -> tuple[str, str]:
    return ("candidate", text)


def q(lang: str, qid: str) -> str:
    req = REQUESTS[lang]
    for question in [*req["knockout_questions"], *req["open_questions"]]:
        if question["id"] == qid:
            return str(question["text"])
    raise KeyError(qid)


def opening(lang: str) -> tuple[str, str]:
    return agent(t(lang, "greeting_named"), t(lang, "ai_disclosure"), t(lang, "consent_question"))


def slots(lang: str) -> str:
    return templates.join_options(lang, REQUESTS[lang]["timeslots"])


def known_q1(lang: str) -> KnockoutAnswer:
    req = REQUESTS[lang]
    return KnockoutAnswer(
        question_id="q1",
        internal_id="crm_field_1",
        question_text=q(lang, "q1"),
        result="pass",
        raw_answer=req["candidate_record"]["known_answers"]["work_permit"],
        candidate_note=KNOWN_ANSWER_NOTE,
    )


def answer_q2(passed: bool, raw: str) -> Reply:
    return call("record_knockout_answer", question_id="q2", passed=passed, raw_answer=raw)


def q2(lang: str, result: str, raw: str, note: str = "") -> KnockoutAnswer:
    return KnockoutAnswer(
        question_id="q2",
        internal_id="crm_field_2",
        question_text=q(lang, "q2"),
        result=result,
        raw_answer=raw,
        candidate_note=note,
    )


@dataclass
class Conversation:
    name: str
    status: Status
    turns: list[str | Event]
    script: list[Reply]
    expected: dict[str, Any]
    transcript: list[tuple[str, str]]
    dial: dict[str, Any] = field(default_factory=dict)
    machine: bool = False  # AMD's verdict before the greeting

    @property
    def llm_requests(self) -> int:
        return len(self.script)


def conversations(lang: str) -> list[Conversation]:
    L = LINES[lang]
    slot0 = REQUESTS[lang]["timeslots"][0]
    return [
        Conversation(
            "completed",
            Status.COMPLETED,
            [L["consent_yes"], L["exp_yes"], L["motivation"], L["slot"]],
            [
                call("record_consent", consent_given=True),
                call(
                    "record_knockout_answer", question_id="q2", passed=True, raw_answer=L["exp_yes"]
                ),
                call("record_open_answer", question_id="oq1", answer_summary=L["summary"]),
                call("choose_timeslot", timeslot=slot0),
            ],
            {
                "consent_given": True,
                "passed_knockout": True,
                "knockout_answers": [known_q1(lang), q2(lang, "pass", L["exp_yes"])],
                "open_answers": [
                    OpenAnswer(
                        question_id="oq1",
                        internal_id="crm_field_3",
                        question_text=q(lang, "oq1"),
                        answer_summary=L["summary"],
                    )
                ],
                "chosen_timeslot": slot0,
            },
            COMPLETED_TRANSCRIPT[lang],
        ),
        Conversation(
            "voicemail: the model hears a mailbox and leaves the message",
            Status.VOICEMAIL,
            [L["voicemail"]],
            [call("answering_machine_detected")],
            {"voicemail_detected": True, "knockout_answers": [known_q1(lang)]},
            [opening(lang), cand(L["voicemail"]), agent(t(lang, "voicemail_named"))],
        ),
        Conversation(
            "voicemail: AMD hears a machine before any greeting, leaves the message",
            Status.VOICEMAIL,
            [],
            [],
            {"voicemail_detected": True, "knockout_answers": [known_q1(lang)]},
            [agent(t(lang, "voicemail_named"))],
            machine=True,
        ),
        Conversation(
            "voicemail: AMD hears a machine, no message on this attempt",
            Status.VOICEMAIL,
            [],
            [],
            {"voicemail_detected": True, "knockout_answers": [known_q1(lang)]},
            [],
            dial={"leave_voicemail": False},
            machine=True,
        ),
        Conversation(
            "not_interested: declines during the questions",
            Status.NOT_INTERESTED,
            [L["consent_yes"], L["no_interest"]],
            [
                call("record_consent", consent_given=True),
                call("decline_screening", reason="found another job"),
            ],
            {"consent_given": True, "knockout_answers": [known_q1(lang)]},
            [
                opening(lang),
                cand(L["consent_yes"]),
                agent(t(lang, "questions_intro"), q(lang, "q2")),
                cand(L["no_interest"]),
                agent(t(lang, "closing_not_interested")),
            ],
        ),
        Conversation(
            "not_interested: refuses recording consent",
            Status.NOT_INTERESTED,
            [L["consent_no"]],
            [call("record_consent", consent_given=False)],
            {"consent_given": False, "knockout_answers": [known_q1(lang)]},
            [opening(lang), cand(L["consent_no"]), agent(t(lang, "closing_consent_declined"))],
        ),
        Conversation(
            "not_interested: do not call me again",
            Status.NOT_INTERESTED,
            [L["dnc"]],
            [call("do_not_call_again")],
            {"do_not_call_requested": True, "knockout_answers": [known_q1(lang)]},
            [opening(lang), cand(L["dnc"]), agent(t(lang, "closing_dnc"))],
        ),
        Conversation(
            "not_interested: fails a knockout, no other vacancies",
            Status.NOT_INTERESTED,
            [L["consent_yes"], L["exp_no"], L["alt_no"]],
            [
                call("record_consent", consent_given=True),
                call(
                    "record_knockout_answer", question_id="q2", passed=False, raw_answer=L["exp_no"]
                ),
                call("record_other_vacancies_interest", interested=False),
            ],
            {
                "consent_given": True,
                "knockout_answers": [known_q1(lang), q2(lang, "fail", L["exp_no"])],
            },
            [
                opening(lang),
                cand(L["consent_yes"]),
                agent(t(lang, "questions_intro"), q(lang, "q2")),
                cand(L["exp_no"]),
                agent(t(lang, "other_vacancies")),
                cand(L["alt_no"]),
                agent(t(lang, "closing_not_interested")),
            ],
        ),
        Conversation(
            "knockout_failed: fails a knockout, wants other vacancies",
            Status.KNOCKOUT_FAILED,
            [L["consent_yes"], L["exp_no"], L["alt_yes"]],
            [
                call("record_consent", consent_given=True),
                call(
                    "record_knockout_answer", question_id="q2", passed=False, raw_answer=L["exp_no"]
                ),
                call("record_other_vacancies_interest", interested=True),
            ],
            {
                "consent_given": True,
                "interested_in_alternatives": True,
                "knockout_answers": [known_q1(lang), q2(lang, "fail", L["exp_no"])],
            },
            [
                opening(lang),
                cand(L["consent_yes"]),
                agent(t(lang, "questions_intro"), q(lang, "q2")),
                cand(L["exp_no"]),
                agent(t(lang, "other_vacancies")),
                cand(L["alt_yes"]),
                agent(t(lang, "closing_alternatives")),
            ],
        ),
        Conversation(
            "escalated: no recruiter line, a recruiter calls back",
            Status.ESCALATED,
            [L["consent_yes"], L["human"]],
            [
                call("record_consent", consent_given=True),
                call("request_recruiter", reason="wants to talk to a person"),
            ],
            {
                "consent_given": True,
                "escalation_reason": "wants to talk to a person",
                "knockout_answers": [
                    known_q1(lang),
                    q2(lang, "recruiter_requested", L["human"], "wants to talk to a person"),
                ],
            },
            [
                opening(lang),
                cand(L["consent_yes"]),
                agent(t(lang, "questions_intro"), q(lang, "q2")),
                cand(L["human"]),
                agent(t(lang, "escalation_callback")),
            ],
        ),
        Conversation(
            "escalated: transferred to the recruiter number",
            Status.ESCALATED,
            [L["consent_yes"], L["exp_yes"], L["human"]],
            [
                call("record_consent", consent_given=True),
                call(
                    "record_knockout_answer", question_id="q2", passed=True, raw_answer=L["exp_yes"]
                ),
                call("request_recruiter", reason="has questions about the salary"),
            ],
            {
                "consent_given": True,
                "passed_knockout": True,
                "escalation_reason": "has questions about the salary",
                "knockout_answers": [known_q1(lang), q2(lang, "pass", L["exp_yes"])],
            },
            [
                opening(lang),
                cand(L["consent_yes"]),
                agent(t(lang, "questions_intro"), q(lang, "q2")),
                cand(L["exp_yes"]),
                agent(q(lang, "oq1")),
                cand(L["human"]),
                agent(t(lang, "escalation_transfer")),
            ],
            dial={"recruiter_number": RECRUITER},
        ),
        Conversation(
            "unclear: re-asked once, still unclear",
            Status.UNCLEAR,
            [L["consent_yes"], L["mumble1"], L["mumble2"]],
            [
                call("record_consent", consent_given=True),
                call("record_unclear_answer", raw_answer=L["mumble1"]),
                call("record_unclear_answer", raw_answer=L["mumble2"]),
            ],
            {
                "consent_given": True,
                "knockout_answers": [known_q1(lang), q2(lang, "unclear", L["mumble2"])],
            },
            [
                opening(lang),
                cand(L["consent_yes"]),
                agent(t(lang, "questions_intro"), q(lang, "q2")),
                cand(L["mumble1"]),
                agent(t(lang, "reask_unclear"), q(lang, "q2")),
                cand(L["mumble2"]),
                agent(t(lang, "closing_unclear")),
            ],
        ),
        Conversation(
            "irrelevant: three off-topic answers",
            Status.IRRELEVANT,
            [L["consent_yes"], L["off1"], L["off2"], L["off3"]],
            [
                call("record_consent", consent_given=True),
                call("record_off_topic", raw_answer=L["off1"]),
                call("record_off_topic", raw_answer=L["off2"]),
                call("record_off_topic", raw_answer=L["off3"]),
            ],
            {
                "consent_given": True,
                "knockout_answers": [known_q1(lang), q2(lang, "irrelevant", L["off3"])],
            },
            [
                opening(lang),
                cand(L["consent_yes"]),
                agent(t(lang, "questions_intro"), q(lang, "q2")),
                cand(L["off1"]),
                agent(t(lang, "off_topic"), q(lang, "q2")),
                cand(L["off2"]),
                agent(t(lang, "off_topic"), q(lang, "q2")),
                cand(L["off3"]),
                agent(t(lang, "closing_irrelevant")),
            ],
        ),
        Conversation(
            "incomplete: hangs up after the knockout questions",
            Status.INCOMPLETE,
            [L["consent_yes"], L["exp_yes"]],
            [
                call("record_consent", consent_given=True),
                call(
                    "record_knockout_answer", question_id="q2", passed=True, raw_answer=L["exp_yes"]
                ),
            ],
            {
                "consent_given": True,
                "passed_knockout": True,
                "knockout_answers": [known_q1(lang), q2(lang, "pass", L["exp_yes"])],
            },
            [
                opening(lang),
                cand(L["consent_yes"]),
                agent(t(lang, "questions_intro"), q(lang, "q2")),
                cand(L["exp_yes"]),
                agent(q(lang, "oq1")),
            ],
        ),
        Conversation(
            "incomplete: silence after 'are you still there?'",
            Status.INCOMPLETE,
            [L["consent_yes"], Silence(), Silence()],
            [call("record_consent", consent_given=True)],
            {"consent_given": True, "knockout_answers": [known_q1(lang)]},
            [
                opening(lang),
                cand(L["consent_yes"]),
                agent(t(lang, "questions_intro"), q(lang, "q2")),
                agent(t(lang, "still_there"), q(lang, "q2")),
                agent(t(lang, "closing_silence")),
            ],
        ),
        Conversation(
            "incomplete: the maximum call duration passes",
            Status.INCOMPLETE,
            [L["consent_yes"], TimeUp()],
            [call("record_consent", consent_given=True)],
            {"consent_given": True, "knockout_answers": [known_q1(lang)]},
            [
                opening(lang),
                cand(L["consent_yes"]),
                agent(t(lang, "questions_intro"), q(lang, "q2")),
                agent(t(lang, "closing_time_up")),
            ],
        ),
    ]


COMPLETED_TRANSCRIPT: dict[str, list[tuple[str, str]]] = {
    "nl": [
        agent(
            "Hallo Mark Verbeke, met de recruitmentassistent. Ik bel over je sollicitatie voor "
            "Bakkerij Medewerker. Ik ben een AI-assistent, geen mens. Dit gesprek wordt "
            "opgenomen en uitgeschreven zodat een recruiter je antwoorden kan bekijken. "
            "Ga je daarmee akkoord?"
        ),
        cand("Ja, dat is goed."),
        agent("Ik heb een paar korte vragen voor je. Heb je ervaring?"),
        cand("Ja, ik heb drie jaar in een bakkerij gewerkt."),
        agent("Waarom wil je hier werken?"),
        cand("Ik bak graag en de winkel ligt vlak bij mijn huis."),
        agent(
            "Bedankt voor je antwoorden. Ik kan je een gesprek aanbieden op dinsdag 4 maart om "
            "10 uur of woensdag 5 maart om 14 uur. Welk moment past jou het best?"
        ),
        cand("Dinsdag om tien uur past mij prima."),
        agent(
            "Top, je gesprek staat gepland op dinsdag 4 maart om 10 uur in ons kantoor "
            "Antwerpen Centrum, Mechelsesteenweg nummer 27. Bedankt voor je tijd. Een recruiter "
            "neemt snel contact met je op. Nog een fijne dag!"
        ),
    ],
    "en": [
        agent(
            "Hello Jane Doe, this is the recruitment assistant calling about your application "
            "for Bakery Assistant. I am an AI assistant, not a person. This call is recorded "
            "and transcribed so that a recruiter can review your answers. Do you agree to that?"
        ),
        cand("Yes, that's fine."),
        agent("I have a few short questions for you. Do you have experience in a bakery?"),
        cand("Yes, I worked in a bakery for three years."),
        agent("Why would you like to work here?"),
        cand("I love baking and the shop is close to my home."),
        agent(
            "Thank you for your answers. I can offer you an interview on Tuesday 4 March at "
            "10 am or Wednesday 5 March at 2 pm. Which moment suits you best?"
        ),
        cand("Tuesday at ten works for me."),
        agent(
            "Great, your interview is scheduled for Tuesday 4 March at 10 am at our London "
            "Bridge office, 12 Tooley Street. Thank you for your time. A recruiter will be in "
            "touch soon. Have a nice day!"
        ),
    ],
}

CASES = [
    pytest.param(lang, conv, id=f"{lang}-{conv.status.value}-{i}")
    for lang in ("nl", "en")
    for i, conv in enumerate(conversations(lang))
]


def _run(lang: str, conv: Conversation) -> tuple[TextScreening, ScriptedLLM]:
    scripted = ScriptedLLM(conv.script)
    metadata = dispatch_metadata(lang, **conv.dial)
    run = asyncio.run(
        run_text_screening_detailed(metadata, scripted, conv.turns, answering_machine=conv.machine)
    )
    return run, scripted


def _expected(lang: str, conv: Conversation) -> CandidateData:
    req = REQUESTS[lang]
    base: dict[str, Any] = {
        "call_id": req["call_id"],
        "status": conv.status,
        "attempt": 1,
        "language": lang,
        "phone_number": mask(req["phone_number"]),
        "metadata": req.get("metadata", {}),
        "transcript": [
            TranscriptTurn(turn_number=i, role=role, text=text)
            for i, (role, text) in enumerate(conv.transcript, start=1)
        ],
    }
    return CandidateData(**{**base, **conv.expected})


def _without_times(data: CandidateData) -> CandidateData:
    turns = [
        TranscriptTurn(turn_number=t.turn_number, role=t.role, text=t.text) for t in data.transcript
    ]
    return data.model_copy(update={"transcript": turns, "started_at": None, "ended_at": None})


def test_every_seed_status_has_a_conversation_in_both_languages() -> None:
    seed = {
        Status.COMPLETED,
        Status.VOICEMAIL,
        Status.NOT_INTERESTED,
        Status.KNOCKOUT_FAILED,
        Status.ESCALATED,
        Status.UNCLEAR,
        Status.IRRELEVANT,
        Status.INCOMPLETE,
    }
    for lang in ("nl", "en"):
        assert {c.status for c in conversations(lang)} == seed


@pytest.mark.parametrize(("lang", "conv"), CASES)
def test_conversation(lang: str, conv: Conversation) -> None:
    run, scripted = _run(lang, conv)
    data = run.result

    assert _without_times(data) == _expected(lang, conv)
    # Exactly one result per attempt, and the LLM was asked exactly as often as scripted.
    assert run.delivered == [data]
    assert scripted.overruns == 0
    assert scripted.remaining == 0
    assert len(scripted.requests) == conv.llm_requests

    # The full number never leaves the agent.
    assert REQUESTS[lang]["phone_number"] not in data.model_dump_json()

    # Real timestamps, in order.
    assert data.started_at is not None and data.ended_at is not None
    assert data.started_at <= data.ended_at
    previous = data.started_at
    for turn in data.transcript:
        assert turn.started_at is not None and turn.ended_at is not None
        assert previous <= turn.started_at <= turn.ended_at <= data.ended_at
        previous = turn.started_at

    # The line was ended: a transfer for a configured recruiter, a hang-up otherwise.
    if conv.dial.get("recruiter_number"):
        assert run.call.transferred_to == RECRUITER
        assert not run.call.hung_up
    else:
        assert run.call.hung_up
        assert run.call.transferred_to is None


def test_a_screening_that_breaks_midway_still_delivers_exactly_one_result() -> None:
    """The contract is one CandidateData per answered attempt, even when the session fails:
    without it the job would wait in `in_call` until its slot lease runs out."""
    sink = CollectingSink()

    def broken_candidate(_agent_text: str) -> str:
        raise RuntimeError("the line went dead")

    with pytest.raises(RuntimeError, match="line went dead"):
        asyncio.run(
            run_text_screening_detailed(
                dispatch_metadata("en"), ScriptedLLM(), broken_candidate, sink=sink
            )
        )
    (result,) = sink.results
    assert result.call_id == REQUESTS["en"]["call_id"]
    assert result.status == Status.INCOMPLETE.value
