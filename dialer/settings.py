"""Settings from the environment. Secrets are `SecretStr` so they never print in logs or reprs.

Env names for LiveKit and Redis follow the integration briefs (`seeds/000_*`, `seeds/002_*`);
everything specific to this project is prefixed `DIALER_`.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dialer.errors import ConfigError

DEFAULT_AGENT_NAME = "screening-agent"


class Settings(BaseSettings):
    # populate_by_name: `Settings(sip_trunk_id=...)` works as well as the env names.
    model_config = SettingsConfigDict(
        env_prefix="DIALER_", extra="ignore", frozen=True, populate_by_name=True
    )

    # Redis: unset means "start an embedded redis-server under data_dir".
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL"))
    data_dir: Path = Path(".dialer")
    key_prefix: str = "dialer"

    # LiveKit (names from seeds/002_*).
    livekit_url: str | None = Field(default=None, validation_alias=AliasChoices("LIVEKIT_URL"))
    livekit_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("LIVEKIT_API_KEY")
    )
    livekit_api_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("LIVEKIT_API_SECRET")
    )
    sip_trunk_id: str | None = Field(
        default=None, validation_alias=AliasChoices("LIVEKIT_SIP_OUTBOUND_TRUNK_ID")
    )
    sip_from_number: str | None = Field(
        default=None, validation_alias=AliasChoices("LIVEKIT_SIP_FROM_NUMBER")
    )
    agent_name: str = Field(
        default=DEFAULT_AGENT_NAME, validation_alias=AliasChoices("LIVEKIT_AGENT_NAME")
    )

    # Dialing.
    calls_per_second: float = Field(default=5.0, gt=0)
    # Share of calls_per_second left unused: the turn is taken one HTTP request before the
    # INVITE leaves, and that request's jitter must not push two INVITEs under 1 / rate apart.
    pacing_headroom: float = Field(default=0.015, ge=0, lt=0.5)
    max_concurrent_calls: int = Field(default=20, ge=1)
    ringing_timeout_s: int = Field(default=30, ge=5, le=120)
    max_call_duration_s: int = Field(default=900, ge=60)
    default_max_attempts: int = Field(default=3, ge=1, le=10)
    room_empty_timeout_s: int = Field(default=60, ge=10)
    # Circuit breaker: pause a trunk when this share of the last `breaker_window` dials throttled.
    breaker_threshold: float = Field(default=0.5, gt=0, le=1)
    breaker_window: int = Field(default=20, ge=4)
    breaker_pause_s: int = Field(default=60, ge=1)
    # Dial messages the beat keeps queued at most (the rest waits in the due-set). The beat
    # tops the queue up once a second, so this also caps dials per second through the queue.
    dial_queue_max: int = Field(default=1000, ge=10)

    # Clock: "system" in production; "redis" lets tests and the demo move time forward.
    clock: Literal["system", "redis"] = "system"

    # Webhooks.
    webhook_allow_private: bool = False
    # Non-public networks webhooks may reach anyway, comma-separated CIDRs ("127.0.0.0/8,::1/128"
    # for receivers on this machine); every other private address stays refused.
    webhook_allow_networks: str = ""
    webhook_timeout_s: float = 15.0
    webhook_config: Path | None = None

    # Agent: where spooled results wait when Redis is unreachable.
    spool_dir: Path = Path(".dialer/spool")
    # Agent: a result sent this long ago without the results consumer's receipt is sent again
    # (the queue lost it: kombu's Redis transport can drop a message whose worker died while
    # taking it); one without a receipt this long after it was made is given up (quarantined).
    result_confirm_s: float = Field(default=60.0, gt=0)
    result_give_up_s: float = Field(default=86400.0, gt=0)
    recruiter_number: str | None = None

    @field_validator("webhook_allow_networks")
    @classmethod
    def _cidr_list(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ipaddress.ip_network(part, strict=True)
            except ValueError as exc:
                raise ValueError(
                    f"{part!r} is not a network in CIDR form such as 127.0.0.0/8 ({exc})"
                ) from None
        return value

    def require_livekit(self) -> tuple[str, str, str]:
        """URL, key and secret, or a ConfigError that says which variable to set."""
        missing = [
            name
            for name, value in (
                ("LIVEKIT_URL", self.livekit_url),
                ("LIVEKIT_API_KEY", self.livekit_api_key),
                ("LIVEKIT_API_SECRET", self.livekit_api_secret),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                f"set {', '.join(missing)} (or run `dialer demo` to use the built-in LiveKit "
                "stand-in)"
            )
        assert self.livekit_url and self.livekit_api_key and self.livekit_api_secret
        return self.livekit_url, self.livekit_api_key, self.livekit_api_secret.get_secret_value()

    def trunk_id(self) -> str:
        if not self.sip_trunk_id:
            raise ConfigError(
                "set LIVEKIT_SIP_OUTBOUND_TRUNK_ID to your outbound trunk id "
                "(`lk sip outbound list` shows it)"
            )
        return self.sip_trunk_id


def load_settings() -> Settings:
    return Settings()
