"""Everything one screening attempt needs, read from the dispatch / room metadata (phone calls)
or from a web interview's data message. Pure Python: no LiveKit imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from agent.flow import FlowConfig
from agent.languages import choose_language
from dialer.messages import DialContext, ResumeState, parse_dispatch_metadata
from dialer.models import ScreeningRequest, SessionInput

DEFAULT_MAX_CALL_DURATION_S = 900.0
DEFAULT_PARTICIPANT_IDENTITY = "phone_user"

Channel = Literal["phone", "web"]


@dataclass(frozen=True)
class ScreeningPlan:
    request: SessionInput
    language: str
    attempt: int = 1
    timeslots: tuple[str, ...] = ()
    leave_voicemail: bool = True
    recruiter_number: str | None = None
    max_call_duration_s: float = DEFAULT_MAX_CALL_DURATION_S
    participant_identity: str | None = None
    resume: ResumeState | None = None
    instructions: str = ""  # the employer's interview guidelines (web interviews)
    metadata: dict[str, Any] = field(default_factory=dict)
    channel: Channel = "phone"

    @classmethod
    def from_metadata(cls, raw: str) -> ScreeningPlan:
        """From dispatch (or room) metadata as `dialer.messages.build_dispatch_metadata` writes
        it; plain SessionInput JSON (the seed's own dispatch) is accepted too.

        Raises ValueError / pydantic.ValidationError on malformed metadata.
        """
        request, context = parse_dispatch_metadata(raw)
        return cls.from_request(request, context)

    @classmethod
    def from_request(
        cls, request: SessionInput, context: DialContext | None = None, **overrides: Any
    ) -> ScreeningPlan:
        phone = request.phone_number if isinstance(request, ScreeningRequest) else None
        request_language = request.language if isinstance(request, ScreeningRequest) else None
        values: dict[str, Any] = {
            "request": request,
            "language": choose_language(
                request_language, context.language if context else None, phone
            ),
            "timeslots": tuple(request.timeslots) if isinstance(request, ScreeningRequest) else (),
            "metadata": dict(request.metadata) if isinstance(request, ScreeningRequest) else {},
        }
        if context is not None:
            values.update(
                attempt=context.attempt,
                leave_voicemail=context.leave_voicemail,
                recruiter_number=context.recruiter_number,
                max_call_duration_s=float(context.max_call_duration_s),
                participant_identity=context.participant_identity,
                resume=context.resume,
            )
        values.update(overrides)
        return cls(**values)

    def flow_config(self) -> FlowConfig:
        return FlowConfig(
            request=self.request,
            language=self.language,
            timeslots=self.timeslots,
            can_transfer=bool(self.recruiter_number) and self.channel == "phone",
            leave_voicemail=self.leave_voicemail,
            resume=self.resume,
        )
