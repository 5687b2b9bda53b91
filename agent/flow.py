"""The screening conversation as a deterministic state machine. Pure Python: no LiveKit imports.

The LLM interprets what the candidate says and turns it into an event (through a tool call);
this machine alone decides what happens next and what is said. Each `handle(event)` returns a
`Step`: the utterances to speak (fixed wording from `agent.templates` or the request's own
question texts) and, at the end, how to end the call. An event that does not fit the current
stage raises `FlowError` with a message written for the LLM (the tool layer turns it into a
`ToolError`), and leaves the state untouched.

Stages: greeting -> consent (when `require_consent`) -> knockout questions -> open questions ->
scheduling -> done; a failed knockout detours through "other vacancies?" to the end.

Statuses (the seed's eight):
- completed: every question answered; a timeslot chosen, a preference recorded, or an existing
  booking kept.
- voicemail: an answering machine (`voicemail_detected=true`); the localised message is left only
  when the dial context says so, and never into a mailbox that is full or not set up
  (`voicemail_note` says so).
- not_interested: the candidate declines to go on, declines recording consent
  (`consent_given=false`: without consent the screening cannot take place, and "declined" is a
  dial outcome, not a conversation status), asks not to be called again
  (`do_not_call_requested=true`), or fails a knockout and wants no other vacancies.
- knockout_failed: failed a knockout, interested in other vacancies.
- escalated: asked for a human recruiter (transferred when a recruiter number is configured).
- unclear: an answer stayed unclear after one re-ask.
- irrelevant: three off-topic answers.
- incomplete: hang-up, silence (no answer after "are you still there?"), or the maximum call
  duration; the answers so far are kept, and a retry resumes after them.

Skipping: a knockout question whose `data_key` has an affirmative answer in
`candidate_record.known_answers` (ja / yes / oui / ...) is not asked and is recorded as `pass`
with the known answer; a negative or free-text known answer is asked again, because a failed
knockout must come from the candidate, never silently from stale data. Answers carried by a
resumed attempt (`ResumeState`) are kept and their questions not asked again.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum

from agent import templates
from agent.languages import normalize_language
from dialer.messages import ResumeState
from dialer.models import (
    KnockoutAnswer,
    KnockoutQuestion,
    KnockoutResult,
    OpenAnswer,
    OpenQuestion,
    SessionInput,
    Status,
)

MAX_UNCLEAR = 2  # unclear answers to one prompt: the first is re-asked, the second ends the call
MAX_OFF_TOPIC = 3  # off-topic answers in a call: the third ends it as `irrelevant`
MAX_SILENCE = 2  # silences in a row: the first gets "are you still there?", the second ends it
KNOWN_ANSWER_NOTE = "known from the candidate record; not asked"
MAILBOX_UNAVAILABLE_NOTE = "mailbox full or not set up; no message left"


class Stage(StrEnum):
    GREETING = "greeting"
    CONSENT = "consent"
    KNOCKOUT = "knockout"
    OTHER_VACANCIES = "other_vacancies"
    OPEN = "open"
    SCHEDULING = "scheduling"
    DONE = "done"


ACTIVE_STAGES = frozenset(
    {Stage.CONSENT, Stage.KNOCKOUT, Stage.OTHER_VACANCIES, Stage.OPEN, Stage.SCHEDULING}
)


class EndAction(StrEnum):
    HANG_UP = "hang_up"
    TRANSFER = "transfer"


class FlowError(Exception):
    """An event that does not fit the conversation now. The message is meant for the LLM."""


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """The call is connected (and is a person, as far as we know): greet."""


@dataclass(frozen=True)
class ConsentAnswered:
    given: bool


@dataclass(frozen=True)
class KnockoutAnswered:
    question_id: str
    passed: bool
    raw_answer: str
    note: str = ""


@dataclass(frozen=True)
class OpenAnswered:
    question_id: str
    summary: str
    note: str = ""


@dataclass(frozen=True)
class AnswerUnclear:
    raw_answer: str = ""
    question_id: str | None = None


@dataclass(frozen=True)
class OffTopic:
    raw_answer: str = ""


@dataclass(frozen=True)
class OtherVacanciesAnswered:
    interested: bool


@dataclass(frozen=True)
class TimeslotChosen:
    timeslot: str


@dataclass(frozen=True)
class PreferenceGiven:
    preference: str


@dataclass(frozen=True)
class EscalationRequested:
    reason: str = ""
    raw_answer: str = ""


@dataclass(frozen=True)
class NotInterested:
    reason: str = ""


@dataclass(frozen=True)
class DoNotCall:
    pass


@dataclass(frozen=True)
class AnsweringMachine:
    # AMD's "machine-unavailable": the mailbox is full or not set up, no message can be left.
    mailbox_unavailable: bool = False


@dataclass(frozen=True)
class Silence:
    pass


@dataclass(frozen=True)
class HungUp:
    pass


@dataclass(frozen=True)
class TimeUp:
    pass


@dataclass(frozen=True)
class LanguageChanged:
    language: str
    repeat_prompt: bool = False


Event = (
    Start
    | ConsentAnswered
    | KnockoutAnswered
    | OpenAnswered
    | AnswerUnclear
    | OffTopic
    | OtherVacanciesAnswered
    | TimeslotChosen
    | PreferenceGiven
    | EscalationRequested
    | NotInterested
    | DoNotCall
    | AnsweringMachine
    | Silence
    | HungUp
    | TimeUp
    | LanguageChanged
)

# Events that come from the candidate's words (through the LLM); the others come from the call.
CANDIDATE_EVENTS = (
    ConsentAnswered,
    KnockoutAnswered,
    OpenAnswered,
    AnswerUnclear,
    OffTopic,
    OtherVacanciesAnswered,
    TimeslotChosen,
    PreferenceGiven,
    EscalationRequested,
    NotInterested,
    DoNotCall,
)


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Utterance:
    text: str
    language: str  # the language `text` is written in (may differ from the call's language)
    kind: str  # template key, or "question:<id>"


@dataclass(frozen=True)
class Step:
    say: tuple[Utterance, ...] = ()
    end: EndAction | None = None
    status: Status | None = None

    @property
    def text(self) -> str:
        return " ".join(u.text for u in self.say)


@dataclass(frozen=True)
class FlowConfig:
    request: SessionInput
    language: str = "en"  # language the call starts in (the request's questions are in it)
    timeslots: tuple[str, ...] = ()
    can_transfer: bool = False  # a recruiter number is configured for SIP transfer
    leave_voicemail: bool = True
    resume: ResumeState | None = None


# ---------------------------------------------------------------------------------------------
# Known answers
# ---------------------------------------------------------------------------------------------

_YES = {
    "yes", "y", "yeah", "yep", "true", "ok", "ja", "jawel", "jazeker", "zeker", "oui", "si",
    "sim", "da", "tak", "evet", "igen", "ano", "áno", "kyllä", "joo", "ναι", "да", "так", "có",
    "ya", "iya", "1", "x", "✓",
}  # fmt: skip
_NO = {
    "no", "n", "nope", "false", "nee", "neen", "non", "nein", "nej", "nie", "não", "nao", "ne",
    "hayır", "nem", "ei", "όχι", "нет", "ні", "không", "tidak", "0",
}  # fmt: skip
_WORD = re.compile(r"[\w✓]+", re.UNICODE)


def known_answer_polarity(value: str) -> bool | None:
    """True for an affirmative known answer, False for a negative one, None if neither."""
    text = unicodedata.normalize("NFC", value).strip().lower()
    words = _WORD.findall(text)
    if not words:
        return None
    first = words[0]
    if first in _YES or text in _YES:
        return True
    if first in _NO or text in _NO:
        return False
    return None


# ---------------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------------


@dataclass
class _Counters:
    unclear: int = 0  # for the current prompt
    off_topic: int = 0  # in the whole call
    silence: int = 0  # in a row


@dataclass
class ScreeningFlow:
    config: FlowConfig
    stage: Stage = Stage.GREETING
    language: str = "en"
    status: Status | None = None
    end: EndAction | None = None
    consent_given: bool = False
    voicemail_detected: bool = False
    interested_in_alternatives: bool = False
    do_not_call_requested: bool = False
    chosen_timeslot: str | None = None
    scheduling_preference: str | None = None
    escalation_reason: str | None = None
    voicemail_note: str = ""  # why no voicemail message was left, when a machine answered
    counters: _Counters = field(default_factory=_Counters)
    asked: list[str] = field(default_factory=list)  # question ids, in the order they were put
    skipped: set[str] = field(default_factory=set)  # question ids answered before this call
    candidate_events: int = 0
    _knockout: dict[str, KnockoutAnswer] = field(default_factory=dict)
    _open: dict[str, OpenAnswer] = field(default_factory=dict)
    _pending_knockout: list[KnockoutQuestion] = field(default_factory=list)
    _pending_open: list[OpenQuestion] = field(default_factory=list)
    _resumed_failed: bool = False
    _spoke_before: bool = False  # an earlier attempt reached the candidate (not just a mailbox)

    def __post_init__(self) -> None:
        self.language = normalize_language(self.config.language) or "en"
        self._prepare_questions()

    # -- read-only views -------------------------------------------------------------------

    @property
    def request(self) -> SessionInput:
        return self.config.request

    @property
    def done(self) -> bool:
        return self.stage is Stage.DONE

    @property
    def knockout_answers(self) -> list[KnockoutAnswer]:
        """Answers in the order of the request's questions."""
        return [
            self._knockout[q.id] for q in self.request.knockout_questions if q.id in self._knockout
        ]

    @property
    def open_answers(self) -> list[OpenAnswer]:
        return [self._open[q.id] for q in self.request.open_questions if q.id in self._open]

    @property
    def passed_knockout(self) -> bool:
        """Every knockout question answered `pass` (vacuously true without knockout questions)."""
        return all(
            q.id in self._knockout and self._knockout[q.id].result == "pass"
            for q in self.request.knockout_questions
        )

    @property
    def current_question(self) -> KnockoutQuestion | OpenQuestion | None:
        if self.stage is Stage.KNOCKOUT and self._pending_knockout:
            return self._pending_knockout[0]
        if self.stage is Stage.OPEN and self._pending_open:
            return self._pending_open[0]
        return None

    @property
    def offers_timeslots(self) -> bool:
        return bool(self.config.timeslots)

    @property
    def question_language(self) -> str:
        return normalize_language(self.config.language) or "en"

    # -- events ----------------------------------------------------------------------------

    def start(self) -> Step:
        return self.handle(Start())

    def candidate_spoke(self) -> None:
        """The candidate said something (any final transcript, even one no tool records): a
        later silence gets "are you still there?" again instead of ending the call."""
        self.counters.silence = 0

    def handle(self, event: Event) -> Step:
        if self.stage is Stage.DONE:
            if isinstance(event, (HungUp, TimeUp, Silence, AnsweringMachine, LanguageChanged)):
                return Step()
            raise FlowError("the conversation has already ended; do not call any more tools")
        if isinstance(event, CANDIDATE_EVENTS) and self.stage is Stage.GREETING:
            raise FlowError("the call has not started yet")
        step = self._dispatch(event)
        if isinstance(event, CANDIDATE_EVENTS):
            self.candidate_events += 1
            self.counters.silence = 0
        return step

    def _dispatch(self, event: Event) -> Step:
        match event:
            case Start():
                return self._on_start()
            case ConsentAnswered(given=given):
                self._expect(Stage.CONSENT, "record_consent is only for the consent question")
                return self._on_consent(given)
            case KnockoutAnswered():
                return self._on_knockout(event)
            case OpenAnswered():
                return self._on_open(event)
            case AnswerUnclear():
                return self._on_unclear(event)
            case OffTopic(raw_answer=raw):
                return self._on_off_topic(raw)
            case OtherVacanciesAnswered(interested=interested):
                self._expect(
                    Stage.OTHER_VACANCIES,
                    "the other-vacancies question has not been asked; it follows a failed "
                    "knockout question",
                )
                return self._on_other_vacancies(interested)
            case TimeslotChosen(timeslot=slot):
                return self._on_timeslot(slot)
            case PreferenceGiven(preference=pref):
                return self._on_preference(pref)
            case EscalationRequested(reason=reason, raw_answer=raw):
                return self._on_escalation(reason, raw)
            case NotInterested():
                return self._finish(Status.NOT_INTERESTED, "closing_not_interested")
            case DoNotCall():
                self.do_not_call_requested = True
                return self._finish(Status.NOT_INTERESTED, "closing_dnc")
            case AnsweringMachine(mailbox_unavailable=unavailable):
                return self._on_answering_machine(unavailable)
            case Silence():
                return self._on_silence()
            case HungUp():
                return self._finish(Status.INCOMPLETE, None)
            case TimeUp():
                return self._finish(Status.INCOMPLETE, "closing_time_up")
            case LanguageChanged(language=language, repeat_prompt=repeat):
                return self._on_language(language, repeat)
        raise FlowError(f"unknown event {event!r}")  # pragma: no cover

    # -- handlers --------------------------------------------------------------------------

    def _on_start(self) -> Step:
        req = self.request
        params = self._params()
        resumed = self._spoke_before
        if req.candidate_name.strip():
            greeting = "greeting_returning" if req.candidate_known else "greeting_named"
        else:
            greeting = "greeting_generic"
        say = [self._t(greeting, **params), self._t("ai_disclosure")]
        if resumed:
            say.append(self._t("resume_intro"))
        if req.require_consent and not self.consent_given:
            self.stage = Stage.CONSENT
            say.append(self._t("consent_question"))
            return Step(tuple(say))
        if self._pending_knockout or self._pending_open:
            say.append(self._t("questions_intro"))
        return self._advance(prefix=say)

    def _on_consent(self, given: bool) -> Step:
        if not given:
            self.consent_given = False
            return self._finish(Status.NOT_INTERESTED, "closing_consent_declined")
        self.consent_given = True
        intro = [self._t("questions_intro")] if self._has_questions() else []
        return self._advance(prefix=intro)

    def _on_knockout(self, ev: KnockoutAnswered) -> Step:
        question = self._check_question(ev.question_id, Stage.KNOCKOUT)
        assert isinstance(question, KnockoutQuestion)
        self._knockout[question.id] = KnockoutAnswer(
            question_id=question.id,
            internal_id=question.internal_id,
            question_text=question.text,
            result="pass" if ev.passed else "fail",
            raw_answer=ev.raw_answer.strip(),
            candidate_note=ev.note.strip(),
        )
        self._pending_knockout.pop(0)
        self.counters.unclear = 0
        if not ev.passed:
            self.stage = Stage.OTHER_VACANCIES
            return Step((self._t("other_vacancies"),))
        return self._advance()

    def _on_open(self, ev: OpenAnswered) -> Step:
        question = self._check_question(ev.question_id, Stage.OPEN)
        assert isinstance(question, OpenQuestion)
        if not ev.summary.strip():
            raise FlowError("answer_summary is empty: summarise the candidate's answer")
        self._open[question.id] = OpenAnswer(
            question_id=question.id,
            internal_id=question.internal_id,
            question_text=question.text,
            answer_summary=ev.summary.strip(),
            candidate_note=ev.note.strip(),
        )
        self._pending_open.pop(0)
        return self._advance()

    def _on_unclear(self, ev: AnswerUnclear) -> Step:
        self._require_active()
        current = self.current_question
        if ev.question_id is not None and ev.question_id != (current.id if current else None):
            self._check_question(ev.question_id, self.stage)  # raises with the right message
        self.counters.unclear += 1
        if self.counters.unclear >= MAX_UNCLEAR:
            self._record_knockout_end("unclear", ev.raw_answer)
            return self._finish(Status.UNCLEAR, "closing_unclear")
        return Step((self._t("reask_unclear"), *self._prompt()))

    def _on_off_topic(self, raw: str) -> Step:
        self._require_active()
        self.counters.off_topic += 1
        if self.counters.off_topic >= MAX_OFF_TOPIC:
            self._record_knockout_end("irrelevant", raw)
            return self._finish(Status.IRRELEVANT, "closing_irrelevant")
        return Step((self._t("off_topic"), *self._prompt()))

    def _on_other_vacancies(self, interested: bool) -> Step:
        self.interested_in_alternatives = interested
        if interested:
            return self._finish(Status.KNOCKOUT_FAILED, "closing_alternatives")
        return self._finish(Status.NOT_INTERESTED, "closing_not_interested")

    def _on_timeslot(self, slot: str) -> Step:
        self._expect(Stage.SCHEDULING, "scheduling has not started; finish the questions first")
        if not self.config.timeslots:
            raise FlowError(
                "no timeslots are offered in this call; use record_scheduling_preference"
            )
        chosen = _match_slot(slot, self.config.timeslots)
        if chosen is None:
            offered = "; ".join(self.config.timeslots)
            raise FlowError(
                f"{slot!r} is not one of the offered timeslots. Offered exactly: {offered}. "
                "If none suits the candidate, use record_scheduling_preference."
            )
        self.chosen_timeslot = chosen
        return self._finish(Status.COMPLETED, "closing_completed", before=[self._confirm(chosen)])

    def _on_preference(self, preference: str) -> Step:
        self._expect(Stage.SCHEDULING, "scheduling has not started; finish the questions first")
        if not preference.strip():
            raise FlowError("preference is empty: record what the candidate said")
        self.scheduling_preference = preference.strip()
        return self._finish(
            Status.COMPLETED, "closing_completed", before=[self._t("preference_noted")]
        )

    def _on_escalation(self, reason: str, raw: str) -> Step:
        self._require_active()
        if not self.request.allow_escalation:
            return Step((self._t("escalation_unavailable"), *self._prompt()))
        self.escalation_reason = reason.strip() or "candidate asked for a recruiter"
        self._record_knockout_end("recruiter_requested", raw, note=reason)
        if self.config.can_transfer:
            return self._finish(Status.ESCALATED, "escalation_transfer", end=EndAction.TRANSFER)
        return self._finish(Status.ESCALATED, "escalation_callback")

    def _on_answering_machine(self, mailbox_unavailable: bool) -> Step:
        if self.candidate_events:
            raise FlowError("the candidate has already answered; this is not an answering machine")
        self.voicemail_detected = True
        key = None
        if mailbox_unavailable:
            self.voicemail_note = MAILBOX_UNAVAILABLE_NOTE
        elif self.config.leave_voicemail:
            key = "voicemail_named" if self.request.candidate_name.strip() else "voicemail_generic"
        return self._finish(Status.VOICEMAIL, key)

    def _on_silence(self) -> Step:
        if self.stage is Stage.GREETING:
            return Step()
        self.counters.silence += 1
        if self.counters.silence >= MAX_SILENCE:
            return self._finish(Status.INCOMPLETE, "closing_silence")
        return Step((self._t("still_there"), *self._prompt()))

    def _on_language(self, language: str, repeat: bool) -> Step:
        code = normalize_language(language)
        if code is None:
            raise FlowError(f"language {language!r} is not supported in this call")
        self.language = code
        if repeat and self.stage in ACTIVE_STAGES:
            return Step(tuple(self._prompt()))
        return Step()

    # -- progression -----------------------------------------------------------------------

    def _advance(self, prefix: list[Utterance] | None = None) -> Step:
        say = list(prefix or [])
        self.counters.unclear = 0
        if self._pending_knockout:
            self.stage = Stage.KNOCKOUT
        elif self._resumed_failed:
            self._resumed_failed = False
            self.stage = Stage.OTHER_VACANCIES
            return Step((*say, self._t("other_vacancies")))
        elif self._pending_open:
            self.stage = Stage.OPEN
        else:
            return self._schedule(say)
        return Step((*say, *self._prompt()))

    def _schedule(self, say: list[Utterance]) -> Step:
        booking = self.request.candidate_record.existing_booking_date
        if booking:
            self.chosen_timeslot = booking
            return self._finish(
                Status.COMPLETED,
                "closing_completed",
                before=[*say, self._t("existing_booking", date=booking)],
            )
        if self.chosen_timeslot is not None or self.scheduling_preference is not None:
            return self._finish(Status.COMPLETED, "closing_completed", before=say)
        self.stage = Stage.SCHEDULING
        return Step((*say, *self._prompt()))

    def _prompt(self) -> list[Utterance]:
        """What to (re)say to put the current question."""
        if self.stage is Stage.CONSENT:
            return [self._t("consent_question")]
        if self.stage is Stage.OTHER_VACANCIES:
            return [self._t("other_vacancies")]
        if self.stage is Stage.SCHEDULING:
            if self.config.timeslots:
                slots = templates.join_options(self.language, self.config.timeslots)
                return [self._t("scheduling_offer", slots=slots)]
            return [self._t("scheduling_preference")]
        question = self.current_question
        if question is None:  # pragma: no cover - guarded by the stage
            return []
        if question.id not in self.asked:
            self.asked.append(question.id)
        return [Utterance(question.text, self.question_language, f"question:{question.id}")]

    def _finish(
        self,
        status: Status,
        closing: str | None,
        *,
        before: list[Utterance] | None = None,
        end: EndAction = EndAction.HANG_UP,
    ) -> Step:
        say = list(before or [])
        if closing is not None:
            say.append(self._t(closing))
        self.status = status
        self.stage = Stage.DONE
        self.end = end
        return Step(tuple(say), end, status)

    def _confirm(self, slot: str) -> Utterance:
        loc, addr = self.request.office_location.strip(), self.request.office_address.strip()
        if loc and addr:
            return self._t("scheduling_confirm_full", slot=slot, location=loc, address=addr)
        if loc or addr:
            return self._t("scheduling_confirm_location", slot=slot, location=loc or addr)
        return self._t("scheduling_confirm", slot=slot)

    def _record_knockout_end(self, result: KnockoutResult, raw: str, note: str = "") -> None:
        """A call that ends on a knockout question records why, with the candidate's words."""
        question = self.current_question
        if self.stage is Stage.KNOCKOUT and isinstance(question, KnockoutQuestion):
            self._knockout[question.id] = KnockoutAnswer(
                question_id=question.id,
                internal_id=question.internal_id,
                question_text=question.text,
                result=result,
                raw_answer=raw.strip(),
                candidate_note=note.strip(),
            )

    # -- set-up ----------------------------------------------------------------------------

    def _prepare_questions(self) -> None:
        req, resume = self.request, self.config.resume
        resumed_ko = {a.question_id: a for a in resume.knockout_answers} if resume else {}
        resumed_open = {a.question_id: a for a in resume.open_answers} if resume else {}
        known = req.candidate_record.known_answers
        for q in req.knockout_questions:
            earlier = resumed_ko.get(q.id)
            if earlier is not None and earlier.result in ("pass", "fail"):
                self._knockout[q.id] = earlier
                self.skipped.add(q.id)
                self._spoke_before |= earlier.candidate_note != KNOWN_ANSWER_NOTE
                if earlier.result == "fail":
                    self._resumed_failed = True
                continue
            value = known.get(q.data_key) if q.data_key else None
            if value is not None and known_answer_polarity(value) is True:
                self._knockout[q.id] = KnockoutAnswer(
                    question_id=q.id,
                    internal_id=q.internal_id,
                    question_text=q.text,
                    result="pass",
                    raw_answer=value,
                    candidate_note=KNOWN_ANSWER_NOTE,
                )
                self.skipped.add(q.id)
                continue
            self._pending_knockout.append(q)
        if self._resumed_failed:
            self._pending_knockout = []  # the earlier attempt already failed a knockout
        for oq in req.open_questions:
            if oq.id in resumed_open:
                self._open[oq.id] = resumed_open[oq.id]
                self.skipped.add(oq.id)
                self._spoke_before = True
            else:
                self._pending_open.append(oq)
        if resume is not None:
            self.consent_given = resume.consent_given
            self._spoke_before |= resume.consent_given
            self.chosen_timeslot = resume.chosen_timeslot
            self.scheduling_preference = resume.scheduling_preference

    # -- helpers ---------------------------------------------------------------------------

    def _has_questions(self) -> bool:
        return bool(self._pending_knockout or self._pending_open)

    def _params(self) -> dict[str, str]:
        return {"name": self.request.candidate_name.strip(), "job_title": self.request.job_title}

    def _t(self, key: str, **params: str) -> Utterance:
        merged = {**self._params(), **params}
        text, lang = templates.render(self.language, key, **merged)
        return Utterance(text, lang, key)

    def _expect(self, stage: Stage, message: str) -> None:
        if self.stage is not stage:
            raise FlowError(f"{message} (current step: {self.describe_step()})")

    def _require_active(self) -> None:
        if self.stage not in ACTIVE_STAGES:  # pragma: no cover - GREETING/DONE handled earlier
            raise FlowError(f"nothing is being asked now (current step: {self.describe_step()})")

    def _check_question(self, question_id: str, stage: Stage) -> KnockoutQuestion | OpenQuestion:
        all_questions: dict[str, KnockoutQuestion | OpenQuestion] = {}
        all_questions.update((q.id, q) for q in self.request.knockout_questions)
        all_questions.update((q.id, q) for q in self.request.open_questions)
        if question_id not in all_questions:
            raise FlowError(
                f"unknown question id {question_id!r}; the current step is {self.describe_step()}"
            )
        current = self.current_question
        if self.stage is not stage or current is None or current.id != question_id:
            raise FlowError(
                f"question {question_id!r} is not being asked now; the current step is "
                f"{self.describe_step()}"
            )
        return current

    def describe_step(self) -> str:
        """A one-line description of what the candidate is answering now (for the LLM)."""
        question = self.current_question
        if self.stage is Stage.KNOCKOUT and question is not None:
            return f"knockout question {question.id} ({question.text!r})"
        if self.stage is Stage.OPEN and question is not None:
            return f"open question {question.id} ({question.text!r})"
        if self.stage is Stage.SCHEDULING:
            if self.config.timeslots:
                return "scheduling: choosing one of " + "; ".join(self.config.timeslots)
            return "scheduling: asking when an interview suits the candidate"
        return {
            Stage.GREETING: "greeting (the call has not started)",
            Stage.CONSENT: "recording consent question",
            Stage.OTHER_VACANCIES: "asking whether the candidate wants other vacancies",
            Stage.DONE: "the call has ended",
        }.get(self.stage, self.stage.value)


def _match_slot(said: str, offered: tuple[str, ...]) -> str | None:
    def norm(text: str) -> str:
        return " ".join(unicodedata.normalize("NFC", text).lower().split()).strip(" .,!?")

    wanted = norm(said)
    for slot in offered:
        if norm(slot) == wanted:
            return slot
    return None
