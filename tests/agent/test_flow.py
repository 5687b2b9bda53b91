"""The pure flow, case by case: skipping, resuming, refusals the LLM hears, scheduling,
escalation and language."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent import flow as f
from agent import templates
from agent.plan import ScreeningPlan
from dialer.messages import ResumeState
from dialer.models import KnockoutAnswer, OpenAnswer, SessionInput, Status
from tests.agent.requests import REQUESTS, request


def seed_flow(lang: str = "nl", **config: object) -> f.ScreeningFlow:
    """The flow for the seed request as the worker plans it, with FlowConfig overrides."""
    overrides = config.pop("request_overrides", {})
    assert isinstance(overrides, dict)
    plan = ScreeningPlan.from_request(request(lang, **overrides))
    return f.ScreeningFlow(replace(plan.flow_config(), **config))  # type: ignore[arg-type]


def say(step: f.Step) -> list[str]:
    return [u.kind for u in step.say]


def test_greeting_discloses_ai_and_asks_consent_first() -> None:
    flow = seed_flow()
    step = flow.start()
    assert say(step) == ["greeting_named", "ai_disclosure", "consent_question"]
    assert flow.stage is f.Stage.CONSENT
    assert flow.asked == []


def test_known_affirmative_answer_skips_the_question() -> None:
    flow = seed_flow()
    flow.start()
    step = flow.handle(f.ConsentAnswered(True))
    assert say(step) == ["questions_intro", "question:q2"]
    assert flow.skipped == {"q1"}
    assert flow.knockout_answers[0].result == "pass"
    assert flow.knockout_answers[0].raw_answer == "ja"


@pytest.mark.parametrize(
    ("value", "polarity"),
    [
        ("ja", True),
        ("Ja, ik heb een werkvergunning", True),
        ("YES", True),
        ("oui", True),
        ("nee", False),
        ("Nein.", False),
        ("misschien", None),
        ("", None),
        ("3 jaar", None),
    ],
)
def test_known_answer_polarity(value: str, polarity: bool | None) -> None:
    assert f.known_answer_polarity(value) is polarity


@pytest.mark.parametrize("known", ["nee", "misschien"])
def test_negative_or_unclear_known_answer_is_asked_again(known: str) -> None:
    flow = seed_flow(
        request_overrides={"candidate_record": {"known_answers": {"work_permit": known}}}
    )
    flow.start()
    step = flow.handle(f.ConsentAnswered(True))
    assert say(step) == ["questions_intro", "question:q1"]
    assert flow.skipped == set()


def test_refusals_name_the_problem_for_the_llm() -> None:
    flow = seed_flow()
    flow.start()
    with pytest.raises(f.FlowError, match=r"question 'q2' is not being asked now"):
        flow.handle(f.KnockoutAnswered("q2", True, "ja"))  # consent comes first
    flow.handle(f.ConsentAnswered(True))
    with pytest.raises(f.FlowError, match="record_consent is only for the consent question"):
        flow.handle(f.ConsentAnswered(True))
    with pytest.raises(f.FlowError, match="unknown question id 'q9'"):
        flow.handle(f.KnockoutAnswered("q9", True, "ja"))
    with pytest.raises(f.FlowError, match="question 'oq1' is not being asked now"):
        flow.handle(f.OpenAnswered("oq1", "iets"))
    with pytest.raises(f.FlowError, match="question 'q1' is not being asked now"):
        flow.handle(f.KnockoutAnswered("q1", True, "ja"))  # skipped: known answer
    with pytest.raises(f.FlowError, match="scheduling has not started"):
        flow.handle(f.TimeslotChosen("dinsdag 4 maart om 10 uur"))
    with pytest.raises(f.FlowError, match="other-vacancies question has not been asked"):
        flow.handle(f.OtherVacanciesAnswered(True))
    with pytest.raises(f.FlowError, match="answer_summary is empty"):
        flow.handle(f.KnockoutAnswered("q2", True, "ja"))
        flow.handle(f.OpenAnswered("oq1", "  "))


def test_timeslot_must_be_one_of_the_offered_ones() -> None:
    flow = seed_flow()
    flow.start()
    flow.handle(f.ConsentAnswered(True))
    flow.handle(f.KnockoutAnswered("q2", True, "ja"))
    step = flow.handle(f.OpenAnswered("oq1", "Bakt graag"))
    assert say(step) == ["scheduling_offer"]
    with pytest.raises(f.FlowError, match="Offered exactly: dinsdag 4 maart om 10 uur; woens"):
        flow.handle(f.TimeslotChosen("vrijdag"))
    step = flow.handle(f.TimeslotChosen("  Woensdag 5 maart om 14 uur. "))  # case, spacing
    assert flow.chosen_timeslot == "woensdag 5 maart om 14 uur"
    assert say(step) == ["scheduling_confirm_full", "closing_completed"]
    assert step.status is Status.COMPLETED and step.end is f.EndAction.HANG_UP


def test_no_timeslots_records_a_preference() -> None:
    flow = seed_flow(timeslots=())
    flow.start()
    flow.handle(f.ConsentAnswered(True))
    flow.handle(f.KnockoutAnswered("q2", True, "ja"))
    step = flow.handle(f.OpenAnswered("oq1", "Bakt graag"))
    assert say(step) == ["scheduling_preference"]
    with pytest.raises(f.FlowError, match="use record_scheduling_preference"):
        flow.handle(f.TimeslotChosen("maandag"))
    step = flow.handle(f.PreferenceGiven("liefst 's ochtends"))
    assert flow.scheduling_preference == "liefst 's ochtends"
    assert say(step) == ["preference_noted", "closing_completed"]


def test_existing_booking_skips_scheduling_and_keeps_the_date() -> None:
    flow = seed_flow(
        request_overrides={
            "candidate_record": {
                "known_answers": {"work_permit": "ja"},
                "existing_booking_date": "dinsdag 4 maart om 10 uur",
            }
        }
    )
    flow.start()
    flow.handle(f.ConsentAnswered(True))
    flow.handle(f.KnockoutAnswered("q2", True, "ja"))
    step = flow.handle(f.OpenAnswered("oq1", "Bakt graag"))
    assert say(step) == ["existing_booking", "closing_completed"]
    assert "dinsdag 4 maart om 10 uur" in step.text
    assert flow.status is Status.COMPLETED
    assert flow.chosen_timeslot == "dinsdag 4 maart om 10 uur"


def test_without_consent_required_the_questions_start_after_the_greeting() -> None:
    flow = seed_flow(request_overrides={"require_consent": False})
    step = flow.start()
    assert say(step) == ["greeting_named", "ai_disclosure", "questions_intro", "question:q2"]
    assert flow.consent_given is False


def test_returning_and_anonymous_greetings() -> None:
    known = seed_flow(request_overrides={"candidate_known": True})
    assert say(known.start())[0] == "greeting_returning"
    anonymous = seed_flow(request_overrides={"candidate_name": ""})
    assert say(anonymous.start())[0] == "greeting_generic"


def test_resume_skips_what_an_earlier_attempt_collected() -> None:
    resume = ResumeState(
        consent_given=True,
        knockout_answers=[
            KnockoutAnswer(question_id="q2", result="pass", raw_answer="ja, drie jaar")
        ],
    )
    flow = seed_flow(resume=resume)
    step = flow.start()
    assert say(step) == [
        "greeting_named",
        "ai_disclosure",
        "resume_intro",
        "questions_intro",
        "question:oq1",
    ]
    assert flow.consent_given
    assert flow.skipped == {"q1", "q2"}
    flow.handle(f.OpenAnswered("oq1", "Bakt graag"))
    flow.handle(f.TimeslotChosen("dinsdag 4 maart om 10 uur"))
    assert flow.status is Status.COMPLETED
    assert [a.raw_answer for a in flow.knockout_answers] == ["ja", "ja, drie jaar"]
    assert flow.asked == ["oq1"]


def test_resume_with_every_answer_goes_straight_to_scheduling() -> None:
    resume = ResumeState(
        consent_given=True,
        knockout_answers=[KnockoutAnswer(question_id="q2", result="pass")],
        open_answers=[OpenAnswer(question_id="oq1", answer_summary="Bakt graag")],
    )
    flow = seed_flow(resume=resume)
    step = flow.start()
    assert say(step)[-1] == "scheduling_offer"
    assert flow.asked == []


def test_resume_after_a_failed_knockout_asks_about_other_vacancies() -> None:
    resume = ResumeState(
        consent_given=True,
        knockout_answers=[KnockoutAnswer(question_id="q2", result="fail", raw_answer="nee")],
    )
    flow = seed_flow(resume=resume)
    assert say(flow.start())[-1] == "other_vacancies"
    flow.handle(f.OtherVacanciesAnswered(True))
    assert flow.status is Status.KNOCKOUT_FAILED
    assert flow.asked == []


def test_escalation_transfers_only_with_a_recruiter_line() -> None:
    flow = seed_flow(can_transfer=True)
    flow.start()
    step = flow.handle(f.EscalationRequested("wil een mens", "mag ik iemand spreken"))
    assert step.end is f.EndAction.TRANSFER
    assert say(step) == ["escalation_transfer"]
    assert flow.status is Status.ESCALATED
    assert flow.knockout_answers[-1].question_id == "q1"  # consent stage: nothing recorded


def test_escalation_not_allowed_keeps_the_screening_going() -> None:
    flow = seed_flow(request_overrides={"allow_escalation": False})
    flow.start()
    flow.handle(f.ConsentAnswered(True))
    step = flow.handle(f.EscalationRequested("wil een mens"))
    assert say(step) == ["escalation_unavailable", "question:q2"]
    assert not flow.done


def test_answering_machine_only_before_anyone_answered() -> None:
    flow = seed_flow()
    flow.start()
    flow.handle(f.ConsentAnswered(True))
    with pytest.raises(f.FlowError, match="not an answering machine"):
        flow.handle(f.AnsweringMachine())
    machine = seed_flow(leave_voicemail=False)
    step = machine.handle(f.AnsweringMachine())  # AMD, before the greeting
    assert step.say == () and machine.status is Status.VOICEMAIL and machine.voicemail_detected


def test_language_change_moves_templates_but_not_question_texts() -> None:
    flow = seed_flow()
    flow.start()
    step = flow.handle(f.LanguageChanged("en-GB", repeat_prompt=True))
    assert flow.language == "en"
    [consent] = step.say
    assert consent.language == "en"
    assert consent.text == templates.render("en", "consent_question")[0]
    step = flow.handle(f.ConsentAnswered(True))
    intro, question = step.say
    assert (intro.language, question.language) == ("en", "nl")  # the request's question text
    assert question.text == "Heb je ervaring?"
    with pytest.raises(f.FlowError, match="not supported"):
        flow.handle(f.LanguageChanged("klingon"))


def test_every_language_has_its_own_written_wording() -> None:
    flow = seed_flow(language="pl")
    step = flow.start()
    assert flow.language == "pl"
    assert {u.language for u in step.say} == {"pl"}  # said as written, nothing to translate


def test_no_questions_at_all_goes_to_scheduling() -> None:
    seed_only = {k: v for k, v in REQUESTS["nl"].items() if k in SessionInput.model_fields}
    req = SessionInput.model_validate(seed_only | {"knockout_questions": [], "open_questions": []})
    flow = f.ScreeningFlow(f.FlowConfig(request=req, language="nl"))
    flow.start()
    step = flow.handle(f.ConsentAnswered(True))
    assert say(step) == ["scheduling_preference"]
    assert flow.passed_knockout


def test_a_resume_that_only_carries_known_answers_is_not_a_second_conversation() -> None:
    """After a voicemail attempt the dial task passes the record's known answers back: the
    candidate has never been spoken to, so the greeting does not say "we spoke before"."""
    resume = ResumeState(
        knockout_answers=[
            KnockoutAnswer(
                question_id="q1", result="pass", raw_answer="ja", candidate_note=f.KNOWN_ANSWER_NOTE
            )
        ]
    )
    flow = seed_flow(resume=resume)
    assert say(flow.start()) == ["greeting_named", "ai_disclosure", "consent_question"]
