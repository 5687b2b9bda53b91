"""Glue between the pure flow and a running `AgentSession`.

`ScreeningController` feeds events (from tools and from the call: silence, hang-up, time-out,
answering machine, language detection) into `ScreeningFlow`, speaks what the flow says with
`session.say` (no LLM request for fixed wording or the next question), keeps the LLM's
instructions on the current step, records the transcript, and at the end hangs up through a
`CallControl` and hands exactly one CandidateData to a `ResultSink`.

Nothing here knows about rooms or SIP: the worker passes a `CallControl` that removes the SIP
participant and deletes the room; the text-mode simulator passes one that just ends the session.

Every way out hangs up: the flow's end, the session closing, the job shutting down, an error in
the worker. Waiting for the last sentence to play out is bounded (`playout_timeout_s`), and the
maximum call duration is a hard limit: at `max` the call is closed politely (TimeUp), and
`hard_stop_grace_s` later it is hung up whatever is still going on (a closing sentence that does
not finish, a transfer that hangs).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from livekit.agents import AgentSession, ToolError, llm
from livekit.agents.voice import SpeechHandle
from livekit.agents.voice.events import (
    CloseEvent,
    ConversationItemAddedEvent,
    UserInputTranscribedEvent,
    UserStateChangedEvent,
)

from agent import flow as f
from agent import templates
from agent.languages import LanguageFollower, spec
from agent.plan import ScreeningPlan
from agent.prompting import build_instructions
from agent.results import Transcript, build_candidate_data
from dialer.models import CandidateData, TurnRole

log = logging.getLogger("agent.controller")

Clock = Callable[[], datetime]

# The longest a sentence may take to play out before the call goes on without it (a stuck audio
# track must not keep the line open).
PLAYOUT_TIMEOUT_S = 30.0
# How long after the maximum call duration the call is hung up no matter what.
HARD_STOP_GRACE_S = 15.0
# The longest a hang-up through the LiveKit API may take before the result is delivered anyway.
HANG_UP_TIMEOUT_S = 15.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class CallControl(Protocol):
    async def hang_up(self) -> None:
        """End the call for the candidate: no silent open line may remain."""
        ...

    async def transfer(self, number: str) -> bool:
        """Transfer the candidate to `number`; False when the transfer did not happen."""
        ...


class ResultSink(Protocol):
    async def deliver(self, data: CandidateData) -> None: ...


class NoopCallControl:
    """For text mode: there is no phone line; ending the call ends the session."""

    def __init__(self) -> None:
        self.hung_up = False
        self.transferred_to: str | None = None

    async def hang_up(self) -> None:
        self.hung_up = True

    async def transfer(self, number: str) -> bool:
        self.transferred_to = number
        return True


class CollectingSink:
    """Keeps delivered results in memory (text mode, tests)."""

    def __init__(self) -> None:
        self.results: list[CandidateData] = []

    async def deliver(self, data: CandidateData) -> None:
        self.results.append(data)


LanguageHook = Callable[[str], Awaitable[None] | None]


class ScreeningController:
    def __init__(
        self,
        plan: ScreeningPlan,
        *,
        sink: ResultSink,
        call: CallControl,
        clock: Clock = utc_now,
        on_language_change: LanguageHook | None = None,
        greet_on_enter: bool = True,
        playout_timeout_s: float = PLAYOUT_TIMEOUT_S,
        hard_stop_grace_s: float = HARD_STOP_GRACE_S,
        hang_up_timeout_s: float = HANG_UP_TIMEOUT_S,
    ) -> None:
        self.plan = plan
        self.greet_on_enter = greet_on_enter
        self.flow = f.ScreeningFlow(plan.flow_config())
        self.sink = sink
        self.call = call
        self.clock = clock
        self.transcript = Transcript()
        self.follower = LanguageFollower(self.flow.language)
        self.on_language_change = on_language_change
        self.playout_timeout_s = playout_timeout_s
        self.hard_stop_grace_s = hard_stop_grace_s
        self.hang_up_timeout_s = hang_up_timeout_s
        self.answered = False
        self.started_at: datetime | None = None
        self.ended_at: datetime | None = None
        self.result: CandidateData | None = None
        self._session: AgentSession[Any] | None = None
        self._agent_update: Callable[[str], Awaitable[None]] | None = None
        self._last_speech: SpeechHandle | None = None
        self._finish_task: asyncio.Task[None] | None = None
        self._finalize_lock = asyncio.Lock()
        self._finished = asyncio.Event()
        self._deadlines: list[asyncio.TimerHandle] = []
        self._hang_up_task: asyncio.Future[None] | None = None
        self._line_handed_over = False  # transferred to a recruiter: not ours to hang up
        self._bg: set[asyncio.Task[Any]] = set()
        self._closing = False

    # -- wiring ----------------------------------------------------------------------------

    def attach(
        self,
        session: AgentSession[Any],
        update_instructions: Callable[[str], Awaitable[None]],
    ) -> None:
        self._session = session
        self._agent_update = update_instructions
        session.on("conversation_item_added", self._on_item)
        session.on("user_state_changed", self._on_user_state)
        session.on("user_input_transcribed", self._on_transcribed)
        session.on("close", self._on_close)

    def instructions(self) -> str:
        return build_instructions(self.flow, self.plan.instructions)

    def mark_answered(self) -> None:
        """The candidate (or a machine) is on the line: this attempt now owns a result."""
        if not self.answered:
            self.answered = True
            self.started_at = self.started_at or self.clock()

    def start_deadline(self, seconds: float) -> None:
        """Enforce the maximum call duration: after `seconds` the call is closed politely, and
        `hard_stop_grace_s` later it is hung up, whatever is still going on."""
        loop = asyncio.get_running_loop()
        self._deadlines += [
            loop.call_later(seconds, lambda: self._spawn(self.system(f.TimeUp()))),
            loop.call_later(
                seconds + self.hard_stop_grace_s, lambda: self._spawn(self._hard_stop())
            ),
        ]

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    async def settle(self) -> None:
        """Wait until what the agent last said has been played out (at most
        `playout_timeout_s`)."""
        await self._wait_for_playout(self._last_speech)

    async def _wait_for_playout(self, speech: SpeechHandle | None) -> None:
        if speech is None or speech.done():
            return
        try:
            await asyncio.wait_for(
                asyncio.shield(speech.wait_for_playout()), self.playout_timeout_s
            )
        except TimeoutError:
            log.warning(
                "the agent's last sentence did not play out within %.0f s; going on without it",
                self.playout_timeout_s,
            )

    async def wait_finished(self, timeout: float | None = None) -> CandidateData | None:
        await asyncio.wait_for(self._finished.wait(), timeout)
        return self.result

    # -- events ----------------------------------------------------------------------------

    async def begin(self) -> None:
        """Greet. Text mode and web interviews greet from the agent's `on_enter`; a phone call
        greets once the call is answered and AMD heard a person, never into ringing."""
        if self.flow.stage is f.Stage.GREETING:
            await self._perform(self.flow.start())

    async def tool(self, event: f.Event) -> str:
        """Apply an event from a tool call. FlowError becomes ToolError (the LLM hears it)."""
        event = self._with_candidate_words(event)
        try:
            step = self.flow.handle(event)
        except f.FlowError as exc:
            raise ToolError(str(exc)) from None
        await self._perform(step)
        if self.flow.done:
            return f"recorded; the call is ending ({self.flow.status})"
        return f"recorded; now: {self.flow.describe_step()}"

    def _with_candidate_words(self, event: f.Event) -> f.Event:
        """`raw_answer` is what the candidate said, word for word: the last transcribed
        candidate turn, never the model's rendering of it (a model paraphrases, translates,
        tidies up). The model's text is used only when nothing was transcribed. KnockoutAnswer
        has no field for the model's version (`candidate_note` is the candidate's addition), so
        a paraphrase is dropped."""
        words = self.transcript.last_candidate_text()
        if not words:
            return event
        match event:
            case (
                f.KnockoutAnswered() | f.AnswerUnclear() | f.OffTopic() | f.EscalationRequested()
            ) if event.raw_answer != words:
                return dataclasses.replace(event, raw_answer=words)
        return event

    async def system(self, event: f.Event) -> None:
        """Apply an event from the call itself (silence, hang-up, time-out, machine, ...)."""
        try:
            step = self.flow.handle(event)
        except f.FlowError as exc:
            log.info("ignored %s: %s", type(event).__name__, exc)
            return
        await self._perform(step)

    # -- doing what the flow says ----------------------------------------------------------

    async def _perform(self, step: f.Step) -> None:
        session = self._session
        if session is not None and step.say and not self._is_closing():
            self._speak(session, step.say)
        if self._agent_update is not None and not self._is_closing():
            await self._agent_update(self.instructions())
        if step.end is not None and self._finish_task is None:
            self._finish_task = asyncio.create_task(self._finish_call(step.end))

    def _speak(self, session: AgentSession[Any], utterances: tuple[f.Utterance, ...]) -> None:
        # One agent turn per run of utterances: those in the call's language are said as they
        # are; a run in another language (a template or question text the call has moved away
        # from) is translated by the LLM, in one request.
        runs: list[tuple[bool, list[str]]] = []
        for utterance in utterances:
            native = utterance.language == self.flow.language
            if runs and runs[-1][0] == native:
                runs[-1][1].append(utterance.text)
            else:
                runs.append((native, [utterance.text]))
        for native, texts in runs:
            if native:
                self._last_speech = session.say(" ".join(texts))
            else:
                self._last_speech = self._translate(session, texts)

    def _translate(self, session: AgentSession[Any], texts: list[str]) -> SpeechHandle:
        lang = spec(self.flow.language)
        text = " ".join(texts)
        return session.generate_reply(
            instructions=(
                f"Say the following to the candidate, translated faithfully into {lang.name}. "
                f"Say nothing else and call no tool:\n{text}"
            ),
            tool_choice="none",
        )

    async def _finish_call(self, end: f.EndAction) -> None:
        # Cancelled only by the hard stop, which hangs up and finalizes itself.
        try:
            await self._wait_for_playout(self._last_speech)
            number = self.plan.recruiter_number
            if end is f.EndAction.TRANSFER and number and await self._transfer(number):
                self._line_handed_over = True
            else:
                await self.hang_up()
        except Exception:
            log.exception("ending the call failed")
        await self.finalize("flow ended")

    async def _transfer(self, number: str) -> bool:
        try:
            if await self.call.transfer(number):
                return True
        except Exception:
            log.exception("transfer to the recruiter failed")
        # Still escalated: a recruiter calls back. Say so before hanging up.
        if self._session is not None and not self._is_closing():
            text, _ = templates.render(self.flow.language, "escalation_callback")
            self._last_speech = self._session.say(text)
            await self._wait_for_playout(self._last_speech)
        return False

    async def hang_up(self) -> None:
        """End the call through the call control, once (later callers wait for that one), at
        most `hang_up_timeout_s`; failures are logged, never raised."""
        if self._line_handed_over:
            return
        if self._hang_up_task is None:
            self._hang_up_task = asyncio.ensure_future(self._hang_up_once())
        await asyncio.shield(self._hang_up_task)

    async def _hang_up_once(self) -> None:
        try:
            await asyncio.wait_for(self.call.hang_up(), self.hang_up_timeout_s)
        except Exception:
            log.exception("hanging up failed")

    async def _hard_stop(self) -> None:
        if self.finished:
            return
        log.warning(
            "screening %s attempt %d: %.0f s past the maximum call duration and the call is "
            "still open; hanging up",
            self.plan.request.call_id,
            self.plan.attempt,
            self.hard_stop_grace_s,
        )
        if self._finish_task is not None and not self._finish_task.done():
            self._finish_task.cancel()  # a closing sentence or a transfer that does not end
        await self.finalize("maximum call duration (hard stop)")

    async def finalize(self, reason: str = "") -> CandidateData | None:
        """Close the attempt: the line is hung up (unless handed to a recruiter), and exactly
        one result is delivered, only if the call was answered. Idempotent."""
        async with self._finalize_lock:
            if self._finished.is_set():
                return self.result
            for deadline in self._deadlines:
                deadline.cancel()
            if not self.flow.done:
                self.flow.handle(f.HungUp())
            await self.hang_up()
            self.ended_at = self.clock()
            if self.answered:
                self.result = build_candidate_data(
                    self.flow,
                    attempt=self.plan.attempt,
                    transcript=self.transcript,
                    started_at=self.started_at,
                    ended_at=self.ended_at,
                    metadata=self.plan.metadata,
                )
                try:
                    await self.sink.deliver(self.result)
                except Exception:
                    log.exception("could not deliver the result of %s", self.plan.request.call_id)
                log.info(
                    "screening %s attempt %d ended: %s (%s)",
                    self.plan.request.call_id,
                    self.plan.attempt,
                    self.result.status,
                    reason,
                )
            else:
                log.info(
                    "screening %s attempt %d ended before the call was answered (%s); the dial "
                    "task reports this attempt",
                    self.plan.request.call_id,
                    self.plan.attempt,
                    reason,
                )
            self._finished.set()
            return self.result

    # -- session events --------------------------------------------------------------------

    def _on_item(self, ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        if not isinstance(item, llm.ChatMessage) or item.role not in ("user", "assistant"):
            return
        text = item.text_content or ""
        metrics = item.metrics or {}
        created = datetime.fromtimestamp(item.created_at, UTC)
        start = metrics.get("started_speaking_at")
        stop = metrics.get("stopped_speaking_at")
        started_at = datetime.fromtimestamp(start, UTC) if start else created
        ended_at = datetime.fromtimestamp(stop, UTC) if stop else created
        role: TurnRole = "candidate" if item.role == "user" else "agent"
        self.transcript.add(role, text, started_at, ended_at)
        if role == "candidate" and text.strip():
            self.flow.candidate_spoke()

    def _on_user_state(self, ev: UserStateChangedEvent) -> None:
        if ev.new_state == "away" and not self.flow.done:
            self._spawn(self._on_silence())

    async def _on_silence(self) -> None:
        await self.system(f.Silence())
        # livekit-agents reports "away" once: the state stays away and its timer only restarts
        # from "listening". Restart it, so a candidate who stays silent after "are you still
        # there?" is heard as silent again and the call ends.
        if not self.flow.done and self._session is not None and not self._is_closing():
            self._session.reset_away_timer()

    def _on_transcribed(self, ev: UserInputTranscribedEvent) -> None:
        if not ev.is_final:
            return
        if ev.transcript.strip():
            self.flow.candidate_spoke()
        # Not a sign the call was answered: carrier announcements before the answer are
        # transcribed too, and an unanswered attempt is the dial task's to report.
        new = self.follower.observe(ev.language, ev.transcript)
        if new is not None and not self.flow.done:
            self._spawn(self._switch_language(new, repeat=False))

    def _on_close(self, ev: CloseEvent) -> None:
        self._closing = True
        self._spawn(self.finalize(f"session closed: {ev.reason.value}"))

    async def switch_language(self, language: str) -> str:
        """From the `switch_language` tool: the candidate asked for another language."""
        try:
            step = self.flow.handle(f.LanguageChanged(language, repeat_prompt=True))
        except f.FlowError as exc:
            raise ToolError(str(exc)) from None
        self.follower.current = self.flow.language
        await self._apply_language_hook()
        await self._perform(step)
        return f"now speaking {spec(self.flow.language).name}; {self.flow.describe_step()}"

    async def _switch_language(self, language: str, *, repeat: bool) -> None:
        await self.system(f.LanguageChanged(language, repeat_prompt=repeat))
        await self._apply_language_hook()

    async def _apply_language_hook(self) -> None:
        if self.on_language_change is None:
            return
        outcome = self.on_language_change(self.flow.language)
        if outcome is not None:
            await outcome

    # -- helpers ---------------------------------------------------------------------------

    def _is_closing(self) -> bool:
        return self._session is None or self._closing

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
