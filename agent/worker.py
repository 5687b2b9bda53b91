"""The livekit-agents worker: `python -m agent start|dev|console` (or `run(argv)` from code).

One job per dialled call (or web interview):

1. Read the request: dispatch metadata, else room metadata (`dialer.messages`). A request with a
   phone number (or a dial context) is a phone call; anything else is a web interview and waits
   for the `interview-metadata` data message (`agent.web_interview`), listened for from before
   the agent joins the room, or the same JSON as a participant's metadata / attribute.
   Unreadable metadata of a phone call (it has the dialer's key, or a SIP participant is in the
   room) is not taken for a web interview: the call is hung up and nothing is published.
2. Phone: wait for the SIP participant (it joins while ringing). If it never comes, or the call
   is never answered, the job ends without a result: the dial task reports busy / no answer.
3. Start the AgentSession: Deepgram STT (per-language model, `multi` where it exists), OpenAI
   LLM, Cartesia TTS, the built-in VAD and turn detector.
4. Phone: answering-machine detection (livekit-agents' AMD, on the session's own STT and LLM)
   decides between greeting a person and leaving the short localised voicemail message (only
   when the dial context says so, and never into a full mailbox).
5. The flow runs; at the end the agent removes the SIP participant and deletes the room (or
   transfers to the recruiter number), so no silent line stays open, and publishes exactly one
   CandidateData on the results queue (spooled to disk while Redis is away). The maximum call
   duration closes the call politely, and a few seconds later hangs it up whatever happens.

The job's logic (`run_job`) takes what it uses of LiveKit as inputs: the job (`JobLike`, which
livekit-agents' `JobContext` is), the session factory (`SessionFactory`: models and RoomIO in
production) and the answering-machine detector (`DetectorFactory`), so tests run it with a
text-only session, a room stand-in and a scripted detector.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Any, Protocol

from livekit import api, rtc
from livekit.agents import (
    AMD,
    NOT_GIVEN,
    Agent,
    AgentServer,
    AgentSession,
    JobContext,
    JobProcess,
    cli,
    inference,
    room_io,
)
from livekit.agents.voice.amd import AMDCategory, AMDPredictionEvent
from livekit.agents.voice.turn import TurnHandlingOptions
from pydantic import ValidationError

from agent import flow as f
from agent.call_control import LiveKitCallControl
from agent.config import AgentConfig, check_environment
from agent.controller import LanguageHook, ScreeningController
from agent.languages import spec
from agent.plan import DEFAULT_PARTICIPANT_IDENTITY, ScreeningPlan
from agent.publishing import PublisherSink, SpoolFlusher
from agent.screening_agent import ScreeningAgent
from agent.web_interview import WebInterviewHandler
from dialer.errors import ConfigError
from dialer.messages import DISPATCH_CONTEXT_KEY
from dialer.models import ScreeningRequest
from dialer.results_queue import ResultPublisher

log = logging.getLogger("agent.worker")

SIP_CALL_STATUS = "sip.callStatus"
SIP_KIND = rtc.ParticipantKind.PARTICIPANT_KIND_SIP
WORD_TIMESTAMP_LANGUAGES = frozenset({"en", "de", "es", "fr"})
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
COMMANDS = ("start", "dev", "console", "connect", "download-files", "flush-spool")
# Keys only the dialer's dispatch metadata has: seen in metadata that does not parse, they say
# "a phone call" (the regex also finds them in truncated JSON).
PHONE_METADATA_KEYS = re.compile(rf'"({DISPATCH_CONTEXT_KEY}|phone_number)"\s*:')


# ---------------------------------------------------------------------------------------------
# What the job uses of LiveKit
# ---------------------------------------------------------------------------------------------


class ParticipantLike(Protocol):
    @property
    def identity(self) -> str: ...
    @property
    def kind(self) -> rtc.ParticipantKind.ValueType: ...
    @property
    def metadata(self) -> str: ...
    @property
    def attributes(self) -> Mapping[str, str]: ...


class RoomLike(Protocol):
    """The room as an event emitter (`rtc.Room`, or any `rtc.EventEmitter` stand-in)."""

    @property
    def name(self) -> str: ...
    @property
    def metadata(self) -> str: ...
    @property
    def remote_participants(self) -> Mapping[str, ParticipantLike]: ...
    def on(self, event: Any, callback: Any = None) -> Any: ...
    def off(self, event: Any, callback: Any) -> Any: ...


class DispatchLike(Protocol):
    @property
    def metadata(self) -> str: ...


class JobLike(Protocol):
    """What the job uses of livekit-agents' `JobContext`."""

    @property
    def room(self) -> RoomLike: ...
    @property
    def job(self) -> DispatchLike: ...
    @property
    def api(self) -> api.LiveKitAPI: ...
    async def connect(self) -> None: ...
    async def wait_for_participant(self, *, identity: str | None = None) -> ParticipantLike: ...
    def shutdown(self, reason: str = ...) -> None: ...
    def add_shutdown_callback(
        self, callback: Callable[[str], Coroutine[None, None, None]]
    ) -> None: ...


@dataclass
class CallSession:
    """An AgentSession that is ready to start, and how it joins the call."""

    session: AgentSession[None]
    start: Callable[[Agent], Awaitable[None]]  # production: RoomIO on the job's room
    on_language_change: LanguageHook | None = None


# (plan, identity of the participant to talk with, None for a web interview) -> the session
SessionFactory = Callable[[ScreeningPlan, str | None], CallSession]


class Detector(Protocol):
    async def execute(self) -> AMDPredictionEvent: ...


# (session, SIP participant identity) -> answering-machine detection, as an async context
DetectorFactory = Callable[[AgentSession[None], str | None], AbstractAsyncContextManager[Detector]]


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def build_models(cfg: AgentConfig, language: str) -> tuple[Any, Any, Any]:
    """STT, LLM and TTS for a call that starts in `language` (keys come from the env)."""
    from livekit.plugins import cartesia, deepgram, openai

    lang = spec(language)
    stt = deepgram.STT(model=lang.stt_model, language=lang.stt_language)
    llm_model = openai.LLM(model=cfg.openai_model, parallel_tool_calls=False, temperature=0.2)
    tts_kwargs: dict[str, Any] = {
        "model": cfg.cartesia_model,
        "language": lang.cartesia_language,
        # Cartesia only times words in a few languages; the transcript does not need it.
        "word_timestamps": lang.code in WORD_TIMESTAMP_LANGUAGES,
    }
    if cfg.cartesia_voice:
        tts_kwargs["voice"] = cfg.cartesia_voice
    tts = cartesia.TTS(**tts_kwargs)
    return stt, llm_model, tts


def language_switcher(stt: Any, tts: Any, start_language: str) -> Any:
    """Follow the candidate: the TTS speaks the new language; the STT keeps its multilingual
    model when both languages are on it, else moves to the new language's model."""
    current = {"stt": spec(start_language)}

    def switch(language: str) -> None:
        new = spec(language)
        tts.update_options(language=new.cartesia_language)
        old = current["stt"]
        if not (old.multilingual_stt and new.multilingual_stt):
            stt.update_options(model=new.stt_model, language=new.stt_language)
            current["stt"] = new
        log.info("conversation language is now %s", new.code)

    return switch


class LiveKitSessionFactory:
    """Production sessions: Deepgram / OpenAI / Cartesia for the plan's language, the local VAD
    and turn detector, started on the job's room with RoomIO."""

    def __init__(self, room: rtc.Room, cfg: AgentConfig) -> None:
        self.room = room
        self.cfg = cfg

    def __call__(self, plan: ScreeningPlan, identity: str | None) -> CallSession:
        stt, llm_model, tts = build_models(self.cfg, plan.language)
        session: AgentSession[None] = AgentSession(
            stt=stt,
            llm=llm_model,
            tts=tts,
            vad=inference.VAD(model="silero"),
            turn_handling=TurnHandlingOptions(turn_detection=inference.TurnDetector()),
            user_away_timeout=self.cfg.silence_timeout_s,
        )

        async def start(agent: Agent) -> None:
            await session.start(
                agent=agent,
                room=self.room,
                room_options=room_io.RoomOptions(
                    participant_identity=identity or NOT_GIVEN,
                    close_on_disconnect=True,
                    delete_room_on_close=True,
                ),
            )

        return CallSession(session, start, language_switcher(stt, tts, plan.language))


def answering_machine_detector(session: AgentSession[None], identity: str | None) -> AMD:
    """livekit-agents' AMD on the session's own models. `llm=None` and `stt=None` say so
    explicitly: left out, AMD switches to LiveKit Inference models (Gemini, Cartesia
    ink-whisper) whenever LIVEKIT_URL is LiveKit Cloud, which this worker has no contract for.
    With `stt=None` AMD classifies the session's Deepgram transcripts instead of running a
    second STT stream on the greeting."""
    return AMD(
        session,
        llm=None,
        stt=None,
        participant_identity=identity or NOT_GIVEN,
        ivr_detection=False,
        suppress_compatibility_warning=True,
    )


# ---------------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------------


def prewarm(proc: JobProcess) -> None:
    """Load the local VAD / turn-detector models once per process, before any call."""
    from livekit import local_inference

    local_inference.init_vad()
    local_inference.init_eot()


def read_plan(dispatch_metadata: str, room_metadata: str) -> ScreeningPlan | None:
    """The request from dispatch metadata, else room metadata; None when neither has one."""
    for source, raw in (("dispatch", dispatch_metadata), ("room", room_metadata)):
        if raw and raw.strip():
            try:
                return ScreeningPlan.from_metadata(raw)
            except ValidationError as exc:
                # Field locations and reasons only: input values could hold a phone number.
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'metadata'}: {e['msg']}"
                    for e in exc.errors()
                )
                log.error("unusable %s metadata: %s", source, problems)
            except ValueError as exc:
                log.error("unusable %s metadata: %s", source, type(exc).__name__)
    return None


def is_phone_call(plan: ScreeningPlan | None) -> bool:
    return plan is not None and (
        isinstance(plan.request, ScreeningRequest) or plan.participant_identity is not None
    )


def looks_like_phone_dispatch(raw: str) -> bool:
    """Metadata that the dialer wrote (its `dialer` key, or a phone number), even unreadable."""
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        return PHONE_METADATA_KEYS.search(raw) is not None
    return isinstance(body, dict) and (DISPATCH_CONTEXT_KEY in body or "phone_number" in body)


def sip_participant(room: RoomLike) -> ParticipantLike | None:
    return next((p for p in room.remote_participants.values() if p.kind == SIP_KIND), None)


async def entrypoint(ctx: JobContext) -> None:
    _install_masking()
    cfg = AgentConfig.from_env()
    publisher = ResultPublisher(cfg.redis_url, cfg.spool_dir)
    try:
        await run_job(
            ctx,
            cfg,
            PublisherSink(publisher),
            sessions=LiveKitSessionFactory(ctx.room, cfg),
            detector=answering_machine_detector,
        )
    finally:
        await asyncio.to_thread(publisher.close)


async def run_job(
    job: JobLike,
    cfg: AgentConfig,
    sink: PublisherSink,
    *,
    sessions: SessionFactory,
    detector: DetectorFactory,
) -> None:
    """One job: flush the spool, read the request, run the phone call or the web interview."""
    flush_task = asyncio.create_task(sink.flush())  # results an earlier outage left behind
    # Listening before connecting: a message that arrives while the agent joins is not lost.
    inbox = InterviewInbox(job.room)
    try:
        await job.connect()
        metadata = job.job.metadata
        plan = read_plan(metadata, job.room.metadata)
        if is_phone_call(plan):
            assert plan is not None
            inbox.close()
            await run_phone_call(job, cfg, plan, sink, sessions=sessions, detector=detector)
        elif plan is None and (
            looks_like_phone_dispatch(metadata)
            or looks_like_phone_dispatch(job.room.metadata)
            or sip_participant(job.room) is not None
        ):
            inbox.close()
            await abandon_phone_call(job, "its dispatch metadata is unusable (logged above)")
        else:
            started = await wait_for_web_interview(job, cfg, plan, inbox)
            if isinstance(started, ScreeningPlan):
                await run_session(
                    job, cfg, started, sink, participant=None, sessions=sessions, detector=detector
                )
            elif started is not None and plan is None:
                await abandon_phone_call(job, "a SIP participant joined, but there is no request")
            elif started is not None and plan is not None:
                # The seed's own dispatch: plain SessionInput, then the candidate dialled in.
                log.info("a SIP participant joined: the request is screened as a phone call")
                phone_plan = replace(plan, participant_identity=started.identity)
                await run_session(
                    job,
                    cfg,
                    phone_plan,
                    sink,
                    participant=started,
                    sessions=sessions,
                    detector=detector,
                )
    finally:
        inbox.close()
        await flush_task
        if sink.spooled:  # Redis was away when this call ended: keep trying before we go
            await sink.drain(cfg.spool_drain_s)


async def abandon_phone_call(job: JobLike, problem: str) -> None:
    """A phone call the agent cannot screen: hang up and delete the room, publish nothing (no
    result is made up; the attempt stays with the dial task)."""
    participant = sip_participant(job.room)
    identity = participant.identity if participant is not None else DEFAULT_PARTICIPANT_IDENTITY
    log.error("cannot screen the phone call in room %s: %s; hanging up", job.room.name, problem)
    await LiveKitCallControl(job.api, job.room.name, identity, end_job=job.shutdown).hang_up()


class InterviewInbox:
    """Feeds a web interview's metadata to a held `WebInterviewHandler` from the moment it is
    created: `data_received` packets, and participants' metadata / attributes (on joining and
    on change). It also notices a SIP participant: a phone call without usable metadata."""

    def __init__(self, room: RoomLike) -> None:
        self.room = room
        self.handler = WebInterviewHandler(hold=True)
        self.sip_joined: asyncio.Future[ParticipantLike] = (
            asyncio.get_running_loop().create_future()
        )
        self._listeners: list[tuple[str, Callable[..., None]]] = [
            ("data_received", self._on_packet),
            ("participant_connected", self._on_joined),
            ("participant_metadata_changed", self._on_metadata),
            ("participant_attributes_changed", self._on_attributes),
        ]
        for event, callback in self._listeners:
            room.on(event, callback)

    def start(self, base: ScreeningPlan | None) -> None:
        """The room / dispatch metadata is read: handle what arrived so far, then live."""
        self.handler.release(base)
        for participant in list(self.room.remote_participants.values()):
            self._on_joined(participant)

    def close(self) -> None:
        for event, callback in self._listeners:
            self.room.off(event, callback)
        self._listeners = []

    def _on_packet(self, packet: rtc.DataPacket) -> None:
        self.handler.on_data(packet.data, packet.topic)

    def _on_joined(self, participant: ParticipantLike) -> None:
        if participant.kind == SIP_KIND:
            if not self.sip_joined.done():
                self.sip_joined.set_result(participant)
            return
        self.handler.on_participant(participant.metadata, participant.attributes)

    def _on_metadata(self, participant: ParticipantLike, _old: str, _new: str) -> None:
        self._on_joined(participant)

    def _on_attributes(self, _changed: Mapping[str, str], participant: ParticipantLike) -> None:
        self._on_joined(participant)


async def wait_for_web_interview(
    job: JobLike, cfg: AgentConfig, base: ScreeningPlan | None, inbox: InterviewInbox
) -> ScreeningPlan | ParticipantLike | None:
    """The web interview's plan, once its metadata arrived; or the SIP participant, when one
    joins first (a phone call after all). Neither within `answer_timeout_s`: the room is
    deleted and the job ends, with nothing published."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[ScreeningPlan] = loop.create_future()

    def on_plan(plan: ScreeningPlan) -> None:
        if not ready.done():
            ready.set_result(plan)

    inbox.handler.subscribe(on_plan)
    inbox.start(base)
    waiters: set[asyncio.Future[Any]] = {ready, inbox.sip_joined}
    try:
        done, _ = await asyncio.wait(
            waiters, timeout=cfg.answer_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        inbox.close()
    if ready in done:
        return ready.result()
    if inbox.sip_joined in done:
        return inbox.sip_joined.result()
    log.error(
        "web interview in room %s: no valid interview-metadata within %.0f s (%s); deleting "
        "the room",
        job.room.name,
        cfg.answer_timeout_s,
        "; ".join(inbox.handler.errors) or "nothing received",
    )
    await LiveKitCallControl(job.api, job.room.name, None, end_job=job.shutdown).hang_up()
    return None


async def run_phone_call(
    job: JobLike,
    cfg: AgentConfig,
    plan: ScreeningPlan,
    sink: PublisherSink,
    *,
    sessions: SessionFactory,
    detector: DetectorFactory,
) -> None:
    identity = plan.participant_identity or DEFAULT_PARTICIPANT_IDENTITY
    try:
        participant = await asyncio.wait_for(
            job.wait_for_participant(identity=identity), cfg.answer_timeout_s
        )
    except TimeoutError:
        log.info("the phone participant never joined; the dial task reports this attempt")
        # Deleting the room keeps a late answer from reaching a room without an agent.
        await LiveKitCallControl(job.api, job.room.name, identity, end_job=job.shutdown).hang_up()
        return
    await run_session(
        job, cfg, plan, sink, participant=participant, sessions=sessions, detector=detector
    )


async def run_session(
    job: JobLike,
    cfg: AgentConfig,
    plan: ScreeningPlan,
    sink: PublisherSink,
    *,
    participant: ParticipantLike | None,
    sessions: SessionFactory,
    detector: DetectorFactory,
) -> None:
    sip = participant is not None and participant.kind == SIP_KIND
    identity = participant.identity if participant is not None else None
    call = LiveKitCallControl(job.api, job.room.name, identity, end_job=job.shutdown)
    try:
        call_session = sessions(plan, identity)
    except Exception:
        log.exception("could not set up the session; hanging up")
        await call.hang_up()
        raise
    controller = ScreeningController(
        plan,
        sink=sink,
        call=call,
        on_language_change=call_session.on_language_change,
        greet_on_enter=not sip,
    )

    async def on_shutdown(reason: str) -> None:
        await controller.finalize(f"job shutdown: {reason}")

    job.add_shutdown_callback(on_shutdown)

    answered = asyncio.Event()

    def on_answered() -> None:
        if not answered.is_set():
            answered.set()
            controller.mark_answered()
            controller.start_deadline(plan.max_call_duration_s)

    def on_attributes(changed: Mapping[str, str], who: ParticipantLike) -> None:
        if who.identity == identity and changed.get(SIP_CALL_STATUS) == "active":
            on_answered()

    if sip and participant is not None:
        if participant.attributes.get(SIP_CALL_STATUS) == "active":
            on_answered()
        job.room.on("participant_attributes_changed", on_attributes)
    else:
        on_answered()  # a web participant is "answered" when it joins

    try:
        await call_session.start(ScreeningAgent(controller))
        if sip:
            await greet_or_leave_voicemail(
                call_session.session, controller, cfg, identity, answered, on_answered, detector
            )
        await controller.wait_finished()
    except BaseException as exc:
        # An error or a cancelled job: the line is hung up and the attempt gets its one result.
        await controller.finalize(f"the session failed: {type(exc).__name__}")
        raise
    finally:
        if sip:
            job.room.off("participant_attributes_changed", on_attributes)


async def greet_or_leave_voicemail(
    session: AgentSession[None],
    controller: ScreeningController,
    cfg: AgentConfig,
    identity: str | None,
    answered: asyncio.Event,
    on_answered: Callable[[], None],
    detector: DetectorFactory,
) -> None:
    """Phone calls: a person gets the greeting, a machine the voicemail message (or nothing)."""
    if not cfg.amd:
        if await _answered_or_finished(answered, controller):
            await controller.begin()
        return
    try:
        async with detector(session, identity) as amd:
            result = await amd.execute()
    except Exception:
        log.exception("answering-machine detection failed; treating the call as a person")
        if await _answered_or_finished(answered, controller):
            await controller.begin()
        return
    if result.reason == "participant_missing" and not answered.is_set():
        log.info("the call ended before it was answered; the dial task reports this attempt")
        return
    on_answered()  # AMD only listens once the call is active
    if result.is_machine:
        unavailable = result.category is AMDCategory.MACHINE_UNAVAILABLE
        log.info(
            "answering machine (%s)%s",
            result.category.value,
            ": the mailbox takes no message" if unavailable else "",
        )
        await controller.system(f.AnsweringMachine(mailbox_unavailable=unavailable))
    else:
        await controller.begin()


async def _answered_or_finished(answered: asyncio.Event, controller: ScreeningController) -> bool:
    """Wait for the call to be answered; False if the attempt ended first (never answered)."""
    waiters = {
        asyncio.ensure_future(answered.wait()),
        asyncio.ensure_future(controller.wait_finished()),
    }
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return answered.is_set() and not controller.finished


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def build_server(cfg: AgentConfig | None = None) -> AgentServer:
    cfg = cfg or AgentConfig.from_env()
    server = AgentServer(setup_fnc=prewarm)
    server.rtc_session(entrypoint, agent_name=cfg.agent_name)
    return server


def download_files() -> int:
    """Fetch / load every model file the agent needs (Docker build step)."""
    from livekit import local_inference
    from livekit.agents import Plugin
    from livekit.plugins import cartesia, deepgram, openai, silero  # noqa: F401 - registers

    for plugin in Plugin.registered_plugins:
        log.info("downloading files for %s", plugin.package)
        plugin.download_files()
    local_inference.init_vad()
    local_inference.init_eot()
    log.info("model files ready")
    return 0


def flush_spool() -> int:
    cfg = AgentConfig.from_env()
    with ResultPublisher(cfg.redis_url, cfg.spool_dir) as publisher:
        sent = publisher.flush()
        unsent, unconfirmed = len(publisher.pending()), len(publisher.unconfirmed())
    print(
        f"sent {sent} result(s); {unsent} still unsent, {unconfirmed} sent but not yet "
        "confirmed by the results consumer"
    )
    return 0 if unsent + unconfirmed == 0 else 1


USAGE = f"""usage: python -m agent {{{"|".join(COMMANDS)}}} [livekit-agents options]

  start           run the worker in production mode
  dev             run the worker in development mode (reload, debug logs)
  console         talk to the agent in a local console
  connect         join one room directly (livekit-agents `connect`)
  download-files  fetch / load the model files (Docker build step)
  flush-spool     send results spooled while Redis was unreachable, and again those the
                  results consumer has not confirmed (exit 1 while any is left)
"""


def run(argv: Sequence[str] | None = None) -> int:
    """The one entry point: `python -m agent <command>`; `dialer agent` calls this too."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    command = args[0]
    if command not in COMMANDS:
        print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _install_masking()
    if command == "download-files":
        return download_files()
    try:
        if command == "flush-spool":
            return flush_spool()
        check_environment(command)
        cfg = AgentConfig.from_env()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = build_server(cfg)
    sys.argv = [f"{sys.argv[0] or 'agent'}", *args]
    flusher = None
    if command != "console":  # results of real calls may wait in the spool: keep sending them
        flusher = SpoolFlusher(ResultPublisher(cfg.redis_url, cfg.spool_dir), cfg.spool_flush_s)
        flusher.start()
    try:
        cli.run_app(server)
    finally:
        if flusher is not None:
            flusher.stop()
    return 0


def _install_masking() -> None:
    """Phone numbers masked and API keys removed in every log line (dialer.logs' filter)."""
    try:
        from dialer.logs import MaskingFilter
    except ImportError:  # pragma: no cover
        return
    masking = MaskingFilter()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(existing, MaskingFilter) for existing in handler.filters):
            handler.addFilter(masking)
