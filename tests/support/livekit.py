"""Talking to the LiveKit stand-in as the dial task does, for tests that need a call without
the dial service."""

from __future__ import annotations

from livekit.api import LiveKitAPI
from livekit.protocol import agent_dispatch as proto_dispatch
from livekit.protocol import room as proto_room
from livekit.protocol import sip as proto_sip

from dialer.livekit_standin import LiveKitStandIn


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
