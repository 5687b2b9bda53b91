"""What `agent.worker.run_job` gets from livekit-agents, for tests without a LiveKit server.

- `RoomStandIn` is a real `livekit.rtc.EventEmitter` with the room's name, metadata and remote
  participants; tests emit on it exactly the events `rtc.Room` emits (`data_received` with an
  `rtc.DataPacket`, `participant_connected`, `participant_attributes_changed`, ...).
- `JobStandIn` is the part of `JobContext` the worker uses: dispatch metadata, `connect`,
  `wait_for_participant`, `shutdown`, shutdown callbacks, and `api`, a real `livekit-api`
  client against the in-repo LiveKit stand-in (so hang-ups really remove participants and
  delete rooms there).
- `TextSessions` makes the text-only AgentSession (scripted LLM, no audio) in place of the
  models and RoomIO; `ScriptedDetector` answers AMD's verdict.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

from livekit import api, rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.voice.amd import AMDCategory, AMDPredictionEvent
from livekit.agents.voice.turn import TurnHandlingOptions

from agent.plan import ScreeningPlan
from agent.worker import CallSession
from tests.agent.scripted_llm import ScriptedLLM

SIP = rtc.ParticipantKind.PARTICIPANT_KIND_SIP
STANDARD = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD


@dataclass
class ParticipantStandIn:
    identity: str
    kind: rtc.ParticipantKind.ValueType = SIP
    metadata: str = ""
    attributes: dict[str, str] = field(default_factory=dict)


class RoomStandIn(rtc.EventEmitter[str]):
    def __init__(self, name: str, metadata: str = "") -> None:
        super().__init__()
        self.name = name
        self.metadata = metadata
        self.remote_participants: dict[str, ParticipantStandIn] = {}

    def listeners(self, event: str) -> int:
        return len(self._events.get(event, {}))

    def join(self, participant: ParticipantStandIn) -> None:
        self.remote_participants[participant.identity] = participant
        self.emit("participant_connected", participant)

    def set_attributes(self, identity: str, changed: dict[str, str]) -> None:
        participant = self.remote_participants[identity]
        participant.attributes.update(changed)
        self.emit("participant_attributes_changed", changed, participant)

    def send_data(self, payload: bytes, topic: str) -> None:
        packet = rtc.DataPacket(
            data=payload, kind=rtc.DataPacketKind.KIND_RELIABLE, participant=None, topic=topic
        )
        self.emit("data_received", packet)


@dataclass
class DispatchStandIn:
    metadata: str


ShutdownCallback = Callable[[str], Coroutine[None, None, None]]


class JobStandIn:
    def __init__(
        self,
        room: RoomStandIn,
        lkapi: api.LiveKitAPI,
        dispatch_metadata: str = "",
        *,
        on_connect: Callable[[RoomStandIn], None] | None = None,
    ) -> None:
        self.room = room
        self.job = DispatchStandIn(dispatch_metadata)
        self.api = lkapi
        self.on_connect = on_connect
        self.connected = False
        self.shutdown_reasons: list[str] = []
        self.shutdown_callbacks: list[ShutdownCallback] = []

    async def connect(self) -> None:
        # Events can arrive while `connect` runs (rtc.Room dispatches them as they come).
        if self.on_connect is not None:
            self.on_connect(self.room)
        self.connected = True

    async def wait_for_participant(self, *, identity: str | None = None) -> ParticipantStandIn:
        for participant in self.room.remote_participants.values():
            if identity is None or participant.identity == identity:
                return participant
        joined: asyncio.Future[ParticipantStandIn] = asyncio.get_running_loop().create_future()

        def on_joined(participant: ParticipantStandIn) -> None:
            if (identity is None or participant.identity == identity) and not joined.done():
                joined.set_result(participant)

        self.room.on("participant_connected", on_joined)
        try:
            return await joined
        finally:
            self.room.off("participant_connected", on_joined)

    def shutdown(self, reason: str = "user requested") -> None:
        self.shutdown_reasons.append(reason)

    def add_shutdown_callback(self, callback: ShutdownCallback) -> None:
        self.shutdown_callbacks.append(callback)

    async def run_shutdown_callbacks(self, reason: str) -> None:
        """What livekit-agents does at the end of a job."""
        await asyncio.gather(*(callback(reason) for callback in self.shutdown_callbacks))


class TextSessions:
    """The `SessionFactory` of the tests: text-only sessions on one scripted LLM."""

    def __init__(self, model: ScriptedLLM, *, user_away_timeout: float | None = None) -> None:
        self.model = model
        self.user_away_timeout = user_away_timeout
        self.sessions: list[AgentSession[None]] = []
        self.plans: list[ScreeningPlan] = []
        self.started = asyncio.Event()
        self.fail_start: BaseException | None = None

    def __call__(self, plan: ScreeningPlan, identity: str | None) -> CallSession:
        session: AgentSession[None] = AgentSession(
            llm=self.model,
            vad=None,
            turn_handling=TurnHandlingOptions(turn_detection="manual"),
            user_away_timeout=self.user_away_timeout,
        )
        self.sessions.append(session)
        self.plans.append(plan)

        async def start(agent: Agent) -> None:
            if self.fail_start is not None:
                raise self.fail_start
            await session.start(agent)
            self.started.set()

        return CallSession(session, start)

    async def close(self) -> None:
        for session in self.sessions:
            await session.aclose()


class ScriptedDetector:
    """AMD's verdict, as `AMD.execute()` returns it, after `wait` (if given) is set."""

    def __init__(self, category: AMDCategory, *, wait: asyncio.Event | None = None) -> None:
        self.category = category
        self.wait = wait
        self.identities: list[str | None] = []

    def __call__(self, _session: AgentSession[None], identity: str | None) -> ScriptedDetector:
        self.identities.append(identity)
        return self

    async def __aenter__(self) -> ScriptedDetector:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    async def execute(self) -> AMDPredictionEvent:
        if self.wait is not None:
            await self.wait.wait()
        return AMDPredictionEvent(
            speech_duration=1.5,
            category=self.category,
            reason="scripted",
            transcript="",
            delay=0.1,
        )


async def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `check` until it holds (the session runs on the same loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
