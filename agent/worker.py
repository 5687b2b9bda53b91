"""The livekit-agents worker: `python -m agent start|dev|console` (or `run(argv)` from code).

One job per dialled call (or web interview):

1. Read the request: dispatch metadata, else room metadata (`dialer.messages`). A request with a
   phone number (or a dial context) is a phone call; anything else is a web interview and waits
   for the `interview-metadata` data message (`agent.web_interview`).
2. Phone: wait for the SIP participant (it joins while ringing). If it never comes, or the call
   is never answered, the job ends without a result: the dial task reports busy / no answer.
3. Start the AgentSession: Deepgram STT (per-language model, `multi` where it exists), OpenAI
   LLM, Cartesia TTS, the built-in VAD and turn detector.
4. Phone: answering-machine detection (livekit-agents' AMD) decides between greeting a person
   and leaving the short localised voicemail message (only when the dial context says so).
5. The flow runs; at the end the agent removes the SIP participant and deletes the room (or
   transfers to the recruiter number), so no silent line stays open, and publishes exactly one
   CandidateData on the results queue (spooled to disk while Redis is away). The maximum call
   duration is enforced by a timer that closes the call politely.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from livekit import rtc
from livekit.agents import (
    AMD,
    NOT_GIVEN,
    AgentServer,
    AgentSession,
    JobContext,
    JobProcess,
    cli,
    inference,
    room_io,
)
from livekit.agents.voice.turn import TurnHandlingOptions
from pydantic import ValidationError

from agent import flow as f
from agent.call_control import LiveKitCallControl
from agent.config import AgentConfig, check_environment
from agent.controller import ScreeningController
from agent.languages import spec
from agent.plan import DEFAULT_PARTICIPANT_IDENTITY, ScreeningPlan
from agent.publishing import PublisherSink
from agent.screening_agent import ScreeningAgent
from agent.web_interview import WebInterviewHandler
from dialer.errors import ConfigError
from dialer.models import ScreeningRequest
from dialer.results_queue import ResultPublisher

log = logging.getLogger("agent.worker")

SIP_CALL_STATUS = "sip.callStatus"
WORD_TIMESTAMP_LANGUAGES = frozenset({"en", "de", "es", "fr"})
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
COMMANDS = ("start", "dev", "console", "connect", "download-files", "flush-spool")


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


async def entrypoint(ctx: JobContext) -> None:
    _install_masking()
    cfg = AgentConfig.from_env()
    publisher = ResultPublisher(cfg.redis_url, cfg.spool_dir)
    sink = PublisherSink(publisher)
    flush_task = asyncio.create_task(sink.flush())  # results an earlier outage left behind
    try:
        await ctx.connect()
        plan = read_plan(ctx.job.metadata, ctx.room.metadata)
        if is_phone_call(plan):
            assert plan is not None
            await run_phone_call(ctx, cfg, plan, sink)
        else:
            web_plan = await wait_for_web_interview(ctx, cfg, plan)
            if web_plan is not None:
                await run_session(ctx, cfg, web_plan, sink, participant=None)
    finally:
        await flush_task
        if sink.spooled:  # Redis was away when this call ended: keep trying before we go
            await sink.drain(cfg.spool_drain_s)
        await asyncio.to_thread(publisher.close)


async def wait_for_web_interview(
    ctx: JobContext, cfg: AgentConfig, base: ScreeningPlan | None
) -> ScreeningPlan | None:
    handler = WebInterviewHandler(base)
    ready: asyncio.Future[ScreeningPlan] = asyncio.get_running_loop().create_future()

    def on_packet(packet: rtc.DataPacket) -> None:
        handler.on_data(packet.data, packet.topic)

    ctx.room.on("data_received", on_packet)

    def on_plan(plan: ScreeningPlan) -> None:
        if not ready.done():
            ready.set_result(plan)

    handler.subscribe(on_plan)
    try:
        return await asyncio.wait_for(ready, cfg.answer_timeout_s)
    except TimeoutError:
        log.warning(
            "no valid interview-metadata message within %.0f s (%s); leaving the room",
            cfg.answer_timeout_s,
            "; ".join(handler.errors) or "none received",
        )
        ctx.shutdown("no interview metadata")
        return None
    finally:
        ctx.room.off("data_received", on_packet)


async def run_phone_call(
    ctx: JobContext, cfg: AgentConfig, plan: ScreeningPlan, sink: PublisherSink
) -> None:
    identity = plan.participant_identity or DEFAULT_PARTICIPANT_IDENTITY
    try:
        participant = await asyncio.wait_for(
            ctx.wait_for_participant(identity=identity), cfg.answer_timeout_s
        )
    except TimeoutError:
        log.info("the phone participant never joined; the dial task reports this attempt")
        ctx.shutdown("participant never joined")
        return
    await run_session(ctx, cfg, plan, sink, participant=participant)


async def run_session(
    ctx: JobContext,
    cfg: AgentConfig,
    plan: ScreeningPlan,
    sink: PublisherSink,
    *,
    participant: rtc.RemoteParticipant | None,
) -> None:
    stt, llm_model, tts = build_models(cfg, plan.language)
    sip = participant is not None and participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP
    identity = participant.identity if participant is not None else None
    controller = ScreeningController(
        plan,
        sink=sink,
        call=LiveKitCallControl(ctx.api, ctx.room.name, identity, end_job=ctx.shutdown),
        on_language_change=language_switcher(stt, tts, plan.language),
        greet_on_enter=not sip,
    )

    async def on_shutdown(reason: str) -> None:
        await controller.finalize(f"job shutdown: {reason}")

    ctx.add_shutdown_callback(on_shutdown)

    session: AgentSession[None] = AgentSession(
        stt=stt,
        llm=llm_model,
        tts=tts,
        vad=inference.VAD(model="silero"),
        turn_handling=TurnHandlingOptions(turn_detection=inference.TurnDetector()),
        user_away_timeout=cfg.silence_timeout_s,
    )

    answered = asyncio.Event()

    def on_answered() -> None:
        if not answered.is_set():
            answered.set()
            controller.mark_answered()
            controller.start_deadline(plan.max_call_duration_s)

    if sip and participant is not None:
        if participant.attributes.get(SIP_CALL_STATUS) == "active":
            on_answered()

        def on_attributes(changed: dict[str, str], who: rtc.Participant) -> None:
            if who.identity == participant.identity and changed.get(SIP_CALL_STATUS) == "active":
                on_answered()

        ctx.room.on("participant_attributes_changed", on_attributes)
    else:
        on_answered()  # a web participant is "answered" when it joins

    await session.start(
        agent=ScreeningAgent(controller),
        room=ctx.room,
        room_options=room_io.RoomOptions(
            participant_identity=identity or NOT_GIVEN,
            close_on_disconnect=True,
            delete_room_on_close=True,
        ),
    )

    if sip:
        await greet_or_leave_voicemail(
            session, controller, cfg, llm_model, identity, answered, on_answered
        )
    await controller.wait_finished()


async def greet_or_leave_voicemail(
    session: AgentSession[None],
    controller: ScreeningController,
    cfg: AgentConfig,
    llm_model: Any,
    identity: str | None,
    answered: asyncio.Event,
    on_answered: Callable[[], None],
) -> None:
    """Phone calls: a person gets the greeting, a machine the voicemail message (or nothing)."""
    if not cfg.amd:
        if await _answered_or_finished(answered, controller):
            await controller.begin()
        return
    try:
        async with AMD(
            session,
            llm=llm_model,
            participant_identity=identity or NOT_GIVEN,
            ivr_detection=False,
            suppress_compatibility_warning=True,
        ) as detector:
            result = await detector.execute()
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
        log.info("answering machine (%s)", result.category.value)
        await controller.system(f.AnsweringMachine())
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
        left = len(publisher.pending())
    print(f"sent {sent} spooled result(s); {left} still waiting")
    return 0 if left == 0 else 1


USAGE = f"""usage: python -m agent {{{"|".join(COMMANDS)}}} [livekit-agents options]

  start           run the worker in production mode
  dev             run the worker in development mode (reload, debug logs)
  console         talk to the agent in a local console
  connect         join one room directly (livekit-agents `connect`)
  download-files  fetch / load the model files (Docker build step)
  flush-spool     send results spooled while Redis was unreachable
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
    cli.run_app(server)
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
