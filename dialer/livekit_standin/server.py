"""An in-process LiveKit server stand-in that speaks the Twirp wire protocol, so the real
`livekit-api` client can be exercised without LiveKit Cloud (DESIGN section 10).

Wire protocol (what `livekit.api.twirp_client` expects): `POST /twirp/livekit.<Service>/<Method>`
with a protobuf body (`application/protobuf`; `application/json` is accepted too, as Twirp
allows), a `Bearer` JWT signed HS256 with the API secret (`iss` = API key), and errors as JSON
`{"code", "msg", "meta"}` with the HTTP status Twirp assigns to the code. SIP failures carry meta
`sip_status_code` (string) and `sip_status`, which the client turns into `SipCallError`.

The server runs on its own event loop in a background thread, so synchronous tests, async tests
and Celery worker processes can all talk to it. Everything it saw is recorded for assertions
(dials, requests, rooms, dispatches, concurrency) and readable from any thread, or from another
process through `GET /_standin/...`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hashlib
import hmac
import inspect
import json
import logging
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from livekit.protocol import agent_dispatch as proto_dispatch
from livekit.protocol import models as proto_models
from livekit.protocol import room as proto_room
from livekit.protocol import sip as proto_sip

from dialer.livekit_standin.scenarios import (
    ANSWERING,
    ScenarioBook,
    ScenarioSpec,
    SipReply,
    parse_obj,
    reaches_trunk,
    sip_failure,
    sip_reply,
)

log = logging.getLogger("dialer.livekit_standin")

REQUEST_ID_HEADER = "X-Livekit-Request-Id"
DEFAULT_RINGING_TIMEOUT_S = 30.0

# Twirp error code -> HTTP status (twirp spec, "Error codes").
TWIRP_HTTP_STATUS: dict[str, int] = {
    "canceled": 408,
    "unknown": 500,
    "invalid_argument": 400,
    "malformed": 400,
    "deadline_exceeded": 408,
    "not_found": 404,
    "bad_route": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "unauthenticated": 401,
    "resource_exhausted": 429,
    "failed_precondition": 412,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "dataloss": 500,
}

M = TypeVar("M", bound=Message)


# ---------------------------------------------------------------------------------------------
# Records (what tests assert on). Readers get copies; the server mutates its own instances
# under the lock.
# ---------------------------------------------------------------------------------------------


@dataclass
class DialRecord:
    """One CreateSIPParticipant that reached the "trunk" (times: `time.monotonic()` unless
    named `wall_time`; `wall_time` / `monotonic`: when the request arrived)."""

    seq: int
    wall_time: float
    monotonic: float
    phone_number: str
    room_name: str
    trunk_id: str
    from_number: str
    participant_identity: str
    request_id: str
    scenario: str
    sip_call_id: str
    ringing_timeout_s: float | None
    max_call_duration_s: float | None
    wait_until_answered: bool
    krisp_enabled: bool
    participant_attributes: dict[str, str] = field(default_factory=dict)
    result: str = "ringing"  # ringing | answered | failed
    sip_status_code: int | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: str = ""

    @property
    def active(self) -> bool:
        """Ringing or talking: the call holds a trunk channel."""
        return self.ended_at is None

    @property
    def answered(self) -> bool:
        return self.answered_at is not None


@dataclass
class RequestRecord:
    """One HTTP request to a Twirp route, recorded as it arrived (status filled in after)."""

    seq: int
    service: str
    method: str
    wall_time: float
    monotonic: float
    request_id: str
    summary: str
    http_status: int | None = None
    twirp_code: str | None = None


@dataclass
class RoomRecord:
    name: str
    sid: str
    metadata: str
    empty_timeout: int
    max_participants: int
    created_at: float
    created_implicitly: bool
    deleted_at: float | None = None


@dataclass
class DispatchRecord:
    id: str
    agent_name: str
    room: str
    metadata: str
    created_at: float
    deleted_at: float | None = None


@dataclass(frozen=True)
class AnsweredCall:
    """Handed to `on_answer` when a call is picked up: what a simulated callee (or the voice
    agent in a demo) needs to play its part."""

    room_name: str
    room_metadata: str
    dispatch_metadata: str  # the agent's job metadata ("" when no dispatch exists)
    phone_number: str
    scenario: str
    participant_identity: str
    sip_call_id: str


OnAnswer = Callable[[AnsweredCall], Awaitable[None] | None]
OnCallEnd = Callable[[DialRecord], Awaitable[None] | None]


@dataclass
class _Participant:
    identity: str
    sid: str
    kind: int
    name: str
    joined_at: float
    attributes: dict[str, str]
    dial: DialRecord | None = None

    def to_proto(self) -> proto_models.ParticipantInfo:
        return proto_models.ParticipantInfo(
            sid=self.sid,
            identity=self.identity,
            name=self.name,
            state=proto_models.ParticipantInfo.ACTIVE,
            kind=self.kind,  # type: ignore[arg-type]
            attributes=self.attributes,
            joined_at=int(self.joined_at),
            joined_at_ms=int(self.joined_at * 1000),
        )


class _TwirpFailure(Exception):
    """Raised inside a handler to answer with a Twirp error."""

    def __init__(self, code: str, msg: str, meta: Mapping[str, str] | None = None) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.meta = dict(meta or {})

    @classmethod
    def from_sip(cls, reply: SipReply) -> _TwirpFailure:
        return cls(reply.twirp_code, reply.message, reply.meta())


@dataclass(frozen=True)
class _Route:
    request_type: type[Message]
    handler: Callable[[Any, _Ctx], Awaitable[Message]]
    allowed: Callable[[dict[str, Any], Any], bool]


@dataclass(frozen=True)
class _Ctx:
    request_id: str
    record: RequestRecord


@dataclass
class _Fault:
    code: str
    msg: str
    times: int
    after_apply: bool


class InvalidToken(Exception):
    """A bearer token LiveKit would refuse; the message says why."""


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def verify_token(
    token: str, secret: str, issuer: str, leeway_s: float, now: float
) -> dict[str, Any]:
    """Check an HS256 access token as LiveKit does (signature, `iss`, `exp`, `nbf`) and return
    its claims. Written out rather than through PyJWT, whose per-character check of every
    segment cost the stand-in more than the request it guards."""
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = json.loads(_b64decode(header_b64))
        signature = _b64decode(signature_b64)
        claims = json.loads(_b64decode(payload_b64))
    except (ValueError, binascii.Error) as exc:
        raise InvalidToken(f"not a JWT ({exc})") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise InvalidToken("the algorithm must be HS256")
    signed = f"{header_b64}.{payload_b64}".encode()
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise InvalidToken("signature verification failed")
    if not isinstance(claims, dict):
        raise InvalidToken("the payload is not a JSON object")
    if claims.get("iss") != issuer:
        raise InvalidToken("invalid issuer")
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, int | float):
        raise InvalidToken('the token is missing the "exp" claim')
    if now > exp + leeway_s:
        raise InvalidToken("the token has expired")
    if isinstance(nbf, int | float) and now < nbf - leeway_s:
        raise InvalidToken("the token is not yet valid (nbf)")
    return claims


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------------------------
# Grants
# ---------------------------------------------------------------------------------------------


def _video(claims: dict[str, Any]) -> dict[str, Any]:
    video = claims.get("video")
    return video if isinstance(video, dict) else {}


def _can_create_room(claims: dict[str, Any], _req: Any) -> bool:
    return bool(_video(claims).get("roomCreate"))


def _can_list_rooms(claims: dict[str, Any], _req: Any) -> bool:
    return bool(_video(claims).get("roomList"))


def _room_admin_for(room_field: str) -> Callable[[dict[str, Any], Any], bool]:
    """roomAdmin, scoped to the request's room when the grant names one (as LiveKit does)."""

    def allowed(claims: dict[str, Any], req: Any) -> bool:
        video = _video(claims)
        granted_room = str(video.get("room") or "")
        return bool(video.get("roomAdmin")) and granted_room in ("", getattr(req, room_field))

    return allowed


def _can_call(claims: dict[str, Any], _req: Any) -> bool:
    sip = claims.get("sip")
    return isinstance(sip, dict) and bool(sip.get("call"))


def _can_transfer(claims: dict[str, Any], req: Any) -> bool:
    return _can_call(claims, req) or _room_admin_for("room_name")(claims, req)


# ---------------------------------------------------------------------------------------------
# The stand-in
# ---------------------------------------------------------------------------------------------


class LiveKitStandIn:
    """LiveKit Twirp API stand-in with scripted per-number call outcomes.

    Time knobs keep tests fast: `ring_seconds` is how long `no_answer` rings (None = the
    request's full `ringing_timeout`), `slow_seconds` how long `slow` takes to answer,
    `hang_seconds` how long `timeout` / `hang` hold the HTTP response. `hangup_after_s` ends
    answered calls by itself (a number for every scenario or a per-scenario mapping); otherwise
    a call lasts until RemoveParticipant / DeleteRoom / `hang_up()` or its max_call_duration.
    """

    def __init__(
        self,
        scenarios: ScenarioBook | Mapping[str, ScenarioSpec] | None = None,
        *,
        default_scenario: str = "answer",
        api_key: str = "devkey",
        api_secret: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ring_seconds: float | None = 0.2,
        slow_seconds: float = 0.3,
        hang_seconds: float = 300.0,
        hangup_after_s: float | Mapping[str, float] | None = None,
        on_answer: OnAnswer | None = None,
        on_call_end: OnCallEnd | None = None,
        token_leeway_s: float = 60.0,
    ) -> None:
        if isinstance(scenarios, ScenarioBook):
            self.scenarios = scenarios
        else:
            self.scenarios = ScenarioBook(scenarios, default_scenario)
        self.api_key = api_key
        self.api_secret = api_secret or secrets.token_urlsafe(32)
        self.host = host
        self._port = port
        self.ring_seconds = ring_seconds
        self.slow_seconds = slow_seconds
        self.hang_seconds = hang_seconds
        self.hangup_after_s = hangup_after_s
        self.on_answer = on_answer
        self.on_call_end = on_call_end
        self.token_leeway_s = token_leeway_s

        self._lock = threading.RLock()
        self._rooms: dict[str, RoomRecord] = {}
        self._room_history: list[RoomRecord] = []
        self._participants: dict[str, dict[str, _Participant]] = {}
        self._dispatches: list[DispatchRecord] = []
        # room -> its dispatches, so looking one up does not scan every dispatch ever made
        self._dispatches_by_room: dict[str, list[DispatchRecord]] = {}
        # token -> (claims, exp): a reused token is verified once
        self._verified: dict[str, tuple[dict[str, Any], float]] = {}
        self._dials: list[DialRecord] = []
        self._requests: list[RequestRecord] = []
        self._active = 0
        self._max_concurrent = 0
        self._timeline: list[tuple[float, int]] = []
        self._faults: dict[str, list[_Fault]] = {}

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._startup_error: BaseException | None = None
        self._routes = self._route_table()

    # -- life cycle ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    def start(self) -> LiveKitStandIn:
        """Serve on `host:port` (port 0 = a free one) from a background thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("the stand-in is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        self._port = sock.getsockname()[1]
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._thread_main, args=(sock, ready), name="livekit-standin", daemon=True
        )
        self._thread.start()
        ready.wait(15)
        if self._startup_error is not None:
            self._thread.join(5)
            self._thread = None
            raise RuntimeError("the LiveKit stand-in failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Release hanging requests, stop serving and join the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        self._thread = None
        self._loop = None

    def __enter__(self) -> LiveKitStandIn:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _thread_main(self, sock: socket.socket, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._open(sock))
        except BaseException as exc:  # reported to start()
            self._startup_error = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _open(self, sock: socket.socket) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/twirp/{service}/{method}", self._twirp)
        app.router.add_get("/_standin/dials", self._get_dials)
        app.router.add_get("/_standin/requests", self._get_requests)
        app.router.add_get("/_standin/stats", self._get_stats)
        app.router.add_get("/_standin/rooms", self._get_rooms)
        app.router.add_get("/_standin/dispatches", self._get_dispatches)
        app.router.add_get("/_standin/scenarios", self._get_scenarios)
        app.router.add_post("/_standin/scenarios", self._post_scenarios)
        app.router.add_post("/_standin/hangup", self._post_hangup)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        log.info("LiveKit stand-in listening on %s", self.url)

    async def _shutdown(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    # -- thread-safe reads -----------------------------------------------------------------------

    @property
    def dials(self) -> list[DialRecord]:
        return self.dials_from(0)

    def dials_from(self, index: int) -> list[DialRecord]:
        """Copies of the dials recorded from position `index` on (`dial_count` before an
        action, then this after it, copies only the new ones)."""
        with self._lock:
            return [dataclasses.replace(d) for d in self._dials[index:]]

    @property
    def dial_count(self) -> int:
        """How many dials are recorded: cheap enough to poll while calls arrive (copying every
        record under the lock, as `dials` does, holds back the requests being stamped)."""
        with self._lock:
            return len(self._dials)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return [dataclasses.replace(r) for r in self._requests]

    @property
    def rooms(self) -> list[RoomRecord]:
        """Every room ever created, in order (deleted ones have `deleted_at`)."""
        with self._lock:
            return [dataclasses.replace(r) for r in self._room_history]

    @property
    def dispatches(self) -> list[DispatchRecord]:
        with self._lock:
            return [dataclasses.replace(d) for d in self._dispatches]

    @property
    def max_concurrent(self) -> int:
        """Most calls holding a trunk channel (ringing + talking) at any one time."""
        with self._lock:
            return self._max_concurrent

    def active_calls(self) -> list[DialRecord]:
        with self._lock:
            return [dataclasses.replace(d) for d in self._dials if d.active]

    def concurrency_timeline(self) -> list[tuple[float, int]]:
        """(monotonic time, calls active just after it) at every change."""
        with self._lock:
            return list(self._timeline)

    def requests_for(self, method: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.method == method]

    def participants(self, room: str) -> list[str]:
        """Identities currently in `room` (empty when the room does not exist)."""
        with self._lock:
            return list(self._participants.get(room, {}))

    def set_scenarios(
        self,
        numbers: Mapping[str, ScenarioSpec],
        *,
        default: str | None = None,
        replace: bool = False,
    ) -> None:
        self.scenarios.update(numbers, default=default, replace=replace)

    def inject_failure(
        self,
        method: str,
        code: str = "unavailable",
        *,
        times: int = 1,
        after_apply: bool = False,
        msg: str = "injected failure",
    ) -> None:
        """Make the next `times` requests to `method` (e.g. "CreateDispatch") fail with `code`.

        `after_apply=True` applies the request first and then fails it, like a response lost on
        the way back: the client cannot tell whether it took effect.
        """
        with self._lock:
            self._faults.setdefault(method, []).append(_Fault(code, msg, times, after_apply))

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            faults = self._faults.get(method) or []
            if not faults:
                return None
            fault = faults[0]
            fault.times -= 1
            if fault.times <= 0:
                faults.pop(0)
            return fault

    def hang_up(self, room: str) -> int:
        """End every SIP call in `room` as if the callee hung up; returns how many ended.

        Callable from any thread, including from inside `on_answer`.
        """
        with self._lock:
            members = self._participants.get(room, {})
            ended = [p for p in members.values() if p.dial is not None and p.dial.active]
            for participant in ended:
                members.pop(participant.identity, None)
                self._end_call(participant, "callee_hung_up")
        return len(ended)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "max_concurrent": self._max_concurrent,
                "active": self._active,
                "dials": len(self._dials),
                "answered": sum(1 for d in self._dials if d.answered),
                "requests": len(self._requests),
                "rooms": len(self._rooms),
            }

    # -- call state (caller holds the lock) ------------------------------------------------------

    def _call_started(self) -> None:
        self._active += 1
        self._max_concurrent = max(self._max_concurrent, self._active)
        self._timeline.append((time.monotonic(), self._active))

    def _end_call(self, participant: _Participant, reason: str) -> None:
        dial = participant.dial
        if dial is None or not dial.active:
            return
        participant.attributes["sip.callStatus"] = "hangup"
        dial.ended_at = time.monotonic()
        dial.end_reason = reason
        self._active -= 1
        self._timeline.append((dial.ended_at, self._active))
        if self.on_call_end is not None and self._loop is not None:
            snapshot = dataclasses.replace(dial)
            self._loop.call_soon_threadsafe(self._fire, self.on_call_end, snapshot)

    def _ensure_room(self, name: str) -> RoomRecord:
        room = self._rooms.get(name)
        if room is None:
            room = RoomRecord(
                name=name,
                sid=_new_id("RM"),
                metadata="",
                empty_timeout=0,
                max_participants=0,
                created_at=time.monotonic(),
                created_implicitly=True,
            )
            self._rooms[name] = room
            self._room_history.append(room)
            self._participants[name] = {}
        return room

    def _room_proto(self, room: RoomRecord) -> proto_models.Room:
        return proto_models.Room(
            sid=room.sid,
            name=room.name,
            metadata=room.metadata,
            empty_timeout=room.empty_timeout,
            max_participants=room.max_participants,
            creation_time=int(time.time()),
            num_participants=len(self._participants.get(room.name, {})),
        )

    def _fire(self, callback: Callable[[Any], Awaitable[None] | None], arg: Any) -> None:
        """Run a user hook on the loop; async hooks become tasks so the response is not held."""
        try:
            result = callback(arg)
        except Exception:
            log.exception("stand-in hook %r failed", callback)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("stand-in hook task failed", exc_info=task.exception())

    # -- HTTP: Twirp -----------------------------------------------------------------------------

    def _route_table(self) -> dict[tuple[str, str], _Route]:
        room_admin = _room_admin_for("room")
        return {
            ("livekit.RoomService", "CreateRoom"): _Route(
                proto_room.CreateRoomRequest, self._create_room, _can_create_room
            ),
            ("livekit.RoomService", "DeleteRoom"): _Route(
                proto_room.DeleteRoomRequest, self._delete_room, _can_create_room
            ),
            ("livekit.RoomService", "ListRooms"): _Route(
                proto_room.ListRoomsRequest, self._list_rooms, _can_list_rooms
            ),
            ("livekit.RoomService", "ListParticipants"): _Route(
                proto_room.ListParticipantsRequest, self._list_participants, room_admin
            ),
            ("livekit.RoomService", "RemoveParticipant"): _Route(
                proto_room.RoomParticipantIdentity, self._remove_participant, room_admin
            ),
            ("livekit.AgentDispatchService", "CreateDispatch"): _Route(
                proto_dispatch.CreateAgentDispatchRequest, self._create_dispatch, room_admin
            ),
            ("livekit.AgentDispatchService", "ListDispatch"): _Route(
                proto_dispatch.ListAgentDispatchRequest, self._list_dispatch, room_admin
            ),
            ("livekit.AgentDispatchService", "DeleteDispatch"): _Route(
                proto_dispatch.DeleteAgentDispatchRequest, self._delete_dispatch, room_admin
            ),
            ("livekit.SIP", "CreateSIPParticipant"): _Route(
                proto_sip.CreateSIPParticipantRequest, self._create_sip_participant, _can_call
            ),
            ("livekit.SIP", "TransferSIPParticipant"): _Route(
                proto_sip.TransferSIPParticipantRequest, self._transfer, _can_transfer
            ),
        }

    async def _twirp(self, request: web.Request) -> web.StreamResponse:
        service, method = request.match_info["service"], request.match_info["method"]
        record = self._record_request(service, method, request.headers.get(REQUEST_ID_HEADER, ""))
        try:
            response = await self._serve_twirp(request, service, method, record)
        except _TwirpFailure as failure:
            return self._twirp_error(record, failure)
        record.http_status = 200
        return response

    async def _serve_twirp(
        self, request: web.Request, service: str, method: str, record: RequestRecord
    ) -> web.Response:
        route = self._routes.get((service, method))
        if route is None or request.method != "POST":
            raise _TwirpFailure("bad_route", f"no handler for {request.method} {request.path}")
        claims = self._authenticate(request)
        is_json = request.content_type == "application/json"
        if not is_json and request.content_type not in (
            "application/protobuf",
            "application/x-protobuf",
        ):
            raise _TwirpFailure("bad_route", f"unexpected Content-Type: {request.content_type!r}")
        body = await request.read()
        message = _decode(route.request_type, body, is_json)
        if not route.allowed(claims, message):
            raise _TwirpFailure("permission_denied", f"{method}: the token lacks the grant")
        with self._lock:
            record.summary = _summarise(message)
        fault = self._take_fault(method)
        if fault is not None and not fault.after_apply:
            raise _TwirpFailure(fault.code, fault.msg)
        reply = await route.handler(message, _Ctx(record.request_id, record))
        if fault is not None:
            raise _TwirpFailure(fault.code, fault.msg)
        if is_json:
            text = json_format.MessageToJson(reply, preserving_proto_field_name=True)
            return web.Response(text=text, content_type="application/json")
        return web.Response(body=reply.SerializeToString(), content_type="application/protobuf")

    def _record_request(self, service: str, method: str, request_id: str) -> RequestRecord:
        # Stamped before waiting for the lock: the time the request arrived, not the time a
        # reader copying the records let go of the lock.
        wall_time, monotonic = time.time(), time.monotonic()
        with self._lock:
            record = RequestRecord(
                seq=len(self._requests) + 1,
                service=service,
                method=method,
                wall_time=wall_time,
                monotonic=monotonic,
                request_id=request_id,
                summary="",
            )
            self._requests.append(record)
            return record

    def _twirp_error(self, record: RequestRecord, failure: _TwirpFailure) -> web.Response:
        status = TWIRP_HTTP_STATUS.get(failure.code, 500)
        with self._lock:
            record.http_status = status
            record.twirp_code = failure.code
        body: dict[str, Any] = {"code": failure.code, "msg": failure.msg}
        if failure.meta:
            body["meta"] = failure.meta
        return web.json_response(body, status=status)

    def _authenticate(self, request: web.Request) -> dict[str, Any]:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _TwirpFailure("unauthenticated", "missing bearer token")
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None and now <= cached[1] + self.token_leeway_s:
            return cached[0]
        try:
            claims = verify_token(token, self.api_secret, self.api_key, self.token_leeway_s, now)
        except InvalidToken as exc:
            raise _TwirpFailure("unauthenticated", f"invalid token: {exc}") from None
        if len(self._verified) >= 1024:  # most tokens are used once: keep the cache small
            self._verified.clear()
        self._verified[token] = (claims, float(claims["exp"]))
        return claims

    # -- RoomService -----------------------------------------------------------------------------

    async def _create_room(self, req: proto_room.CreateRoomRequest, _ctx: _Ctx) -> Message:
        if not req.name:
            raise _TwirpFailure("invalid_argument", "room name is required")
        with self._lock:
            room = self._rooms.get(req.name)
            if room is None:
                room = self._ensure_room(req.name)
                room.created_implicitly = False
                room.metadata = req.metadata
                room.empty_timeout = req.empty_timeout
                room.max_participants = req.max_participants
            return self._room_proto(room)

    async def _delete_room(self, req: proto_room.DeleteRoomRequest, _ctx: _Ctx) -> Message:
        with self._lock:
            room = self._rooms.pop(req.room, None)
            if room is None:
                raise _TwirpFailure("not_found", "requested room does not exist")
            room.deleted_at = time.monotonic()
            for participant in self._participants.pop(req.room, {}).values():
                self._end_call(participant, "room_deleted")
            for dispatch in self._dispatches_by_room.get(req.room, ()):
                if dispatch.deleted_at is None:
                    dispatch.deleted_at = room.deleted_at
        return proto_room.DeleteRoomResponse()

    async def _list_rooms(self, req: proto_room.ListRoomsRequest, _ctx: _Ctx) -> Message:
        names = set(req.names)
        with self._lock:
            rooms = [self._room_proto(r) for n, r in self._rooms.items() if not names or n in names]
        return proto_room.ListRoomsResponse(rooms=rooms)

    async def _list_participants(
        self, req: proto_room.ListParticipantsRequest, _ctx: _Ctx
    ) -> Message:
        with self._lock:
            if req.room not in self._rooms:
                raise _TwirpFailure("not_found", "requested room does not exist")
            infos = [p.to_proto() for p in self._participants[req.room].values()]
        return proto_room.ListParticipantsResponse(participants=infos)

    async def _remove_participant(
        self, req: proto_room.RoomParticipantIdentity, _ctx: _Ctx
    ) -> Message:
        with self._lock:
            members = self._participants.get(req.room)
            participant = members.pop(req.identity, None) if members is not None else None
            if participant is None:
                raise _TwirpFailure("not_found", "participant not found")
            self._end_call(participant, "removed")
        return proto_room.RemoveParticipantResponse()

    # -- AgentDispatchService --------------------------------------------------------------------

    async def _create_dispatch(
        self, req: proto_dispatch.CreateAgentDispatchRequest, _ctx: _Ctx
    ) -> Message:
        if not req.room:
            raise _TwirpFailure("invalid_argument", "room is required")
        with self._lock:
            self._ensure_room(req.room)
            record = DispatchRecord(
                id=_new_id("AD"),
                agent_name=req.agent_name,
                room=req.room,
                metadata=req.metadata,
                created_at=time.monotonic(),
            )
            self._dispatches.append(record)
            self._dispatches_by_room.setdefault(req.room, []).append(record)
        return _dispatch_proto(record)

    async def _list_dispatch(
        self, req: proto_dispatch.ListAgentDispatchRequest, _ctx: _Ctx
    ) -> Message:
        with self._lock:
            found = [
                _dispatch_proto(d)
                for d in self._dispatches_by_room.get(req.room, ())
                if d.deleted_at is None and (not req.dispatch_id or d.id == req.dispatch_id)
            ]
        return proto_dispatch.ListAgentDispatchResponse(agent_dispatches=found)

    async def _delete_dispatch(
        self, req: proto_dispatch.DeleteAgentDispatchRequest, _ctx: _Ctx
    ) -> Message:
        with self._lock:
            for dispatch in self._dispatches_by_room.get(req.room, ()):
                if dispatch.id == req.dispatch_id:
                    if dispatch.deleted_at is None:
                        dispatch.deleted_at = time.monotonic()
                    return _dispatch_proto(dispatch)
        raise _TwirpFailure("not_found", "dispatch not found")

    def _dispatch_metadata(self, room: str) -> str:
        live = [d for d in self._dispatches_by_room.get(room, ()) if d.deleted_at is None]
        return live[-1].metadata if live else ""

    # -- SIP -------------------------------------------------------------------------------------

    async def _create_sip_participant(
        self, req: proto_sip.CreateSIPParticipantRequest, ctx: _Ctx
    ) -> Message:
        _validate_sip_request(req)
        with self._lock:
            if _identity(req) in self._participants.get(req.room_name, {}):
                raise _TwirpFailure("already_exists", "participant identity already in the room")
        scenario = self.scenarios.next_for(req.sip_call_to)
        with self._lock:
            ctx.record.summary += f" scenario={scenario}"
        if not reaches_trunk(scenario):
            await self._fail_before_trunk(scenario)
        participant = self._ring(req, scenario, ctx)
        assert participant.dial is not None
        info = proto_sip.SIPParticipantInfo(
            participant_id=participant.sid,
            participant_identity=participant.identity,
            room_name=req.room_name,
            sip_call_id=participant.dial.sip_call_id,
        )
        if not req.wait_until_answered:
            self._spawn(self._progress(req, participant, scenario))
            return info
        failure = await self._progress(req, participant, scenario)
        if failure is not None:
            raise _TwirpFailure.from_sip(failure)
        if scenario == "timeout":
            await self._hang()
        return info

    async def _fail_before_trunk(self, scenario: str) -> None:
        if scenario == "hang":
            await self._hang()
            raise _TwirpFailure("unavailable", "no SIP service answered in time")
        if scenario.startswith("twirp:"):
            code = scenario.removeprefix("twirp:")
            raise _TwirpFailure(code, f"stand-in scenario {scenario}")
        raise _TwirpFailure("internal", "internal error (stand-in server_error scenario)")

    def _ring(
        self, req: proto_sip.CreateSIPParticipantRequest, scenario: str, ctx: _Ctx
    ) -> _Participant:
        """The INVITE leaves: record the dial and put the SIP participant in the room. The
        dial is stamped with its request's arrival, before any wait for the records' lock."""
        identity = _identity(req)
        with self._lock:
            self._ensure_room(req.room_name)
            members = self._participants[req.room_name]
            if identity in members:
                raise _TwirpFailure("already_exists", "participant identity already in the room")
            dial = DialRecord(
                seq=len(self._dials) + 1,
                wall_time=ctx.record.wall_time,
                monotonic=ctx.record.monotonic,
                phone_number=req.sip_call_to,
                room_name=req.room_name,
                trunk_id=req.sip_trunk_id,
                from_number=req.sip_number,
                participant_identity=identity,
                request_id=ctx.request_id,
                scenario=scenario,
                sip_call_id=_new_id("SCL"),
                ringing_timeout_s=_seconds(req, "ringing_timeout"),
                max_call_duration_s=_seconds(req, "max_call_duration"),
                wait_until_answered=req.wait_until_answered,
                krisp_enabled=req.krisp_enabled,
                participant_attributes=dict(req.participant_attributes),
            )
            self._dials.append(dial)
            attributes = dict(req.participant_attributes)
            attributes.update(
                {
                    "sip.callID": dial.sip_call_id,
                    "sip.callStatus": "dialing",
                    "sip.phoneNumber": req.sip_call_to,
                    "sip.trunkID": req.sip_trunk_id,
                    "sip.trunkPhoneNumber": req.sip_number,
                }
            )
            participant = _Participant(
                identity=identity,
                sid=_new_id("PA"),
                kind=proto_models.ParticipantInfo.SIP,
                name=req.participant_name or identity,
                joined_at=time.time(),
                attributes=attributes,
                dial=dial,
            )
            members[identity] = participant
            self._call_started()
        return participant

    async def _progress(
        self, req: proto_sip.CreateSIPParticipantRequest, participant: _Participant, scenario: str
    ) -> SipReply | None:
        """Ring, then answer or fail; returns the SIP failure, or None once answered."""
        assert participant.dial is not None
        ring_window = participant.dial.ringing_timeout_s or DEFAULT_RINGING_TIMEOUT_S
        failure = sip_failure(scenario)
        if scenario == "no_answer":
            await asyncio.sleep(min(ring_window, self.ring_seconds or ring_window))
        elif scenario == "slow":
            if self.slow_seconds >= ring_window:
                await asyncio.sleep(ring_window)
                failure = sip_reply(480)
            else:
                await asyncio.sleep(self.slow_seconds)
        with self._lock:
            dial = participant.dial
            if not dial.active:  # hung up / room deleted while ringing
                return sip_reply(487)
            if failure is not None or scenario not in ANSWERING:
                failure = failure or sip_reply(500)
                self._participants.get(req.room_name, {}).pop(participant.identity, None)
                dial.result = "failed"
                dial.sip_status_code = failure.sip_status_code
                self._end_call(participant, "failed")
                return failure
            dial.result = "answered"
            dial.answered_at = time.monotonic()
            participant.attributes["sip.callStatus"] = "active"
            answered = AnsweredCall(
                room_name=req.room_name,
                room_metadata=self._rooms[req.room_name].metadata,
                dispatch_metadata=self._dispatch_metadata(req.room_name),
                phone_number=req.sip_call_to,
                scenario=scenario,
                participant_identity=participant.identity,
                sip_call_id=dial.sip_call_id,
            )
        self._schedule_hangup(req.room_name, participant, scenario)
        if self.on_answer is not None:
            self._fire(self.on_answer, answered)
        return None

    def _schedule_hangup(self, room: str, participant: _Participant, scenario: str) -> None:
        assert participant.dial is not None
        delays = [participant.dial.max_call_duration_s or 0.0]
        hold = self.hangup_after_s
        if isinstance(hold, Mapping):
            delays.append(float(hold.get(scenario, 0.0)))
        elif hold is not None:
            delays.append(float(hold))
        positive = [d for d in delays if d > 0]
        if not positive:
            return
        reason = "hangup_after" if min(positive) != delays[0] else "max_call_duration"
        asyncio.get_running_loop().call_later(
            min(positive), self._timed_hangup, room, participant, reason
        )

    def _timed_hangup(self, room: str, participant: _Participant, reason: str) -> None:
        with self._lock:
            members = self._participants.get(room, {})
            if members.get(participant.identity) is participant:
                members.pop(participant.identity)
            self._end_call(participant, reason)

    async def _hang(self) -> None:
        """Hold the response for `hang_seconds`, or until the stand-in stops."""
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.hang_seconds)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    async def _transfer(self, req: proto_sip.TransferSIPParticipantRequest, _ctx: _Ctx) -> Message:
        # The transfer target is dialled like any number: a failing scenario refuses the
        # transfer (the candidate stays in the call), `hang` holds the request.
        scenario = self.scenarios.next_for(req.transfer_to.removeprefix("tel:"))
        if not reaches_trunk(scenario):
            await self._fail_before_trunk(scenario)
        if (failure := sip_failure(scenario)) is not None:
            raise _TwirpFailure.from_sip(failure)
        with self._lock:
            participant = self._participants.get(req.room_name, {}).get(req.participant_identity)
            if participant is None or participant.dial is None:
                raise _TwirpFailure("not_found", "participant not found")
            self._participants[req.room_name].pop(req.participant_identity)
            self._end_call(participant, "transferred")
        return proto_sip.TransferSIPParticipantResponse(
            transfer_id=_new_id("STR"), status=proto_sip.STS_TRANSFER_SUCCESSFUL
        )

    # -- HTTP: introspection ---------------------------------------------------------------------

    async def _get_dials(self, _request: web.Request) -> web.Response:
        return web.json_response([_with_active(d) for d in self.dials])

    async def _get_requests(self, _request: web.Request) -> web.Response:
        return web.json_response([dataclasses.asdict(r) for r in self.requests])

    async def _get_stats(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _get_rooms(self, _request: web.Request) -> web.Response:
        return web.json_response([dataclasses.asdict(r) for r in self.rooms])

    async def _get_dispatches(self, _request: web.Request) -> web.Response:
        return web.json_response([dataclasses.asdict(d) for d in self.dispatches])

    async def _get_scenarios(self, _request: web.Request) -> web.Response:
        return web.json_response(self.scenarios.snapshot())

    async def _post_scenarios(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            replace = bool(body.pop("replace", False))
            numbers, default = parse_obj(body)
            self.scenarios.update(numbers, default=default, replace=replace)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.scenarios.snapshot())

    async def _post_hangup(self, request: web.Request) -> web.Response:
        body = await request.json()
        room = body.get("room") if isinstance(body, dict) else None
        if not isinstance(room, str):
            return web.json_response({"error": 'expected {"room": "<name>"}'}, status=400)
        return web.json_response({"ended": self.hang_up(room)})


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _decode(request_type: type[M], body: bytes, is_json: bool) -> M:
    message = request_type()
    try:
        if is_json:
            json_format.Parse(body or b"{}", message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(body)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
        raise _TwirpFailure("malformed", f"could not decode the request body: {exc}") from None
    return message


def _validate_sip_request(req: proto_sip.CreateSIPParticipantRequest) -> None:
    missing = [
        name
        for name, value in (
            ("sip_trunk_id", req.sip_trunk_id or req.HasField("trunk")),
            ("sip_call_to", req.sip_call_to),
            ("room_name", req.room_name),
        )
        if not value
    ]
    if missing:
        raise _TwirpFailure("invalid_argument", f"missing {', '.join(missing)}")


def _seconds(message: Message, name: str) -> float | None:
    if not message.HasField(name):
        return None
    duration = getattr(message, name)
    return float(duration.seconds + duration.nanos / 1e9)


def _dispatch_proto(record: DispatchRecord) -> proto_dispatch.AgentDispatch:
    return proto_dispatch.AgentDispatch(
        id=record.id,
        agent_name=record.agent_name,
        room=record.room,
        metadata=record.metadata,
        state=proto_dispatch.AgentDispatchState(created_at=int(record.created_at * 1e9)),
    )


def _summarise(message: Message) -> str:
    """Short description for the request log, without phone numbers or metadata bodies."""
    keep = ("name", "room", "room_name", "identity", "agent_name", "sip_trunk_id", "dispatch_id")
    parts = [
        f"{f.name}={getattr(message, f.name)}"
        for f in message.DESCRIPTOR.fields
        if f.name in keep and getattr(message, f.name)
    ]
    return " ".join(parts)


def _with_active(record: DialRecord) -> dict[str, Any]:
    data = dataclasses.asdict(record)
    data["active"] = record.active
    return data


def _identity(req: proto_sip.CreateSIPParticipantRequest) -> str:
    """The SIP participant's identity; LiveKit's default is `sip_<number>`."""
    return req.participant_identity or f"sip_{req.sip_call_to}"
