"""The worker's job (`agent.worker.run_job`) end to end, without LiveKit Cloud: a real text-only
AgentSession on a scripted LLM, a room stand-in that is a real `rtc.EventEmitter`, the real
`livekit-api` client against the in-repo LiveKit stand-in (hang-ups really remove the SIP
participant and delete the room there), a real Redis results queue, and a scripted AMD verdict
at that one boundary."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from livekit.agents import AgentSession, inference
from livekit.agents.voice.amd import AMD, AMDCategory
from livekit.agents.voice.turn import TurnHandlingOptions
from livekit.protocol import room as proto_room

from agent import templates, worker
from agent.config import AgentConfig
from agent.flow import MAILBOX_UNAVAILABLE_NOTE
from agent.publishing import PublisherSink
from agent.web_interview import TOPIC
from dialer.livekit_standin import LiveKitStandIn
from dialer.messages import ResultMessage
from dialer.models import CandidateData, Status
from dialer.results_queue import ResultPublisher
from tests.agent.job_standin import (
    STANDARD,
    JobStandIn,
    ParticipantStandIn,
    RoomStandIn,
    ScriptedDetector,
    TextSessions,
    wait_until,
)
from tests.agent.requests import NL_PHONE, REQUESTS, dispatch_metadata
from tests.agent.scripted_llm import ScriptedLLM, call
from tests.agent.test_web_interview import SEED_MESSAGE
from tests.agent.test_worker import SECRET, queued_results
from tests.support.livekit import api_client, place_answered_call

T = TypeVar("T")
ACTIVE = {worker.SIP_CALL_STATUS: "active"}


def run(factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await factory()

    return asyncio.run(main())


def t(key: str, lang: str = "nl") -> str:
    req = REQUESTS[lang]
    return templates.render(lang, key, name=req["candidate_name"], job_title=req["job_title"])[0]


@pytest.fixture()
def lk() -> Iterator[LiveKitStandIn]:
    with LiveKitStandIn(api_secret=SECRET, ring_seconds=0.05, hang_seconds=60) as standin:
        yield standin


@pytest.fixture()
def cfg(redis_url: str, tmp_path: Path) -> AgentConfig:
    return AgentConfig(
        redis_url=redis_url, spool_dir=tmp_path / "spool", answer_timeout_s=30.0, spool_drain_s=1
    )


@dataclass
class Job:
    """One job under test and what it ran on."""

    job: JobStandIn
    room: RoomStandIn
    sessions: TextSessions
    detector: ScriptedDetector
    sink: PublisherSink
    cfg: AgentConfig

    def start(self) -> asyncio.Task[None]:
        return asyncio.create_task(
            worker.run_job(
                self.job, self.cfg, self.sink, sessions=self.sessions, detector=self.detector
            )
        )


@asynccontextmanager
async def job_for(
    lk: LiveKitStandIn,
    cfg: AgentConfig,
    room_name: str,
    *,
    dispatch: str = "",
    room_metadata: str = "",
    script: list[Any] | None = None,
    verdict: AMDCategory = AMDCategory.HUMAN,
    on_connect: Callable[[RoomStandIn], None] | None = None,
    phone: ParticipantStandIn | None = None,
) -> AsyncIterator[Job]:
    """A job for `room_name`; with `phone`, the answered SIP participant is in the room."""
    lkapi = api_client(lk)
    publisher = ResultPublisher(cfg.redis_url, cfg.spool_dir)
    room = RoomStandIn(room_name, room_metadata)
    if phone is not None:
        room.remote_participants[phone.identity] = phone
    sessions = TextSessions(ScriptedLLM(script or []))
    try:
        yield Job(
            JobStandIn(room, lkapi, dispatch, on_connect=on_connect),
            room,
            sessions,
            ScriptedDetector(verdict),
            PublisherSink(publisher),
            cfg,
        )
    finally:
        await sessions.close()
        await lkapi.aclose()
        await asyncio.to_thread(publisher.close)


async def answered_phone_call(lk: LiveKitStandIn, room: str, metadata: str) -> ParticipantStandIn:
    """The dial task's call in the LiveKit stand-in, and its SIP participant as the room sees
    it once answered."""
    await place_answered_call(lk, NL_PHONE, room, metadata)
    return ParticipantStandIn("phone_user", attributes=dict(ACTIVE))


async def create_room(lk: LiveKitStandIn, name: str) -> None:
    lkapi = api_client(lk)
    try:
        await lkapi.room.create_room(proto_room.CreateRoomRequest(name=name))
    finally:
        await lkapi.aclose()


async def greeted(job: Job) -> tuple[asyncio.Task[None], AgentSession[None]]:
    """Start the job and wait until its session has spoken the greeting."""
    task = job.start()
    await job.sessions.started.wait()
    session = job.sessions.sessions[0]
    await wait_until(lambda: len(agent_lines(session)) == 1)
    return task, session


def agent_lines(session: AgentSession[None]) -> list[str]:
    return [
        item.text_content or ""
        for item in session.history.items
        if item.type == "message" and item.role == "assistant"
    ]


def room_deleted(lk: LiveKitStandIn, name: str) -> bool:
    return [r.deleted_at is not None for r in lk.rooms if r.name == name] == [True]


def only_result(r: redis.Redis) -> CandidateData:
    [message] = queued_results(r)
    assert message.result is not None
    return message.result


# -- phone calls: answering-machine detection ----------------------------------------------------


def test_amd_machine_gets_the_localised_voicemail_message_and_the_call_ends(
    lk: LiveKitStandIn, cfg: AgentConfig, r: redis.Redis
) -> None:
    room_name = "screening-abc-123-1"
    metadata = dispatch_metadata("nl")

    async def go() -> Job:
        phone = await answered_phone_call(lk, room_name, metadata)
        async with job_for(
            lk, cfg, room_name, dispatch=metadata, verdict=AMDCategory.MACHINE_VM, phone=phone
        ) as job:
            await job.start()
            return job

    job = run(go)
    data = only_result(r)
    assert data.status is Status.VOICEMAIL and data.voicemail_detected
    assert [(turn.role, turn.text) for turn in data.transcript] == [("agent", t("voicemail_named"))]
    assert "voicemail_note" not in data.metadata
    assert job.detector.identities == ["phone_user"]
    assert job.sessions.model.requests == []
    # The line is closed in the LiveKit stand-in: participant removed, room deleted.
    [dial] = lk.dials
    assert dial.end_reason == "removed"
    assert room_deleted(lk, room_name)
    assert job.job.shutdown_reasons == ["screening finished"]


def test_a_full_mailbox_gets_no_message_and_the_result_says_so(
    lk: LiveKitStandIn, cfg: AgentConfig, r: redis.Redis
) -> None:
    room_name = "screening-abc-123-2"
    metadata = dispatch_metadata("nl", attempt=2)

    async def go() -> None:
        phone = await answered_phone_call(lk, room_name, metadata)
        async with job_for(
            lk,
            cfg,
            room_name,
            dispatch=metadata,
            verdict=AMDCategory.MACHINE_UNAVAILABLE,
            phone=phone,
        ) as job:
            await job.start()
            assert agent_lines(job.sessions.sessions[0]) == []

    run(go)
    data = only_result(r)
    assert (data.status, data.voicemail_detected, data.attempt) == (Status.VOICEMAIL, True, 2)
    assert data.transcript == []
    assert data.metadata["voicemail_note"] == MAILBOX_UNAVAILABLE_NOTE
    assert data.metadata["crm_candidate"] == "C-77"  # the request's own metadata is kept
    [dial] = lk.dials
    assert dial.end_reason == "removed"


def test_amd_human_gets_the_greeting_and_the_screening_goes_on(
    lk: LiveKitStandIn, cfg: AgentConfig, r: redis.Redis
) -> None:
    room_name = "screening-abc-123-3"
    metadata = dispatch_metadata("nl")

    async def go() -> Job:
        phone = await answered_phone_call(lk, room_name, metadata)
        script = [call("record_consent", consent_given=False)]
        async with job_for(
            lk, cfg, room_name, dispatch=metadata, script=script, phone=phone
        ) as job:
            task, session = await greeted(job)
            await session.run(user_input="Nee, liever niet.")
            await task
            return job

    job = run(go)
    data = only_result(r)
    assert data.status is Status.NOT_INTERESTED and not data.consent_given
    assert [turn.role for turn in data.transcript] == ["agent", "candidate", "agent"]
    assert data.transcript[0].text.startswith(t("greeting_named"))
    assert data.transcript[-1].text == t("closing_consent_declined")
    assert job.sessions.plans[0].request.call_id == "abc-123"
    [dial] = lk.dials
    assert dial.end_reason == "removed"


def test_amd_runs_on_the_sessions_own_models_even_on_livekit_cloud(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Left to itself AMD switches to LiveKit Inference models when LIVEKIT_URL is LiveKit
    Cloud; the worker's detector says explicitly: the session's STT transcripts and LLM."""
    monkeypatch.setenv("LIVEKIT_URL", "wss://screening-eu.livekit.cloud")
    monkeypatch.setenv("LIVEKIT_API_KEY", "devkey")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "devsecret")

    async def go() -> None:
        session: AgentSession[None] = AgentSession(
            llm=ScriptedLLM(),
            vad=None,
            turn_handling=TurnHandlingOptions(turn_detection="manual"),
        )
        left_alone = AMD(session)
        assert isinstance(left_alone._stt, inference.STT)  # what the worker must not get
        detector = worker.answering_machine_detector(session, "phone_user")
        assert detector._stt is None  # the session's own Deepgram transcripts
        assert detector._llm_config is None  # the session's own LLM
        assert detector._participant_identity == "phone_user"
        assert detector._ivr_detection is False

    run(go)


# -- phone calls: answering, the deadline, shutdown, failures -------------------------------------


def test_sip_call_status_active_answers_the_call_and_starts_the_maximum_duration(
    lk: LiveKitStandIn, cfg: AgentConfig, r: redis.Redis
) -> None:
    """Nobody is greeted while the phone rings; `sip.callStatus=active` answers the call, and
    the maximum call duration (1 s here) counts from then."""
    room_name = "screening-abc-123-4"
    metadata = dispatch_metadata("nl", max_call_duration_s=1)
    no_amd = AgentConfig(**{**cfg.__dict__, "amd": False})

    async def go() -> float:
        await place_answered_call(lk, NL_PHONE, room_name, metadata)
        ringing = ParticipantStandIn("phone_user", attributes={worker.SIP_CALL_STATUS: "ringing"})
        async with job_for(lk, no_amd, room_name, dispatch=metadata) as job:
            job.room.remote_participants[ringing.identity] = ringing
            task = job.start()
            await job.sessions.started.wait()
            await asyncio.sleep(0.3)
            assert agent_lines(job.sessions.sessions[0]) == []  # not greeted into ringing
            assert queued_results(r) == []
            job.room.set_attributes("phone_user", {"other": "x"})  # not the answer
            await asyncio.sleep(0.05)
            assert agent_lines(job.sessions.sessions[0]) == []
            answered_at = time.monotonic()
            job.room.set_attributes("phone_user", dict(ACTIVE))
            await task
            assert job.room.listeners("participant_attributes_changed") == 0
            return time.monotonic() - answered_at

    took = run(go)
    data = only_result(r)
    assert data.status is Status.INCOMPLETE
    assert [turn.role for turn in data.transcript] == ["agent", "agent"]
    assert data.transcript[0].text.startswith(t("greeting_named"))
    assert data.transcript[1].text == t("closing_time_up")
    assert 1.0 <= took < 5.0
    assert data.started_at is not None and data.ended_at is not None
    assert room_deleted(lk, room_name)


def test_the_shutdown_callback_publishes_exactly_one_result_and_hangs_up(
    lk: LiveKitStandIn, cfg: AgentConfig, r: redis.Redis
) -> None:
    room_name = "screening-abc-123-5"
    metadata = dispatch_metadata("nl")

    async def go() -> Job:
        phone = await answered_phone_call(lk, room_name, metadata)
        script = [call("record_consent", consent_given=True)]
        async with job_for(
            lk, cfg, room_name, dispatch=metadata, script=script, phone=phone
        ) as job:
            task, session = await greeted(job)
            await session.run(user_input="Ja hoor.")
            assert lk.active_calls() != []  # mid-call
            # The worker is told to stop: livekit-agents runs the job's shutdown callbacks.
            await job.job.run_shutdown_callbacks("worker draining")
            await task
            await job.job.run_shutdown_callbacks("worker draining")  # once more: nothing new
            return job

    run(go)
    data = only_result(r)
    assert data.status is Status.INCOMPLETE and data.consent_given
    assert lk.active_calls() == []
    [dial] = lk.dials
    assert dial.end_reason == "removed"
    assert room_deleted(lk, room_name)


def test_a_session_that_fails_to_start_still_hangs_up_and_reports_the_answered_call(
    lk: LiveKitStandIn, cfg: AgentConfig, r: redis.Redis
) -> None:
    room_name = "screening-abc-123-6"
    metadata = dispatch_metadata("nl")

    async def go() -> None:
        phone = await answered_phone_call(lk, room_name, metadata)
        async with job_for(lk, cfg, room_name, dispatch=metadata, phone=phone) as job:
            job.sessions.fail_start = RuntimeError("RoomIO could not subscribe")
            with pytest.raises(RuntimeError, match="RoomIO could not subscribe"):
                await job.start()

    run(go)
    data = only_result(r)
    assert data.status is Status.INCOMPLETE and data.transcript == []
    assert lk.active_calls() == []
    assert room_deleted(lk, room_name)


def test_unreadable_phone_metadata_hangs_up_and_publishes_nothing(
    lk: LiveKitStandIn, cfg: AgentConfig, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """The dialer's metadata that does not validate is not a web interview: the candidate is not
    left on a silent line, and no result is made up (the attempt stays with the dial task)."""
    room_name = "screening-abc-123-7"
    body = json.loads(dispatch_metadata("nl"))
    body["favourite_colour"] = "blue"
    metadata = json.dumps(body)
    slow_web = AgentConfig(**{**cfg.__dict__, "answer_timeout_s": 60.0})

    async def go() -> Job:
        await place_answered_call(lk, NL_PHONE, room_name, metadata)
        async with job_for(lk, slow_web, room_name, dispatch=metadata) as job:
            await asyncio.wait_for(job.start(), 10)  # no waiting for a web interview
            return job

    with caplog.at_level(logging.ERROR, logger="agent.worker"):
        job = run(go)
    assert "favourite_colour" in caplog.text
    assert "cannot screen the phone call" in caplog.text
    assert NL_PHONE not in caplog.text
    assert job.sessions.sessions == []
    assert queued_results(r) == []
    [dial] = lk.dials
    assert dial.end_reason == "removed"
    assert room_deleted(lk, room_name)
    assert job.job.shutdown_reasons == ["screening finished"]


def test_unreadable_metadata_with_a_sip_participant_in_the_room_hangs_up(
    lk: LiveKitStandIn, cfg: AgentConfig, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    room_name = "screening-abc-123-8"
    slow_web = AgentConfig(**{**cfg.__dict__, "answer_timeout_s": 60.0})

    async def go() -> None:
        phone = await answered_phone_call(lk, room_name, dispatch_metadata("nl"))
        async with job_for(lk, slow_web, room_name, dispatch="{not json", phone=phone) as job:
            await asyncio.wait_for(job.start(), 10)

    with caplog.at_level(logging.ERROR, logger="agent.worker"):
        run(go)
    assert "unusable dispatch metadata" in caplog.text
    assert queued_results(r) == []
    [dial] = lk.dials
    assert dial.end_reason == "removed"
    assert room_deleted(lk, room_name)


def test_the_seeds_own_dispatch_is_a_phone_call_once_the_sip_participant_joins(
    lk: LiveKitStandIn, cfg: AgentConfig, r: redis.Redis
) -> None:
    """seeds/000_*: plain SessionInput as dispatch metadata, then the candidate is dialled in."""
    room_name = "screening-abc-123-9"
    seed_input = {k: v for k, v in REQUESTS["nl"].items() if k not in ("phone_number", "timeslots")}
    seed_input.pop("metadata")
    metadata = json.dumps(seed_input)

    async def go() -> Job:
        await place_answered_call(lk, NL_PHONE, room_name, metadata)
        script = [call("do_not_call_again")]
        async with job_for(lk, cfg, room_name, dispatch=metadata, script=script) as job:
            task = job.start()
            await wait_until(lambda: job.job.connected)
            job.room.join(ParticipantStandIn("phone_user", attributes=dict(ACTIVE)))
            await asyncio.wait_for(job.sessions.started.wait(), 5)
            session = job.sessions.sessions[0]
            await wait_until(lambda: len(agent_lines(session)) == 1)
            await session.run(user_input="Bel me nooit meer.")
            await task
            return job

    job = run(go)
    data = only_result(r)
    assert data.status is Status.NOT_INTERESTED and data.do_not_call_requested
    assert job.sessions.plans[0].participant_identity == "phone_user"
    assert job.detector.identities == ["phone_user"]
    assert room_deleted(lk, room_name)


# -- web interviews --------------------------------------------------------------------------------


def seed_message(**changes: Any) -> bytes:
    return json.dumps(SEED_MESSAGE | changes).encode()


def test_interview_metadata_message_starts_the_web_interview_with_the_mapped_request(
    lk: LiveKitStandIn, cfg: AgentConfig, r: redis.Redis
) -> None:
    room_name = "interview_306BFCCD_1749695243750"

    async def go() -> Job:
        await create_room(lk, room_name)
        script = [call("record_consent", consent_given=False)]
        async with job_for(lk, cfg, room_name, script=script) as job:
            task = job.start()
            await wait_until(lambda: job.job.connected)
            job.room.send_data(b'{"chat": "hello"}', "lk-chat-topic")  # another topic
            job.room.send_data(seed_message(), TOPIC)
            await asyncio.wait_for(job.sessions.started.wait(), 5)  # at once, not at a timeout
            session = job.sessions.sessions[0]
            await wait_until(lambda: len(agent_lines(session)) == 1)
            await session.run(user_input="No, I'd rather not.")
            await task
            return job

    job = run(go)
    [plan] = job.sessions.plans
    assert plan.channel == "web" and plan.max_call_duration_s == 1800
    assert plan.request.call_id == SEED_MESSAGE["interviewId"]
    assert plan.request.job_title == SEED_MESSAGE["jobTitle"]
    data = only_result(r)
    assert data.call_id == SEED_MESSAGE["interviewId"]
    assert data.status is Status.NOT_INTERESTED
    assert data.metadata["source"] == "web_interview"
    assert data.metadata["applicationId"] == SEED_MESSAGE["applicationId"]
    assert room_deleted(lk, room_name)
    assert job.room.listeners("data_received") == 0


def test_a_message_sent_while_the_agent_joins_is_not_lost_and_max_duration_is_enforced(
    lk: LiveKitStandIn, cfg: AgentConfig, r: redis.Redis
) -> None:
    """The frontend publishes right after it joins, which can be while the agent is still
    connecting; and `maxDuration` ends the interview on the server side."""
    room_name = "interview_306BFCCD_1"

    def publish_while_connecting(room: RoomStandIn) -> None:
        room.send_data(seed_message(maxDuration=0.5), TOPIC)

    async def go() -> None:
        await create_room(lk, room_name)
        async with job_for(lk, cfg, room_name, on_connect=publish_while_connecting) as job:
            await asyncio.wait_for(job.start(), 10)

    run(go)
    data = only_result(r)
    assert data.call_id == SEED_MESSAGE["interviewId"]
    assert data.status is Status.INCOMPLETE
    assert data.transcript[-1].text == templates.render("en", "closing_time_up")[0]
    assert room_deleted(lk, room_name)


@pytest.mark.parametrize("carrier", ["metadata", "attribute"])
def test_interview_metadata_from_the_participant_starts_the_interview(
    carrier: str, lk: LiveKitStandIn, cfg: AgentConfig, r: redis.Redis
) -> None:
    room_name = f"interview_306BFCCD_{carrier}"
    payload = seed_message(maxDuration=0.5).decode()

    async def go() -> Job:
        await create_room(lk, room_name)
        async with job_for(lk, cfg, room_name) as job:
            if carrier == "metadata":  # in the room before the agent, metadata from its token
                candidate = ParticipantStandIn("candidate_9665", STANDARD, metadata=payload)
                job.room.remote_participants[candidate.identity] = candidate
                await asyncio.wait_for(job.start(), 10)
            else:  # joins with unrelated metadata, then sets the attribute
                task = job.start()
                await wait_until(lambda: job.job.connected)
                job.room.join(ParticipantStandIn("candidate_9665", STANDARD, metadata='{"a": 1}'))
                await asyncio.sleep(0.05)
                assert job.sessions.sessions == []
                job.room.set_attributes("candidate_9665", {TOPIC: payload})
                await asyncio.wait_for(task, 10)
            return job

    job = run(go)
    assert job.sessions.plans[0].request.call_id == SEED_MESSAGE["interviewId"]
    assert only_result(r).status is Status.INCOMPLETE
    assert room_deleted(lk, room_name)


def test_no_interview_metadata_deletes_the_room_and_says_why(
    lk: LiveKitStandIn, cfg: AgentConfig, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    room_name = "interview_never_started"
    quick = AgentConfig(**{**cfg.__dict__, "answer_timeout_s": 0.3})

    async def go() -> Job:
        await create_room(lk, room_name)
        async with job_for(lk, quick, room_name) as job:
            task = job.start()
            await wait_until(lambda: job.job.connected)
            job.room.send_data(b"{oops", TOPIC)
            await asyncio.wait_for(task, 10)
            return job

    with caplog.at_level(logging.ERROR, logger="agent.worker"):
        job = run(go)
    assert "no valid interview-metadata within 0 s" in caplog.text
    assert "not JSON" in caplog.text
    assert job.sessions.sessions == []
    assert queued_results(r) == []
    assert room_deleted(lk, room_name)
    assert job.job.shutdown_reasons == ["screening finished"]


# -- the results spool -----------------------------------------------------------------------------


def test_the_spool_is_flushed_when_a_job_starts(
    lk: LiveKitStandIn, cfg: AgentConfig, r: redis.Redis
) -> None:
    """A result spooled while Redis was away (by an earlier job) goes out when the next job
    starts, whatever that job then does."""
    earlier = CandidateData(call_id="earlier-1", status=Status.COMPLETED, attempt=2)
    offline = ResultPublisher("redis://127.0.0.1:1/0", cfg.spool_dir, connect_timeout=0.3)
    try:
        assert offline.publish(ResultMessage.from_agent(earlier, datetime.now(UTC))) == "spooled"
    finally:
        offline.close()
    room_name = "interview_after_outage"
    quick = AgentConfig(**{**cfg.__dict__, "answer_timeout_s": 0.3})

    async def go() -> Job:
        await create_room(lk, room_name)
        async with job_for(lk, quick, room_name) as job:
            await asyncio.wait_for(job.start(), 10)
            return job

    job = run(go)
    [message] = queued_results(r)
    assert message.result == earlier
    assert job.sink.publisher.pending() == []
