"""Property tests on the pure flow: any request, any sequence of events.

Whatever the LLM and the call throw at it, the flow ends in one of the seed's eight statuses
with a result that validates, never asks a skipped question, never lets a counter pass its limit,
and leaves its state untouched when it refuses an event.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import flow as f
from agent.results import Transcript, build_candidate_data
from dialer.messages import ResumeState
from dialer.models import SEED_STATUSES, KnockoutAnswer, OpenAnswer, SessionInput, Status

KNOWN_VALUES = ["ja", "yes", "Oui, bien sûr", "nee", "no", "misschien", "3 jaar", ""]


@st.composite
def configs(draw: st.DrawFn) -> f.FlowConfig:
    n_ko = draw(st.integers(0, 4))
    n_open = draw(st.integers(0, 3))
    knockout = [
        {"id": f"q{i}", "text": f"Knockout {i}?", "internal_id": f"crm_{i}", "data_key": f"k{i}"}
        for i in range(1, n_ko + 1)
    ]
    opens = [{"id": f"oq{i}", "text": f"Open {i}?"} for i in range(1, n_open + 1)]
    known = {
        q["data_key"]: draw(st.sampled_from(KNOWN_VALUES)) for q in knockout if draw(st.booleans())
    }
    booking = draw(st.sampled_from([None, "dinsdag 4 maart om 10 uur"]))
    request = SessionInput.model_validate(
        {
            "call_id": "prop-1",
            "candidate_name": draw(st.sampled_from(["", "Mark Verbeke"])),
            "candidate_known": draw(st.booleans()),
            "candidate_record": {"known_answers": known, "existing_booking_date": booking},
            "job_title": "Bakker",
            "office_location": draw(st.sampled_from(["", "Antwerpen"])),
            "office_address": draw(st.sampled_from(["", "Mechelsesteenweg 27"])),
            "knockout_questions": knockout,
            "open_questions": opens,
            "allow_escalation": draw(st.booleans()),
            "require_consent": draw(st.booleans()),
        }
    )
    resume = None
    if draw(st.booleans()):
        resume = ResumeState(
            consent_given=draw(st.booleans()),
            knockout_answers=[
                KnockoutAnswer(
                    question_id=str(q["id"]),
                    result=draw(st.sampled_from(["pass", "pass", "fail", "unclear"])),
                    raw_answer="earlier",
                )
                for q in knockout
                if draw(st.booleans())
            ],
            open_answers=[
                OpenAnswer(question_id=str(q["id"]), answer_summary="earlier")
                for q in opens
                if draw(st.booleans())
            ],
        )
    slots = draw(st.lists(st.sampled_from(["ma 10u", "di 14u", "wo 9u"]), max_size=3, unique=True))
    return f.FlowConfig(
        request=request,
        language=draw(st.sampled_from(["nl", "en", "fr", "de", "pl"])),
        timeslots=tuple(slots),
        can_transfer=draw(st.booleans()),
        leave_voicemail=draw(st.booleans()),
        resume=resume,
    )


QUESTION_IDS = st.sampled_from(["q1", "q2", "q3", "q4", "oq1", "oq2", "oq3", "nope"])
TEXT = st.sampled_from(["ja", "nee", "hmm", "", "Ik hou van bakken", "ma 10u", "MA 10U ", "zo 8u"])

EVENTS: st.SearchStrategy[f.Event] = st.one_of(
    st.builds(f.ConsentAnswered, st.booleans()),
    st.builds(f.KnockoutAnswered, QUESTION_IDS, st.booleans(), TEXT, TEXT),
    st.builds(f.OpenAnswered, QUESTION_IDS, TEXT, TEXT),
    st.builds(f.AnswerUnclear, TEXT, st.one_of(st.none(), QUESTION_IDS)),
    st.builds(f.OffTopic, TEXT),
    st.builds(f.OtherVacanciesAnswered, st.booleans()),
    st.builds(f.TimeslotChosen, TEXT),
    st.builds(f.PreferenceGiven, TEXT),
    st.builds(f.EscalationRequested, TEXT, TEXT),
    st.builds(f.NotInterested, TEXT),
    st.just(f.DoNotCall()),
    st.just(f.AnsweringMachine()),
    st.just(f.Silence()),
    st.just(f.TimeUp()),
    st.builds(f.LanguageChanged, st.sampled_from(["en", "nl", "fr", "xx"]), st.booleans()),
)


def _snapshot(flow: f.ScreeningFlow) -> dict[str, Any]:
    return copy.deepcopy({k: v for k, v in vars(flow).items() if k != "config"})


def _check_counters(flow: f.ScreeningFlow) -> None:
    assert 0 <= flow.counters.unclear <= f.MAX_UNCLEAR
    assert 0 <= flow.counters.off_topic <= f.MAX_OFF_TOPIC
    assert 0 <= flow.counters.silence <= f.MAX_SILENCE


def _question_order(config: f.FlowConfig) -> list[str]:
    req = config.request
    return [q.id for q in req.knockout_questions] + [q.id for q in req.open_questions]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs(), events=st.lists(EVENTS, max_size=25), start=st.booleans())
def test_any_event_sequence_ends_in_a_valid_status(
    config: f.FlowConfig, events: list[f.Event], start: bool
) -> None:
    flow = f.ScreeningFlow(config)
    skipped_at_start = set(flow.skipped)
    if start:
        flow.start()
    for event in events:
        before = _snapshot(flow)
        was_done = flow.done
        try:
            step = flow.handle(event)
        except f.FlowError as exc:
            assert str(exc), "a refusal must say why (the LLM hears it)"
            assert _snapshot(flow) == before, f"{event!r} was refused but changed the state"
            continue
        _check_counters(flow)
        # A step ends the call exactly when it moved the flow to DONE.
        assert (step.end is not None) == (flow.done and not was_done)
        assert (step.status is not None) == (step.end is not None)
        for utterance in step.say:
            assert utterance.text.strip()

    flow.handle(f.HungUp())  # the line is closed at the latest now
    _check_counters(flow)
    assert flow.done
    assert flow.status in SEED_STATUSES

    # Skipped questions are never asked; questions are put once, in the request's order.
    assert skipped_at_start == flow.skipped
    assert not set(flow.asked) & flow.skipped
    assert len(flow.asked) == len(set(flow.asked))
    order = _question_order(config)
    assert flow.asked == sorted(flow.asked, key=order.index)

    # The result is a valid CandidateData that agrees with the status.
    now = datetime.now(UTC)
    data = build_candidate_data(
        flow, attempt=1, transcript=Transcript(), started_at=now, ended_at=now
    )
    answered_ids = {a.question_id for a in data.knockout_answers}
    assert answered_ids <= {q.id for q in config.request.knockout_questions}
    if data.status is Status.VOICEMAIL:
        assert data.voicemail_detected
    if data.voicemail_detected:
        assert data.status is Status.VOICEMAIL
    if data.status is Status.KNOCKOUT_FAILED:
        assert data.interested_in_alternatives
        assert any(a.result == "fail" for a in data.knockout_answers)
        assert not data.passed_knockout
    if data.do_not_call_requested:
        assert data.status is Status.NOT_INTERESTED
    if data.status is Status.ESCALATED:
        assert config.request.allow_escalation
    if data.status is Status.COMPLETED:
        assert data.passed_knockout
        assert len(data.knockout_answers) == len(config.request.knockout_questions)
        assert len(data.open_answers) == len(config.request.open_questions)
        assert data.chosen_timeslot is not None or data.scheduling_preference is not None
        assert not config.request.require_consent or data.consent_given
    if data.chosen_timeslot is not None:
        allowed = set(config.timeslots)
        allowed.add(config.request.candidate_record.existing_booking_date or "")
        if config.resume is not None and config.resume.chosen_timeslot:
            allowed.add(config.resume.chosen_timeslot)
        assert data.chosen_timeslot in allowed

    # After the end, the LLM is told the call is over; the call's own events are harmless.
    for late in (f.ConsentAnswered(True), f.DoNotCall(), f.OffTopic("x")):
        try:
            flow.handle(late)
        except f.FlowError:
            pass
        else:  # pragma: no cover
            raise AssertionError(f"{late!r} accepted after the end")
    assert flow.handle(f.HungUp()) == f.Step()
    assert flow.handle(f.Silence()) == f.Step()


NOISE: st.SearchStrategy[f.Event] = st.one_of(
    st.builds(f.OffTopic, TEXT),
    st.builds(f.AnswerUnclear, TEXT),
    st.just(f.Silence()),
    st.builds(f.EscalationRequested, TEXT, TEXT),
)


@settings(max_examples=300, deadline=None)
@given(config=configs(), noise=st.lists(NOISE, min_size=1, max_size=30), consent=st.booleans())
def test_counters_never_exceed_their_limits(
    config: f.FlowConfig, noise: list[f.Event], consent: bool
) -> None:
    """Bursts of off-topic, unclear and silent turns end the call at their limit, never later."""
    flow = f.ScreeningFlow(config)
    flow.start()
    if consent and flow.stage is f.Stage.CONSENT:
        flow.handle(f.ConsentAnswered(True))
    off_topic = unclear = silence = 0
    for event in noise:
        if flow.done:
            break
        flow.handle(event)
        _check_counters(flow)
        off_topic += isinstance(event, f.OffTopic)
        if isinstance(event, f.OffTopic) and off_topic >= f.MAX_OFF_TOPIC:
            assert flow.done and flow.status is Status.IRRELEVANT
        if isinstance(event, f.AnswerUnclear):
            unclear += 1
            if unclear >= f.MAX_UNCLEAR:
                assert flow.done and flow.status is Status.UNCLEAR
        silence = silence + 1 if isinstance(event, f.Silence) else 0
        if silence >= f.MAX_SILENCE:
            assert flow.done and flow.status is Status.INCOMPLETE


@settings(max_examples=200, deadline=None)
@given(config=configs(), data=st.data())
def test_a_cooperative_candidate_completes_with_at_most_one_question_per_turn(
    config: f.FlowConfig, data: st.DataObject
) -> None:
    """Answering whatever is asked (yes to consent and knockouts) always completes, and each
    answer puts at most one new question."""
    flow = f.ScreeningFlow(config)
    flow.start()
    turns = 0
    while not flow.done:
        turns += 1
        assert turns < 50
        asked_before = len(flow.asked)
        if flow.stage is f.Stage.CONSENT:
            flow.handle(f.ConsentAnswered(True))
        elif flow.stage is f.Stage.KNOCKOUT:
            q = flow.current_question
            assert q is not None and q.id not in flow.skipped
            flow.handle(f.KnockoutAnswered(q.id, True, "ja"))
        elif flow.stage is f.Stage.OPEN:
            q = flow.current_question
            assert q is not None and q.id not in flow.skipped
            flow.handle(f.OpenAnswered(q.id, "samenvatting"))
        elif flow.stage is f.Stage.OTHER_VACANCIES:  # a resumed attempt had failed one
            flow.handle(f.OtherVacanciesAnswered(data.draw(st.booleans())))
        elif flow.stage is f.Stage.SCHEDULING:
            if config.timeslots:
                flow.handle(f.TimeslotChosen(data.draw(st.sampled_from(config.timeslots))))
            else:
                flow.handle(f.PreferenceGiven("ochtend"))
        assert len(flow.asked) - asked_before <= 1
    resumed_fail = config.resume is not None and any(
        a.result == "fail" for a in config.resume.knockout_answers
    )
    if resumed_fail:
        assert flow.status in (Status.KNOCKOUT_FAILED, Status.NOT_INTERESTED)
    else:
        assert flow.status is Status.COMPLETED
        assert flow.passed_knockout
