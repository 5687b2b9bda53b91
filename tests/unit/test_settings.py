"""Settings come from the environment under the documented names, and code (tests, embedding
applications) can pass the same settings by field name."""

from __future__ import annotations

import pytest

from dialer.settings import Settings


def test_env_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_SIP_OUTBOUND_TRUNK_ID", "ST_env")
    monkeypatch.setenv("LIVEKIT_AGENT_NAME", "night-screener")
    monkeypatch.setenv("DIALER_CALLS_PER_SECOND", "7.5")
    settings = Settings()
    assert settings.sip_trunk_id == "ST_env"
    assert settings.agent_name == "night-screener"
    assert settings.calls_per_second == 7.5


def test_fields_can_be_passed_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVEKIT_SIP_OUTBOUND_TRUNK_ID", raising=False)
    settings = Settings(sip_trunk_id="ST_code", livekit_api_secret="s3cret", redis_url="redis://h")
    assert settings.trunk_id() == "ST_code"
    assert settings.redis_url == "redis://h"
    assert "s3cret" not in repr(settings), "secrets never print"
