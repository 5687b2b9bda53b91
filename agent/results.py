"""The attempt's CandidateData, from the flow state and the transcript. Pure Python.

`phone_number` is masked here (`dialer.phone.mask`): the full number never leaves the agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.flow import ScreeningFlow
from dialer.models import CandidateData, ScreeningRequest, Status, TranscriptTurn, TurnRole
from dialer.phone import mask


@dataclass
class Transcript:
    """Spoken turns in order. Consecutive pieces by the same speaker stay separate turns (the
    agent's greeting and its first question are two utterances), as the interviews API of
    `seeds/003_*` records them."""

    turns: list[TranscriptTurn] = field(default_factory=list)

    def add(self, role: TurnRole, text: str, started_at: datetime, ended_at: datetime) -> None:
        text = text.strip()
        if not text:
            return
        self.turns.append(
            TranscriptTurn(
                turn_number=len(self.turns) + 1,
                role=role,
                text=text,
                started_at=started_at,
                ended_at=max(ended_at, started_at),
            )
        )

    def texts(self) -> list[tuple[str, str]]:
        return [(t.role, t.text) for t in self.turns]

    def last_candidate_text(self) -> str:
        for turn in reversed(self.turns):
            if turn.role == "candidate":
                return turn.text
        return ""

    def agent_text_since_last_candidate_turn(self) -> str:
        out: list[str] = []
        for turn in reversed(self.turns):
            if turn.role == "candidate":
                break
            out.append(turn.text)
        return " ".join(reversed(out))


def build_candidate_data(
    flow: ScreeningFlow,
    *,
    attempt: int,
    transcript: Transcript,
    started_at: datetime | None,
    ended_at: datetime | None,
    metadata: dict[str, Any] | None = None,
) -> CandidateData:
    """The result of this attempt. A flow that did not reach its end is `incomplete`. The flow's
    voicemail note (no message left: the mailbox was full) goes into `metadata.voicemail_note`,
    the contract's only free-form place."""
    request = flow.request
    phone = request.phone_number if isinstance(request, ScreeningRequest) else ""
    extra = dict(metadata or {})
    if flow.voicemail_note:
        extra["voicemail_note"] = flow.voicemail_note
    return CandidateData(
        call_id=request.call_id,
        status=flow.status if flow.status is not None else Status.INCOMPLETE,
        consent_given=flow.consent_given,
        voicemail_detected=flow.voicemail_detected,
        passed_knockout=flow.passed_knockout,
        interested_in_alternatives=flow.interested_in_alternatives,
        knockout_answers=flow.knockout_answers,
        open_answers=flow.open_answers,
        chosen_timeslot=flow.chosen_timeslot,
        scheduling_preference=flow.scheduling_preference,
        attempt=attempt,
        language=flow.language,
        transcript=list(transcript.turns),
        started_at=started_at,
        ended_at=ended_at,
        phone_number=mask(phone) if phone else "",
        escalation_reason=flow.escalation_reason,
        do_not_call_requested=flow.do_not_call_requested,
        metadata=extra,
    )
