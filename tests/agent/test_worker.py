"""The worker's pieces that run without LiveKit Cloud: start-up checks, the entry point, which
metadata makes a phone call, the models per language, and the real hang-up / transfer / results
delivery, driven through the in-repo LiveKit stand-in and a real Redis."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from agent import templates, worker
from agent.call_control import LiveKitCallControl
from agent.config import AgentConfig, check_environment, missing_environment
from agent.controller import ScreeningController
from agent.plan import ScreeningPlan
from agent.publishing import PublisherSink
from agent.simulate import run_text_screening_detailed
from dialer.errors import ConfigError
from dialer.livekit_standin import LiveKitStandIn
from dialer.messages import RESULTS_QUEUE, ResultMessage
from dialer.models import Status
from dialer.results_queue import ResultPublisher
from tests.agent.requests import NL_PHONE, dispatch_metadata
from tests.agent.scripted_llm import ScriptedLLM, call
from tests.support.livekit import api_client, place_answered_call

T = TypeVar("T")
SECRET = "agent-test-secret-0123456789abcdef"
ALL_KEYS = {
    "DEEPGRAM_API_KEY": "dg-dummy",
    "OPENAI_API_KEY": "sk-dummy",
    "CARTESIA_API_KEY": "ca-dummy",
    "LIVEKIT_URL": "ws://127.0.0.1:1",
    "LIVEKIT_API_KEY": "devkey",
    "LIVEKIT_API_SECRET": "devsecret",
}


def run(factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await factory()

    return asyncio.run(main())


async def screen_answered_call(
    lk: LiveKitStandIn,
    room: str,
    metadata: str,
    scripted: ScriptedLLM,
    lines: list[str],
    *,
    redis_url: str,
    spool: Path,
    end_job: Callable[[str], None] | None = None,
    **options: Any,
) -> Any:
    """A phone screening in text mode on a call the LiveKit stand-in answered: the result goes
    to the results queue and the call is controlled through the real livekit-api client.
    `options` go to `run_text_screening_detailed` (`on_start`, ...)."""
    lkapi = api_client(lk)
    publisher = ResultPublisher(redis_url, spool)
    control = LiveKitCallControl(lkapi, room, "phone_user", end_job=end_job)
    try:
        return await run_text_screening_detailed(
            metadata, scripted, lines, sink=PublisherSink(publisher), call=control, **options
        )
    finally:
        await lkapi.aclose()
        publisher.close()


# -- start-up ----------------------------------------------------------------------------------


def test_missing_keys_are_named() -> None:
    env = {k: v for k, v in ALL_KEYS.items() if k not in ("OPENAI_API_KEY", "LIVEKIT_URL")}
    with pytest.raises(ConfigError) as caught:
        check_environment("start", env)
    message = str(caught.value)
    assert "OPENAI_API_KEY" in message and "LIVEKIT_URL" in message
    assert "DEEPGRAM_API_KEY" not in message
    assert missing_environment("console", env) == ["OPENAI_API_KEY"]  # console needs no LiveKit
    check_environment("start", ALL_KEYS)  # complete: no error
    assert missing_environment("start", {**ALL_KEYS, "CARTESIA_API_KEY": "  "}) == [
        "CARTESIA_API_KEY"
    ]


def test_run_refuses_to_start_without_keys_and_never_prints_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ALL_KEYS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value-123")
    assert worker.run(["start"]) == 2
    err = capsys.readouterr().err
    assert "DEEPGRAM_API_KEY" in err and "CARTESIA_API_KEY" in err and "LIVEKIT_API_SECRET" in err
    assert "OPENAI_API_KEY" not in err
    assert "sk-secret-value-123" not in err


def test_run_usage_and_unknown_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert worker.run(["--help"]) == 0
    assert "start" in capsys.readouterr().out
    assert worker.run(["bogus"]) == 2
    assert "unknown command 'bogus'" in capsys.readouterr().err
    assert worker.run([]) == 2


def test_config_from_env() -> None:
    cfg = AgentConfig.from_env({})
    assert cfg.agent_name == "screening-agent"
    assert cfg.amd and cfg.silence_timeout_s == 8.0
    cfg = AgentConfig.from_env(
        {"LIVEKIT_AGENT_NAME": "screener-eu", "AGENT_AMD": "off", "AGENT_SILENCE_TIMEOUT_S": "5"}
    )
    assert (cfg.agent_name, cfg.amd, cfg.silence_timeout_s) == ("screener-eu", False, 5.0)
    with pytest.raises(ConfigError, match="AGENT_ANSWER_TIMEOUT_S must be positive"):
        AgentConfig.from_env({"AGENT_ANSWER_TIMEOUT_S": "0"})


def test_server_registers_under_the_configured_agent_name() -> None:
    server = worker.build_server(AgentConfig(agent_name="screener-eu"))
    assert server._agent_name == "screener-eu"
    assert server.setup_fnc is worker.prewarm


# -- metadata ----------------------------------------------------------------------------------


def test_dispatch_metadata_makes_a_phone_call() -> None:
    plan = worker.read_plan(dispatch_metadata("nl", attempt=2), "")
    assert plan is not None and worker.is_phone_call(plan)
    assert (plan.attempt, plan.participant_identity, plan.language) == (2, "phone_user", "nl")


def test_room_metadata_is_the_fallback_and_no_metadata_means_a_web_interview() -> None:
    plan = worker.read_plan("{not json", dispatch_metadata("en"))
    assert plan is not None and plan.request.call_id == "uk-42"
    assert worker.read_plan("", "") is None
    assert not worker.is_phone_call(None)
    seed_only = json.loads(dispatch_metadata("nl"))
    for key in ("dialer", "phone_number", "timeslots", "metadata"):
        seed_only.pop(key)
    web = worker.read_plan("", json.dumps(seed_only))
    assert web is not None and not worker.is_phone_call(web)


# -- models ------------------------------------------------------------------------------------


def test_models_per_language_and_following_the_candidate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in ALL_KEYS.items():
        monkeypatch.setenv(name, value)
    stt, llm_model, tts = worker.build_models(AgentConfig(), "nl")
    assert (stt.model, stt._opts.language) == ("nova-3", "multi")
    assert llm_model.model == "gpt-4.1-mini"
    assert tts._opts.language == "nl"

    switch = worker.language_switcher(stt, tts, "nl")
    switch("fr")  # both on the multilingual model: only the voice changes language
    assert (stt._opts.language, tts._opts.language) == ("multi", "fr")
    switch("pl")  # Polish has its own model
    assert (stt.model, stt._opts.language, tts._opts.language) == ("nova-3", "pl", "pl")
    switch("th")
    assert (stt.model, stt._opts.language) == ("nova-2", "th")

    stt, _, tts = worker.build_models(AgentConfig(), "pl")
    assert (stt._opts.language, tts._opts.language) == ("pl", "pl")


def test_download_files_loads_the_local_models() -> None:
    assert worker.download_files() == 0


# -- hang-up, transfer and the results queue, for real ------------------------------------------


@pytest.fixture()
def lk() -> Iterator[LiveKitStandIn]:
    with LiveKitStandIn(api_secret=SECRET, ring_seconds=0.05, hang_seconds=60) as standin:
        yield standin


def queued_results(r: redis.Redis) -> list[ResultMessage]:
    out = []
    for raw in reversed(r.lrange(RESULTS_QUEUE, 0, -1)):
        envelope = json.loads(raw)
        _args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        out.append(ResultMessage.model_validate(kwargs["message"]))
    return out


def test_a_finished_screening_hangs_up_and_publishes_one_result(
    lk: LiveKitStandIn, r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    room = "screening-abc-123-1"
    metadata = dispatch_metadata("nl")
    ended: list[str] = []
    scripted = ScriptedLLM([call("record_consent", consent_given=True), call("do_not_call_again")])

    async def go() -> Any:
        await place_answered_call(lk, NL_PHONE, room, metadata)
        [answered] = lk.active_calls()
        assert answered.room_name == room
        return await screen_answered_call(
            lk,
            room,
            metadata,
            scripted,
            ["Ja.", "Bel me nooit meer."],
            redis_url=redis_url,
            spool=tmp_path / "spool",
            end_job=ended.append,
        )

    outcome = run(go)
    # The line is closed: SIP participant removed, room deleted, job ended.
    [dial] = lk.dials
    assert dial.end_reason == "removed"
    assert lk.active_calls() == []
    assert [rec.deleted_at is not None for rec in lk.rooms if rec.name == room] == [True]
    assert ended == ["screening finished"]
    # Exactly one result on the results queue, equal to what the agent built.
    [message] = queued_results(r)
    assert message.kind == "agent_result"
    assert message.outcome == Status.NOT_INTERESTED.value
    assert message.result == outcome.result
    assert message.result is not None and message.result.do_not_call_requested
    assert NL_PHONE not in message.model_dump_json()  # masked


def test_escalation_transfers_the_sip_participant(
    lk: LiveKitStandIn, r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    room = "screening-abc-123-2"
    metadata = dispatch_metadata("nl", attempt=2, recruiter_number="+3225550100")
    scripted = ScriptedLLM([call("request_recruiter", reason="wants a person")])

    async def go() -> Any:
        await place_answered_call(lk, NL_PHONE, room, metadata)
        return await screen_answered_call(
            lk,
            room,
            metadata,
            scripted,
            ["Ik wil iemand spreken."],
            redis_url=redis_url,
            spool=tmp_path / "spool",
        )

    outcome = run(go)
    assert outcome.result.status is Status.ESCALATED
    assert outcome.call.transferred_to == "+3225550100" and not outcome.call.hung_up
    [dial] = lk.dials
    assert dial.end_reason == "transferred"
    [transfer] = lk.requests_for("TransferSIPParticipant")
    assert transfer.http_status == 200
    [message] = queued_results(r)
    assert (message.attempt, message.outcome) == (2, "escalated")


RECRUITER = "+3225550100"


def test_a_refused_transfer_promises_a_call_back_then_hangs_up(
    lk: LiveKitStandIn, r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """The recruiter's line is busy: LiveKit refuses the transfer (SIP 486). The candidate
    hears that a recruiter will call back, the agent hangs up, and the status is escalated."""
    room = "screening-abc-123-3"
    metadata = dispatch_metadata("nl", recruiter_number=RECRUITER)
    lk.set_scenarios({RECRUITER: "busy"})
    scripted = ScriptedLLM([call("request_recruiter", reason="wants a person")])

    async def go() -> Any:
        await place_answered_call(lk, NL_PHONE, room, metadata)
        return await screen_answered_call(
            lk,
            room,
            metadata,
            scripted,
            ["Ik wil iemand spreken."],
            redis_url=redis_url,
            spool=tmp_path / "spool",
        )

    outcome = run(go)
    assert outcome.result.status is Status.ESCALATED
    assert outcome.result.escalation_reason == "wants a person"
    said = [turn.text for turn in outcome.result.transcript if turn.role == "agent"]
    assert said[-2:] == [
        templates.render("nl", "escalation_transfer")[0],
        templates.render("nl", "escalation_callback")[0],
    ]
    assert outcome.call.transferred_to == RECRUITER and outcome.call.hung_up
    [transfer] = lk.requests_for("TransferSIPParticipant")
    assert transfer.http_status != 200
    [dial] = lk.dials
    assert dial.end_reason == "removed"  # hung up by the agent, not transferred
    assert [rec.deleted_at is not None for rec in lk.rooms if rec.name == room] == [True]
    [message] = queued_results(r)
    assert message.outcome == "escalated"


def test_a_transfer_that_hangs_is_cut_off_at_the_maximum_call_duration(
    lk: LiveKitStandIn, r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    room = "screening-abc-123-4"
    metadata = dispatch_metadata("nl", recruiter_number=RECRUITER)
    lk.set_scenarios({RECRUITER: "hang"})  # the request to LiveKit never comes back
    scripted = ScriptedLLM([call("request_recruiter", reason="wants a person")])

    def hard_limit(controller: ScreeningController) -> None:
        controller.hard_stop_grace_s = 0.3
        controller.start_deadline(0.5)

    async def go() -> Any:
        await place_answered_call(lk, NL_PHONE, room, metadata)
        return await asyncio.wait_for(
            screen_answered_call(
                lk,
                room,
                metadata,
                scripted,
                ["Ik wil iemand spreken."],
                redis_url=redis_url,
                spool=tmp_path / "spool",
                on_start=hard_limit,
            ),
            10,
        )

    outcome = run(go)
    assert outcome.result.status is Status.ESCALATED
    assert outcome.call.hung_up
    [dial] = lk.dials
    assert dial.end_reason == "removed"
    assert lk.active_calls() == []
    [message] = queued_results(r)
    assert message.outcome == "escalated"


def test_hang_up_tolerates_a_candidate_who_already_left(lk: LiveKitStandIn) -> None:
    room = "screening-gone-1"

    async def go() -> None:
        await place_answered_call(lk, NL_PHONE, room, dispatch_metadata("nl"))
        lk.hang_up(room)  # the candidate hangs up first
        lkapi = api_client(lk)
        try:
            await LiveKitCallControl(lkapi, room, "phone_user").hang_up()
        finally:
            await lkapi.aclose()

    run(go)
    assert lk.active_calls() == []


def test_plan_for_the_dial_context() -> None:
    plan = ScreeningPlan.from_metadata(
        dispatch_metadata("en", attempt=3, leave_voicemail=False, recruiter_number="+44201")
    )
    assert (plan.attempt, plan.leave_voicemail, plan.recruiter_number) == (3, False, "+44201")
    assert plan.flow_config().can_transfer
    assert plan.max_call_duration_s == 900


def test_the_flow_and_its_helpers_import_no_livekit() -> None:
    pure = [
        "agent.flow",
        "agent.templates",
        "agent.languages",
        "agent.plan",
        "agent.prompting",
        "agent.results",
        "agent.web_interview",
    ]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in pure)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'livekit')\n"
        + "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_bad_metadata_is_logged_without_the_phone_number(caplog: pytest.LogCaptureFixture) -> None:
    body = json.loads(dispatch_metadata("nl"))
    body["favourite_colour"] = "blue"  # unknown field: rejected
    with caplog.at_level("ERROR", logger="agent.worker"):
        assert worker.read_plan(json.dumps(body), "") is None
    assert "favourite_colour" in caplog.text
    assert NL_PHONE not in caplog.text and NL_PHONE[1:] not in caplog.text
