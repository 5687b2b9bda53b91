"""The LLM's instructions, rebuilt from the flow state at every step. Pure Python.

The LLM's job is narrow: understand the candidate's last words and report them through one
tool call. It never asks questions or decides what comes next (the tools speak the next line
from the flow), so the instructions name the current step and the tool that fits it.
"""

from __future__ import annotations

from agent.flow import ScreeningFlow, Stage
from agent.languages import spec

_RULES = """\
You are the listening half of an automated phone screening for the job "{job}".
The candidate speaks {language}. Fixed sentences and every question are spoken by the tools, \
never by you: you do not greet, ask, confirm or say goodbye yourself.
After each thing the candidate says, call exactly ONE tool that records it, and add no text.
Exception: if the candidate asks a short question about the job or the call, answer it in one \
short sentence in {language} (only from the facts given here; otherwise say a recruiter will \
answer it), without calling a tool.
At any step:
- request_recruiter: they want to talk to a human recruiter;
- decline_screening: they do not want to continue or are not interested;
- do_not_call_again: they ask never to be called again;
- record_off_topic: they talk about something unrelated to the question;
- record_unclear_answer: you cannot tell what they mean (do not guess);
- switch_language: they ask to speak another language;
- answering_machine_detected: you hear a voicemail greeting or beep, not a person.
"""

_STEP_HINTS: dict[Stage, str] = {
    Stage.CONSENT: (
        "Now: the recording consent question. Call record_consent(consent_given) with their "
        "answer (yes -> true, no -> false)."
    ),
    Stage.OTHER_VACANCIES: (
        "Now: they failed a requirement and were asked whether they want other vacancies. "
        "Call record_other_vacancies_interest(interested)."
    ),
}


def build_instructions(flow: ScreeningFlow, extra: str = "") -> str:
    req = flow.request
    lang = spec(flow.language)
    parts = [_RULES.format(job=req.job_title, language=f"{lang.name} ({lang.native})")]
    if req.office_location or req.office_address:
        where = ", ".join(p for p in (req.office_location, req.office_address) if p)
        parts.append(f"Office: {where}.")
    parts.append(_step_hint(flow))
    if extra.strip():
        parts.append(f"Guidelines from the employer (they never change the steps):\n{extra}")
    return "\n".join(parts)


def _step_hint(flow: ScreeningFlow) -> str:
    stage = flow.stage
    if stage in _STEP_HINTS:
        return _STEP_HINTS[stage]
    question = flow.current_question
    if stage is Stage.KNOCKOUT and question is not None:
        context = getattr(question, "context", "")
        hint = (
            f'Now: yes/no requirement {question.id}: "{question.text}". Call '
            f'record_knockout_answer(question_id="{question.id}", passed, raw_answer) with '
            "passed=true when the answer meets the requirement, and raw_answer in the "
            "candidate's own words."
        )
        return f"{hint} Context: {context}" if context else hint
    if stage is Stage.OPEN and question is not None:
        description = getattr(question, "description", "")
        lang = spec(flow.question_language).name
        hint = (
            f'Now: open question {question.id}: "{question.text}". Call '
            f'record_open_answer(question_id="{question.id}", answer_summary) with a faithful '
            f"one- or two-sentence summary in {lang}."
        )
        return f"{hint} It is about: {description}" if description else hint
    if stage is Stage.SCHEDULING:
        if flow.config.timeslots:
            slots = " | ".join(flow.config.timeslots)
            return (
                "Now: scheduling the interview. Offered timeslots (copy one exactly): "
                f"{slots}. Call choose_timeslot(timeslot); if none suits them, call "
                "record_scheduling_preference(preference) with what they prefer."
            )
        return (
            "Now: asking when an interview suits them. Call "
            "record_scheduling_preference(preference) with their preference in their words."
        )
    if stage is Stage.GREETING:
        return (
            "Now: the call is connecting and nobody has been greeted yet. Call no tool, unless "
            "you hear a voicemail greeting: then call answering_machine_detected."
        )
    return "Now: the call is ending; call no tools."
