"""Ending a phone call for real, through the LiveKit server API (`livekit-api`).

Hanging up removes the SIP participant first (that ends the phone call; leaving the room alone
would keep a silent open line) and then deletes the room; a transfer asks LiveKit to SIP-REFER
the participant to the recruiter number. Both tolerate "already gone" answers, since the
candidate may hang up at the same moment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from livekit import api
from livekit.protocol import sip as proto_sip

log = logging.getLogger("agent.call_control")


class LiveKitCallControl:
    def __init__(
        self,
        lkapi: api.LiveKitAPI,
        room_name: str,
        participant_identity: str | None,
        *,
        end_job: Callable[[str], None] | None = None,
    ) -> None:
        self.lkapi = lkapi
        self.room_name = room_name
        self.identity = participant_identity
        self.end_job = end_job or (lambda _reason: None)

    async def hang_up(self) -> None:
        if self.identity:
            try:
                await self.lkapi.room.remove_participant(
                    api.RoomParticipantIdentity(room=self.room_name, identity=self.identity)
                )
            except Exception as exc:  # not found: the candidate already hung up
                log.info("removing the participant: %s", exc)
        try:
            await self.lkapi.room.delete_room(api.DeleteRoomRequest(room=self.room_name))
        except Exception as exc:
            log.info("deleting the room: %s", exc)
        self.end_job("screening finished")

    async def transfer(self, number: str) -> bool:
        """SIP transfer to `number` (E.164, or a tel: / sip: URI). False if it did not happen."""
        if not self.identity:
            return False
        target = number if number.startswith(("tel:", "sip:")) else f"tel:{number}"
        response = await self.lkapi.sip.transfer_sip_participant(
            api.TransferSIPParticipantRequest(
                room_name=self.room_name,
                participant_identity=self.identity,
                transfer_to=target,
                play_dialtone=False,
            )
        )
        if response.status == proto_sip.STS_TRANSFER_FAILED:
            log.warning("the transfer was refused: %s", response.reason or "no reason given")
            return False
        try:
            await self.lkapi.room.delete_room(api.DeleteRoomRequest(room=self.room_name))
        except Exception as exc:
            log.info("deleting the room after the transfer: %s", exc)
        self.end_job("transferred to a recruiter")
        return True
