"""LiveKit adapter: place one outbound screening call (DESIGN section 5).

    CreateRoom(name, empty_timeout, metadata)
      -> CreateDispatch(agent_name, room, metadata)
      -> CreateSIPParticipant(trunk, to, from, identity, wait_until_answered, ringing_timeout, ...)

Every library error (`livekit.api` ServerError / SipCallError, aiohttp, timeouts) is translated
into the project's exception tree through `dialer.outcomes`; nothing from livekit or aiohttp
escapes. Why the dial is careful:

- The livekit-api client's own failover retry replays a request after a timeout or a 5xx. For
  CreateSIPParticipant that would ring the candidate twice, so the client runs with
  `failover=False` and this adapter decides.
- Requests are signed by `RequestSigner` (same JWT claims as livekit-api's `AccessToken`, which
  cost a third of a dial's client CPU), plugged into livekit-api's own service classes; the
  requests themselves are livekit-api's.
- CreateRoom is idempotent in LiveKit, so transient failures are simply retried (tenacity,
  exponential backoff with jitter, bounded). CreateDispatch is not: before a retry the room's
  dispatches are listed, so an agent is never dispatched twice.
- CreateSIPParticipant is retried without a look only when nothing was sent (connection refused).
  After a timeout, a 5xx or any other ambiguous failure the room's participants are listed
  FIRST: when the SIP participant is there the call is live and is treated as answered; only
  when it is absent may the call be dialed again, at most `transient_attempts` times in all.
  When the participants cannot be listed either, the dial is reported transient and NOT
  repeated (the caller cleans the room up, which hangs up a call that might be ringing).

Phone numbers never appear in this module's log lines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import jwt
from google.protobuf.duration_pb2 import Duration
from livekit.api import SIPGrants, VideoGrants
from livekit.api.agent_dispatch_service import AgentDispatchService
from livekit.api.room_service import RoomService
from livekit.api.sip_service import SipService
from livekit.api.twirp_client import ServerError, SipCallError
from livekit.protocol import agent_dispatch as proto_dispatch
from livekit.protocol import models as proto_models
from livekit.protocol import room as proto_room
from livekit.protocol import sip as proto_sip
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from dialer.errors import DialError, TransientDialError
from dialer.models import DialOutcome
from dialer.outcomes import Classified, classify_sip, to_error

log = logging.getLogger("dialer.livekit")

T = TypeVar("T")

STAGE_ROOM = "room_created"
STAGE_DISPATCH = "dispatched"
STAGE_SIP = "sip_requested"


@dataclass(frozen=True)
class DialPlan:
    """Everything one dial attempt sends to LiveKit."""

    call_id: str
    attempt: int
    room_name: str
    phone_e164: str
    room_metadata: str  # JSON
    dispatch_metadata: str  # JSON the agent reads (SessionInput + extras)
    participant_identity: str
    ringing_timeout_s: int
    max_call_duration_s: int
    empty_timeout_s: int
    from_number: str | None = None  # this job's caller id, else the dialer's default
    agent_name: str | None = None  # this job's agent, else the dialer's default


@dataclass(frozen=True)
class DialAnswered:
    """The callee (or a machine) picked up; the agent has the call."""

    room_name: str
    participant_identity: str
    sip_call_id: str
    answered_after_s: float


# Our request tokens are used at once; LiveKit's own default lifetime (6 h) is far more than
# they need. A room-independent token (CreateRoom's) is reused for a while.
TOKEN_TTL_S = 600
TOKEN_REUSE_S = 300


_CLAIM_NAMES: dict[type, tuple[tuple[str, str], ...]] = {}


def _claim_names(grants: Any) -> tuple[tuple[str, str], ...]:
    """(attribute, JWT claim name) per field of a livekit grants dataclass: snake -> lowerCamel."""
    cls = type(grants)
    names = _CLAIM_NAMES.get(cls)
    if names is None:
        names = tuple((f.name, _camel(f.name)) for f in dataclasses.fields(grants))
        _CLAIM_NAMES[cls] = names
    return names


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _grant_claims(grants: object) -> dict[str, Any]:
    """The claims livekit-api's `AccessToken` writes for a grants object (None and "" left
    out), without its `dataclasses.asdict`, which deep-copies every value and cost more than
    the rest of a dial request."""
    claims: dict[str, Any] = {}
    for attribute, name in _claim_names(grants):
        value = getattr(grants, attribute)
        if value is None or value == "":
            continue
        claims[name] = _grant_claims(value) if dataclasses.is_dataclass(value) else value
    return claims


class RequestSigner:
    """Signs server-API requests: HS256 JWTs with the same claims as livekit-api's."""

    def __init__(self, api_key: str, api_secret: str, *, clock: Callable[[], float] = time.time):
        self.api_key = api_key
        self._secret = api_secret
        self._clock = clock
        self._reusable: dict[tuple[tuple[str, Any], ...], tuple[str, float]] = {}

    def token(self, grants: VideoGrants | None, sip: SIPGrants | None = None) -> str:
        claims: dict[str, Any] = {}
        if grants is not None:
            claims["video"] = _grant_claims(grants)
        if sip is not None:
            claims["sip"] = _grant_claims(sip)
        now = self._clock()
        reusable = grants is None or not grants.room
        key = tuple(sorted((k, repr(v)) for k, v in claims.items())) if reusable else ()
        if reusable and key in self._reusable:
            token, minted_at = self._reusable[key]
            if now - minted_at < TOKEN_REUSE_S:
                return token
        issued = int(now)
        claims.update(sub="", iss=self.api_key, nbf=issued, exp=issued + TOKEN_TTL_S)
        token = jwt.encode(claims, self._secret, algorithm="HS256")
        if reusable:
            self._reusable[key] = (token, now)
        return token


class _SignedService:
    """Mixin for livekit-api's service classes: `RequestSigner` instead of `AccessToken`."""

    signer: RequestSigner

    def _auth_header(
        self, grants: VideoGrants | None, sip: SIPGrants | None = None
    ) -> dict[str, str]:
        return {"authorization": f"Bearer {self.signer.token(grants, sip)}"}


class _RoomService(_SignedService, RoomService):
    pass


class _DispatchService(_SignedService, AgentDispatchService):
    pass


class _SipService(_SignedService, SipService):
    pass


@dataclass(frozen=True)
class _Services:
    """The three livekit-api services a dial uses, on one HTTP session."""

    room: RoomService
    agent_dispatch: AgentDispatchService
    sip: SipService

    @classmethod
    def build(cls, session: aiohttp.ClientSession, url: str, signer: RequestSigner) -> _Services:
        services = []
        for kind in (_RoomService, _DispatchService, _SipService):
            # failover=False: livekit-api would replay a timed-out CreateSIPParticipant.
            service = kind(session, url, signer.api_key, "", failover=False)
            service.signer = signer
            services.append(service)
        room, dispatch, sip = services
        return cls(room, dispatch, sip)  # type: ignore[arg-type]


class _NotSent(TransientDialError):
    """The request never left this machine (connection refused): retrying cannot double-dial."""


class LiveKitDialer:
    """Places calls through LiveKit's server API with one reused HTTP session."""

    def __init__(
        self,
        url: str,
        api_key: str,
        api_secret: str,
        *,
        trunk_id: str,
        from_number: str | None,
        agent_name: str,
        request_timeout_s: float = 10.0,
        transient_attempts: int = 3,
        backoff_base_s: float = 0.5,
        krisp_enabled: bool = False,
    ) -> None:
        if transient_attempts < 1:
            raise ValueError("transient_attempts must be at least 1")
        self.url = url
        self.api_key = api_key
        self._signer = RequestSigner(api_key, api_secret)
        self.trunk_id = trunk_id
        self.from_number = from_number
        self.agent_name = agent_name
        self.request_timeout_s = request_timeout_s
        self.transient_attempts = transient_attempts
        self.backoff_base_s = backoff_base_s
        self.krisp_enabled = krisp_enabled
        # One HTTP session per event loop: a worker with a thread pool runs one loop per thread.
        self._per_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[aiohttp.ClientSession, _Services]
        ] = weakref.WeakKeyDictionary()

    # -- public API ------------------------------------------------------------------------------

    async def dial(
        self,
        plan: DialPlan,
        *,
        on_stage: Callable[[str], None] | None = None,
        before_invite: Callable[[], None] | None = None,
    ) -> DialAnswered:
        """Create the room, dispatch the agent, dial and wait for the answer.

        `on_stage` is called before each step's request ("room_created", "dispatched",
        "sip_requested") so the caller can persist how far it got before anything is sent.
        `before_invite` is called before every CreateSIPParticipant request (each one may send
        an INVITE), just ahead of its `on_stage("sip_requested")`: the place to take a
        calls-per-second turn, so the trunk sees INVITEs spaced as the pacer spaced the turns.
        Whatever it raises propagates unchanged, with nothing sent.
        Raises PermanentDialError, CallNotConnected, ThrottledError or TransientDialError.
        """
        stage = on_stage or _no_stage
        stage(STAGE_ROOM)
        await self._create_room(plan)
        stage(STAGE_DISPATCH)
        await self._create_dispatch(plan)
        return await self._place_call(plan, before_invite or _no_turn, stage)

    async def call_present(self, room_name: str, identity: str) -> bool:
        """True when `identity` is in the room and its call has not hung up (ListParticipants).

        A missing room means no call. Raises TransientDialError when LiveKit cannot be asked.
        """
        return await self._find_participant(room_name, identity) is not None

    async def hang_up(self, room_name: str) -> None:
        """End the call: remove every SIP participant (the phone line), then delete the room.

        Tolerates a room or participant that is already gone. Raises a DialError when LiveKit
        cannot be reached (an abandoned empty room still expires after its empty_timeout).
        """
        listed = await self._retrying(
            "ListParticipants",
            lambda: self._api().room.list_participants(
                proto_room.ListParticipantsRequest(room=room_name)
            ),
            missing_ok=True,
        )
        if listed is None:
            return
        for participant in listed.participants:
            if participant.kind == proto_models.ParticipantInfo.SIP:
                await self._remove(room_name, participant.identity)
        await self._retrying(
            "DeleteRoom",
            lambda: self._api().room.delete_room(proto_room.DeleteRoomRequest(room=room_name)),
            missing_ok=True,
        )

    async def aclose(self) -> None:
        """Close the running event loop's HTTP session."""
        loop = _running_loop()
        entry = self._per_loop.pop(loop, None) if loop is not None else None
        if entry is not None and not entry[0].closed:
            await entry[0].close()

    # -- steps -----------------------------------------------------------------------------------

    async def _create_room(self, plan: DialPlan) -> None:
        request = proto_room.CreateRoomRequest(
            name=plan.room_name,
            empty_timeout=plan.empty_timeout_s,
            metadata=plan.room_metadata,
        )
        await self._retrying("CreateRoom", lambda: self._api().room.create_room(request))

    async def _create_dispatch(self, plan: DialPlan) -> None:
        agent_name = plan.agent_name or self.agent_name
        request = proto_dispatch.CreateAgentDispatchRequest(
            agent_name=agent_name, room=plan.room_name, metadata=plan.dispatch_metadata
        )

        async def existing() -> proto_dispatch.AgentDispatch | None:
            # A failed CreateDispatch may still have dispatched the agent: never dispatch twice.
            found = await self._api().agent_dispatch.list_dispatch(plan.room_name)
            return next((d for d in found if d.agent_name == agent_name), None)

        await self._retrying(
            "CreateDispatch",
            lambda: self._api().agent_dispatch.create_dispatch(request),
            before_retry=existing,
        )

    async def _place_call(
        self, plan: DialPlan, before_invite: Callable[[], None], stage: Callable[[str], None]
    ) -> DialAnswered:
        request = self._sip_request(plan)
        started = time.monotonic()
        for attempt in range(1, self.transient_attempts + 1):
            before_invite()
            stage(STAGE_SIP)
            try:
                info = await self._call(
                    "CreateSIPParticipant",
                    lambda: self._api().sip.create_sip_participant(
                        request, timeout=self.request_timeout_s
                    ),
                )
            except TransientDialError as exc:
                found = None if isinstance(exc, _NotSent) else await self._look_for_call(plan)
                if found is not None:
                    log.warning(
                        "dial for %s attempt %d: %s, but the call is in the room: answered",
                        plan.call_id,
                        plan.attempt,
                        exc,
                    )
                    return _answered(plan, found, started)
                if attempt >= self.transient_attempts:
                    raise
                log.warning(
                    "dial for %s attempt %d failed before reaching the trunk (%s): dialing again",
                    plan.call_id,
                    plan.attempt,
                    exc,
                )
                await asyncio.sleep(self._backoff(attempt))
                continue
            return DialAnswered(
                room_name=info.room_name or plan.room_name,
                participant_identity=info.participant_identity or plan.participant_identity,
                sip_call_id=info.sip_call_id,
                answered_after_s=time.monotonic() - started,
            )
        raise AssertionError("unreachable: the loop returns or raises")

    def _sip_request(self, plan: DialPlan) -> proto_sip.CreateSIPParticipantRequest:
        request = proto_sip.CreateSIPParticipantRequest(
            sip_trunk_id=self.trunk_id,
            sip_call_to=plan.phone_e164,
            room_name=plan.room_name,
            participant_identity=plan.participant_identity,
            participant_name="Candidate",
            participant_attributes={
                "dialer.call_id": plan.call_id,
                "dialer.attempt": str(plan.attempt),
            },
            wait_until_answered=True,
            ringing_timeout=Duration(seconds=plan.ringing_timeout_s),
            max_call_duration=Duration(seconds=plan.max_call_duration_s),
            krisp_enabled=self.krisp_enabled,
        )
        from_number = plan.from_number or self.from_number
        if from_number:
            request.sip_number = from_number
        return request

    async def _look_for_call(self, plan: DialPlan) -> proto_models.ParticipantInfo | None:
        """After an ambiguous failure: is the call in the room? Never guesses "no"."""
        try:
            return await self._find_participant(plan.room_name, plan.participant_identity)
        except DialError as exc:
            raise TransientDialError(
                f"the dial request failed and the room could not be checked ({exc}); "
                "not dialing again",
                twirp_code=exc.twirp_code,
            ) from None

    async def _find_participant(
        self, room_name: str, identity: str
    ) -> proto_models.ParticipantInfo | None:
        listed = await self._retrying(
            "ListParticipants",
            lambda: self._api().room.list_participants(
                proto_room.ListParticipantsRequest(room=room_name)
            ),
            missing_ok=True,
        )
        if listed is None:
            return None
        for participant in listed.participants:
            if participant.identity == identity:
                if participant.attributes.get("sip.callStatus") == "hangup":
                    return None
                return participant
        return None

    async def _remove(self, room_name: str, identity: str) -> None:
        request = proto_room.RoomParticipantIdentity(room=room_name, identity=identity)
        await self._retrying(
            "RemoveParticipant",
            lambda: self._api().room.remove_participant(request),
            missing_ok=True,
        )

    # -- plumbing --------------------------------------------------------------------------------

    def _api(self) -> _Services:
        """The running loop's session and services: reused across calls, rebuilt if closed."""
        loop = asyncio.get_running_loop()
        entry = self._per_loop.get(loop)
        if entry is None or entry[0].closed:
            session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.request_timeout_s)
            )
            entry = (session, _Services.build(session, self.url, self._signer))
            self._per_loop[loop] = entry
        return entry[1]

    async def _call(self, what: str, request: Callable[[], Awaitable[T]]) -> T:
        """One request; any failure comes out as a classified DialError."""
        try:
            return await request()
        except DialError:
            raise
        except Exception as exc:  # translate everything the client may raise
            classified, sent = _classify(exc)
            log.info("LiveKit %s failed: %s", what, classified.reason)
            error = to_error(classified)
            if not sent and classified.outcome is DialOutcome.TRANSIENT:
                error = _NotSent(classified.reason)
            raise error from None

    async def _retrying(
        self,
        what: str,
        request: Callable[[], Awaitable[T]],
        *,
        missing_ok: bool = False,
        before_retry: Callable[[], Awaitable[object | None]] | None = None,
    ) -> T | None:
        """`_call` with bounded exponential backoff + jitter on transient errors.

        `missing_ok`: a Twirp not_found (no SIP code) returns None instead of raising.
        `before_retry`: checked before each retry; a non-None answer means the earlier try
        succeeded after all, and the request is not sent again.
        """
        # The first try goes without the retry machinery (it is almost always the only one,
        # and tenacity's set-up cost as much as a Redis round trip).
        try:
            return await self._attempt(what, request, missing_ok)
        except TransientDialError:
            if self.transient_attempts == 1:
                raise
        await asyncio.sleep(self._backoff(1))
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.transient_attempts - 1),
            # Exponential backoff plus jitter, continuing the schedule of the first retry.
            wait=lambda state: self._backoff(state.attempt_number + 1),
            retry=retry_if_exception_type(TransientDialError),
            reraise=True,
        )
        result: T | None = None
        async for attempt in retrying:
            with attempt:
                if await self._already_done(what, before_retry):
                    return None
                result = await self._attempt(what, request, missing_ok)
        return result

    async def _attempt(
        self, what: str, request: Callable[[], Awaitable[T]], missing_ok: bool
    ) -> T | None:
        try:
            return await self._call(what, request)
        except DialError as exc:
            if missing_ok and _is_not_found(exc):
                return None
            raise

    async def _already_done(
        self, what: str, check: Callable[[], Awaitable[object | None]] | None
    ) -> bool:
        if check is None:
            return False
        return await self._call(f"{what} (check before retry)", check) is not None

    def _backoff(self, attempt: int) -> float:
        base = min(self.backoff_base_s * 2 ** (attempt - 1), self.backoff_base_s * 8)
        return float(base + random.uniform(0, self.backoff_base_s))


def _classify(exc: Exception) -> tuple[Classified, bool]:
    """Classify a client exception; the flag says whether the request may have been sent."""
    if isinstance(exc, ServerError):
        sip = exc.sip_status_code if isinstance(exc, SipCallError) else _meta_code(exc)
        text = " ".join(part for part in (exc.message, exc.metadata.get("sip_status")) if part)
        return classify_sip(sip, exc.code, text, http_status=exc.status), True
    if isinstance(exc, aiohttp.ClientConnectorError):
        return classify_sip(None, None, f"cannot connect to LiveKit: {exc}"), False
    if isinstance(exc, TimeoutError):
        return classify_sip(None, None, "LiveKit request timed out"), True
    if isinstance(exc, aiohttp.ClientError):
        return classify_sip(None, None, f"LiveKit connection failed: {exc!r}"), True
    return classify_sip(None, None, f"unexpected {type(exc).__name__}: {exc}"), True


def _meta_code(exc: ServerError) -> int | None:
    raw = exc.metadata.get("sip_status_code")
    return int(raw) if raw is not None and raw.isdigit() else None


def _is_not_found(exc: DialError) -> bool:
    return exc.twirp_code == "not_found" and exc.sip_status_code is None


def _answered(
    plan: DialPlan, participant: proto_models.ParticipantInfo, started: float
) -> DialAnswered:
    return DialAnswered(
        room_name=plan.room_name,
        participant_identity=participant.identity,
        sip_call_id=participant.attributes.get("sip.callID", ""),
        answered_after_s=time.monotonic() - started,
    )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _no_stage(_stage: str) -> None:
    return None


def _no_turn() -> None:
    return None
