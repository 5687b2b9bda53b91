"""LiveKit stand-in: a local server that speaks LiveKit's Twirp API (rooms, agent dispatch, SIP
dialing) with scripted per-number call outcomes, for tests, benches and the demo.

    with LiveKitStandIn({"+32470000001": ["busy", "answer"]}) as lk:
        api = LiveKitAPI(lk.url, lk.api_key, lk.api_secret)
        ...
        assert len(lk.dials) == 2

Run it standalone with `python -m dialer.livekit_standin --help`.
"""

from __future__ import annotations

from dialer.livekit_standin.scenarios import ScenarioBook, SipReply
from dialer.livekit_standin.server import (
    AnsweredCall,
    DialRecord,
    DispatchRecord,
    LiveKitStandIn,
    RequestRecord,
    RoomRecord,
)

__all__ = [
    "AnsweredCall",
    "DialRecord",
    "DispatchRecord",
    "LiveKitStandIn",
    "RequestRecord",
    "RoomRecord",
    "ScenarioBook",
    "SipReply",
]
