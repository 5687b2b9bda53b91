"""Talking to the LiveKit stand-in as the dial task does, for tests that need a call without
the dial service."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from livekit.api import LiveKitAPI
from livekit.protocol import agent_dispatch as proto_dispatch
from livekit.protocol import room as proto_room
from livekit.protocol import sip as proto_sip

from dialer.livekit_standin import AnsweredCall, LiveKitStandIn
from dialer.messages import ResultMessage
from dialer.models import CandidateData, Status


def api_client(lk: LiveKitStandIn) -> LiveKitAPI:
    return LiveKitAPI(lk.url, lk.api_key, lk.api_secret, failover=False)


async def place_answered_call(lk: LiveKitStandIn, number: str, room: str, metadata: str) -> None:
    """What the dial task does: room, agent dispatch, SIP participant (wait until answered)."""
    lkapi = api_client(lk)
    try:
        await lkapi.room.create_room(proto_room.CreateRoomRequest(name=room, metadata=metadata))
        await lkapi.agent_dispatch.create_dispatch(
            proto_dispatch.CreateAgentDispatchRequest(
                agent_name="screening-agent", room=room, metadata=metadata
            )
        )
        await lkapi.sip.create_sip_participant(
            proto_sip.CreateSIPParticipantRequest(
                room_name=room,
                sip_trunk_id="ST_trunk",
                sip_call_to=number,
                participant_identity="phone_user",
                wait_until_answered=True,
            )
        )
    finally:
        await lkapi.aclose()


def publish_completed(call: AnsweredCall) -> None:
    """Publish what the voice agent would for an answered call: one agent_result, status
    completed, for the call's (call_id, attempt) from its dispatch metadata, on the results
    queue through this process's Celery app."""
    from tasks.context import publish_result

    body = json.loads(call.dispatch_metadata)
    now = datetime.now(UTC)
    data = CandidateData(
        call_id=body["call_id"],
        status=Status.COMPLETED,
        attempt=int(body["dialer"]["attempt"]),
        started_at=now,
        ended_at=now,
    )
    publish_result(ResultMessage.from_agent(data, now))
