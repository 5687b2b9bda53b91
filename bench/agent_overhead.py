"""Agent overhead: time spent in our own code per candidate turn, and LLM requests per screening.

Runs complete screenings in text mode (the real AgentSession, flow, tools and templates) with a
scripted LLM, so neither network nor model time is in the figures. Per candidate turn it times
what this project's code does: the tool call into the controller (flow transition, fixed
wording, `session.say` scheduling, instructions rebuild and update), recording the transcript
turns, and, on the last turn, the result (CandidateData -> ResultMessage -> JSON). The LiveKit
framework's own scheduling is not ours and is not counted.

    python bench/agent_overhead.py [--runs 7] [--knockout 5] [--open 3]

Last line: `agent turn_ms_median=X llm_requests_per_screening=Y questions=Q`.
Targets: median under 2 ms; at most Q + 3 LLM requests for a completed screening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import flow as f
from agent.controller import ScreeningController
from agent.plan import ScreeningPlan
from agent.simulate import run_text_screening_detailed
from dialer.messages import DialContext, ResultMessage, build_dispatch_metadata
from dialer.models import ScreeningRequest, Status
from tests.agent.scripted_llm import Reply, ScriptedLLM, call

_turn_seconds: list[float] = []


def _timed(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            _turn_seconds.append(time.perf_counter() - start)

    return wrapper


def _timed_sync(method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            _item_seconds.append(time.perf_counter() - start)

    return wrapper


_item_seconds: list[float] = []
ScreeningController.tool = _timed(ScreeningController.tool)  # type: ignore[method-assign,assignment]
# Recording each transcript turn is ours too; spread evenly over the candidate turns.
ScreeningController._on_item = _timed_sync(ScreeningController._on_item)  # type: ignore[method-assign]


def request(n_knockout: int, n_open: int, language: str = "nl") -> ScreeningRequest:
    return ScreeningRequest.model_validate(
        {
            "call_id": "bench-1",
            "language": language,
            "candidate_name": "Mark Verbeke",
            "job_title": "Bakkerij Medewerker",
            "office_location": "Antwerpen Centrum",
            "office_address": "Mechelsesteenweg nummer 27",
            "knockout_questions": [
                {"id": f"q{i}", "text": f"Knockoutvraag {i}?", "internal_id": f"crm_{i}"}
                for i in range(1, n_knockout + 1)
            ],
            "open_questions": [
                {"id": f"oq{i}", "text": f"Open vraag {i}?", "internal_id": f"crm_o{i}"}
                for i in range(1, n_open + 1)
            ],
            "phone_number": "+32470123789",
            "timeslots": ["dinsdag 4 maart om 10 uur", "woensdag 5 maart om 14 uur"],
        }
    )


def script(req: ScreeningRequest) -> tuple[list[Reply], list[str]]:
    replies = [call("record_consent", consent_given=True)]
    turns = ["Ja, dat is goed."]
    for q in req.knockout_questions:
        replies.append(
            call("record_knockout_answer", question_id=q.id, passed=True, raw_answer="ja")
        )
        turns.append("Ja, zeker.")
    for oq in req.open_questions:
        replies.append(
            call("record_open_answer", question_id=oq.id, answer_summary="Kort antwoord.")
        )
        turns.append("Dat is een lang verhaal over mijn ervaring.")
    replies.append(call("choose_timeslot", timeslot=req.timeslots[0]))
    turns.append("Dinsdag graag.")
    return replies, turns


async def one_screening(req: ScreeningRequest) -> tuple[list[float], int]:
    metadata = build_dispatch_metadata(
        req, DialContext(attempt=1, counted_attempt=1, max_attempts=3)
    )
    replies, turns = script(req)
    scripted = ScriptedLLM(replies)
    _turn_seconds.clear()
    _item_seconds.clear()
    run = await run_text_screening_detailed(metadata, scripted, turns)
    if run.result.status is not Status.COMPLETED or scripted.overruns:
        raise SystemExit(f"the bench screening did not complete: {run.result.status}")
    # Serialising the result for the results queue is ours too; it happens once, on the last turn.
    start = time.perf_counter()
    message = ResultMessage.from_agent(run.result, datetime.now(UTC))
    json.dumps(message.model_dump(mode="json"))
    transcript_share = sum(_item_seconds) / len(_turn_seconds)
    per_turn = [seconds + transcript_share for seconds in _turn_seconds]
    per_turn[-1] += time.perf_counter() - start
    return per_turn, len(scripted.requests)


def flow_only_us(req: ScreeningRequest, rounds: int = 200) -> float:
    """Median microseconds of one pure flow transition (for reference)."""
    plan = ScreeningPlan.from_request(req)
    samples = []
    for _ in range(rounds):
        flow = f.ScreeningFlow(plan.flow_config())
        flow.start()
        start = time.perf_counter()
        flow.handle(f.ConsentAnswered(True))
        for q in req.knockout_questions:
            flow.handle(f.KnockoutAnswered(q.id, True, "ja"))
        for oq in req.open_questions:
            flow.handle(f.OpenAnswered(oq.id, "Kort antwoord."))
        flow.handle(f.TimeslotChosen(req.timeslots[0]))
        events = 2 + len(req.knockout_questions) + len(req.open_questions)
        samples.append((time.perf_counter() - start) / events)
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--knockout", type=int, default=5)
    parser.add_argument("--open", type=int, default=3)
    parser.add_argument(
        "--language", default="nl", help="the call's language (any of the 32; default nl)"
    )
    args = parser.parse_args()

    req = request(args.knockout, args.open, args.language)
    questions = len(req.knockout_questions) + len(req.open_questions)
    asyncio.run(one_screening(req))  # warm-up: imports, first session
    medians: list[float] = []
    requests: list[int] = []
    for i in range(args.runs):
        per_turn, n_requests = asyncio.run(one_screening(req))
        medians.append(statistics.median(per_turn) * 1000)
        requests.append(n_requests)
        print(
            f"run {i + 1}: turns={len(per_turn)} turn_ms_median={medians[-1]:.3f} "
            f"turn_ms_max={max(per_turn) * 1000:.3f} llm_requests={n_requests}"
        )
    print(f"pure flow transition: {flow_only_us(req):.1f} us median")
    median_ms = statistics.median(medians)
    llm_requests = int(statistics.median(requests))
    ok_time = median_ms < 2.0
    ok_requests = llm_requests <= questions + 3
    print(
        f"targets: turn median < 2 ms {'OK' if ok_time else 'MISSED'}; "
        f"LLM requests <= Q+3 = {questions + 3} {'OK' if ok_requests else 'MISSED'}"
    )
    print(
        f"agent turn_ms_median={median_ms:.3f} llm_requests_per_screening={llm_requests} "
        f"questions={questions}"
    )


if __name__ == "__main__":
    main()
