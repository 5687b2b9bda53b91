"""Run the real screening agent in text mode: no room, no audio, any `llm.LLM`.

    from agent.simulate import run_text_screening
    data = await run_text_screening(metadata_json, my_llm, ["ja", "ja, drie jaar", ...])

`metadata_json` is what the dial task puts on the dispatch (`dialer.messages`), or plain
SessionInput JSON. `user_turns` is either a list of candidate lines, or a persona: a callable
that gets the agent's words since the candidate last spoke and returns the next line (None hangs
up). Besides lines, a script may contain call events from `agent.flow` (`Silence()`,
`TimeUp()`, `HungUp()`), applied as the worker applies them when the line goes quiet or the
maximum duration passes; `answering_machine=True` plays AMD's machine verdict, which comes
before any greeting.

The flow, tools, templates and result building are exactly those of a phone call; only the call
control is a stand-in, so the returned CandidateData is what the worker would publish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import AgentSession, llm
from livekit.agents.voice.turn import TurnHandlingOptions

from agent.controller import (
    CallControl,
    Clock,
    CollectingSink,
    NoopCallControl,
    ResultSink,
    ScreeningController,
    utc_now,
)
from agent.flow import AnsweringMachine, Event, HungUp
from agent.plan import ScreeningPlan
from agent.screening_agent import ScreeningAgent
from dialer.models import CandidateData

log = logging.getLogger("agent.simulate")

Turn = str | Event
Persona = Callable[[str], Turn | None]
UserTurns = Iterable[Turn] | Persona


@dataclass
class TextScreening:
    """What a text-mode run produced, for callers that want more than the result."""

    result: CandidateData
    controller: ScreeningController
    call: NoopCallControl
    candidate_turns: int
    delivered: list[CandidateData] = field(default_factory=list)  # what reached the sink


async def run_text_screening(
    metadata_json: str,
    llm_model: llm.LLM[Any],
    user_turns: UserTurns,
    *,
    clock: Clock = utc_now,
    sink: ResultSink | None = None,
    max_turns: int = 60,
) -> CandidateData:
    """Run one screening in text mode and return its CandidateData (also given to `sink`)."""
    run = await run_text_screening_detailed(
        metadata_json, llm_model, user_turns, clock=clock, sink=sink, max_turns=max_turns
    )
    return run.result


async def run_text_screening_detailed(
    metadata_json: str,
    llm_model: llm.LLM[Any],
    user_turns: UserTurns,
    *,
    clock: Clock = utc_now,
    sink: ResultSink | None = None,
    max_turns: int = 60,
    plan: ScreeningPlan | None = None,
    call: CallControl | None = None,
    on_start: Callable[[ScreeningController], None] | None = None,
    answering_machine: bool = False,
) -> TextScreening:
    """`run_text_screening` with everything it produced. `call` replaces the stand-in call
    control (e.g. `agent.call_control.LiveKitCallControl` against a LiveKit stand-in);
    `on_start` sees the controller before the greeting (a persona that reads the flow);
    `answering_machine=True` is AMD's machine verdict, which comes before any greeting, as on
    a phone call (the voicemail message, or silence, then the hang-up)."""
    plan = plan or ScreeningPlan.from_metadata(metadata_json)
    collecting = CollectingSink()
    recorder = NoopCallControl()
    controller = ScreeningController(
        plan,
        sink=_Tee(collecting, sink),
        call=_Both(recorder, call),
        clock=clock,
        greet_on_enter=not answering_machine,
    )
    session: AgentSession[None] = AgentSession(
        llm=llm_model,
        vad=None,
        turn_handling=TurnHandlingOptions(turn_detection="manual"),
        user_away_timeout=None,
    )
    persona = user_turns if callable(user_turns) else None
    scripted = iter(()) if callable(user_turns) else iter(user_turns)
    turns = 0
    if on_start is not None:
        on_start(controller)
    try:
        async with session:
            controller.mark_answered()
            await session.start(ScreeningAgent(controller), capture_run=True)
            if answering_machine:
                await controller.system(AnsweringMachine())
                await controller.settle()
            while not controller.flow.done and turns < max_turns:
                if persona is not None:
                    line = persona(controller.transcript.agent_text_since_last_candidate_turn())
                else:
                    line = next(scripted, None)
                if line is None:
                    break
                turns += 1
                if isinstance(line, str):
                    await session.run(user_input=line)
                else:
                    await controller.system(line)
                    await controller.settle()
            if not controller.flow.done:
                await controller.system(HungUp())
            result = await controller.wait_finished(timeout=30)
    except BaseException as exc:
        # As in the worker: the line is hung up and the attempt still gets its one result.
        await controller.finalize(f"the text screening failed: {type(exc).__name__}")
        raise
    if result is None:  # pragma: no cover - answered is set above, so a result always exists
        raise RuntimeError("the screening ended without a result")
    return TextScreening(
        result=result,
        controller=controller,
        call=recorder,
        candidate_turns=turns,
        delivered=list(collecting.results),
    )


def run_text_screening_blocking(
    metadata_json: str, llm_model: llm.LLM[Any], user_turns: UserTurns, **kwargs: object
) -> CandidateData:
    """`run_text_screening` for callers without an event loop."""
    return asyncio.run(run_text_screening(metadata_json, llm_model, user_turns, **kwargs))  # type: ignore[arg-type]


class _Tee:
    def __init__(self, first: ResultSink, second: ResultSink | None) -> None:
        self.first, self.second = first, second

    async def deliver(self, data: CandidateData) -> None:
        await self.first.deliver(data)
        if self.second is not None:
            await self.second.deliver(data)


class _Both:
    """Records what the agent did to the line, and does it for real when a control is given."""

    def __init__(self, recorder: NoopCallControl, real: CallControl | None) -> None:
        self.recorder, self.real = recorder, real

    async def hang_up(self) -> None:
        await self.recorder.hang_up()
        if self.real is not None:
            await self.real.hang_up()

    async def transfer(self, number: str) -> bool:
        await self.recorder.transfer(number)
        return await self.real.transfer(number) if self.real is not None else True
