"""Our request signer writes the same JWT claims as livekit-api's AccessToken (which the dial
path no longer uses for signing because of its cost), so LiveKit accepts our tokens exactly as it
accepts the library's."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from livekit.api import AccessToken, SIPGrants, VideoGrants

from dialer.livekit_dialer import TOKEN_REUSE_S, RequestSigner

KEY, SECRET = "APIkey", "a-secret-long-enough-for-hs256-signing"

GRANTS: list[tuple[VideoGrants | None, SIPGrants | None]] = [
    (VideoGrants(room_create=True), None),  # CreateRoom, DeleteRoom
    (VideoGrants(room_admin=True, room="screening-abc-1"), None),  # dispatch, participants
    (VideoGrants(), SIPGrants(call=True)),  # CreateSIPParticipant
    (VideoGrants(room_admin=True, room="r"), SIPGrants(call=True)),  # TransferSIPParticipant
    (VideoGrants(can_publish_sources=["microphone"], hidden=True), SIPGrants(admin=True)),
]


def _claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"], issuer=KEY)
    return {k: v for k, v in decoded.items() if k not in ("nbf", "exp")}


@pytest.mark.parametrize(("video", "sip"), GRANTS)
def test_claims_match_livekit_api(video: VideoGrants | None, sip: SIPGrants | None) -> None:
    theirs = AccessToken(KEY, SECRET)
    if video is not None:
        theirs.with_grants(video)
    if sip is not None:
        theirs.with_sip_grants(sip)
    ours = RequestSigner(KEY, SECRET).token(video, sip)
    assert _claims(ours) == _claims(theirs.to_jwt())


def test_room_independent_tokens_are_reused_for_a_while_room_tokens_never() -> None:
    now = [1_800_000_000.0]
    signer = RequestSigner(KEY, SECRET, clock=lambda: now[0])
    create = signer.token(VideoGrants(room_create=True))
    room_a = signer.token(VideoGrants(room_admin=True, room="a"))
    now[0] += 1
    assert signer.token(VideoGrants(room_create=True)) == create
    assert signer.token(VideoGrants(room_admin=True, room="a")) != room_a
    now[0] += TOKEN_REUSE_S
    renewed = signer.token(VideoGrants(room_create=True))
    assert renewed != create
    decoded = jwt.decode(
        renewed,
        SECRET,
        algorithms=["HS256"],
        issuer=KEY,
        options={"verify_nbf": False, "verify_exp": False},
    )
    assert decoded["exp"] - decoded["nbf"] == 600
