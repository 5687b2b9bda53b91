"""The agent worker's configuration, from the environment. Keys are checked at start-up so a
missing one fails with a message naming it, before the worker registers with LiveKit.

Required: DEEPGRAM_API_KEY, OPENAI_API_KEY, CARTESIA_API_KEY, and for `start` / `dev`
LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET.

Optional (defaults in brackets):
- LIVEKIT_AGENT_NAME [screening-agent]: the explicit dispatch name the dial task uses.
- REDIS_URL [redis://127.0.0.1:6379/0]: the Celery broker of the results queue.
- DIALER_SPOOL_DIR [.dialer/spool]: where results wait while Redis is unreachable.
- AGENT_OPENAI_MODEL [gpt-4.1-mini]: the conversation LLM (and the AMD classifier).
- AGENT_CARTESIA_MODEL [sonic-3], AGENT_CARTESIA_VOICE [Cartesia's default voice]: TTS.
- AGENT_SILENCE_TIMEOUT_S [8]: silence before "are you still there?" (twice in a row ends the
  call; anything the candidate says in between starts the count again).
- AGENT_ANSWER_TIMEOUT_S [90]: how long to wait for the phone participant / the web
  interview's metadata before giving the job up (the room is deleted, nothing published).
- AGENT_AMD [1]: answering-machine detection on phone calls (0 to switch off).

Values are never logged; `describe()` names what is set without showing it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dialer.errors import ConfigError
from dialer.settings import DEFAULT_AGENT_NAME

MODEL_KEYS: tuple[str, ...] = ("DEEPGRAM_API_KEY", "OPENAI_API_KEY", "CARTESIA_API_KEY")
LIVEKIT_KEYS: tuple[str, ...] = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")

# Which variables each command needs. `console` talks to a local console, not to LiveKit.
REQUIRED: dict[str, tuple[str, ...]] = {
    "start": MODEL_KEYS + LIVEKIT_KEYS,
    "dev": MODEL_KEYS + LIVEKIT_KEYS,
    "connect": MODEL_KEYS + LIVEKIT_KEYS,
    "console": MODEL_KEYS,
}


def missing_environment(command: str, env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    return [name for name in REQUIRED.get(command, ()) if not env.get(name, "").strip()]


def check_environment(command: str, env: Mapping[str, str] | None = None) -> None:
    """Raise ConfigError naming every missing variable for `command`."""
    missing = missing_environment(command, env)
    if missing:
        raise ConfigError(
            f"cannot start the screening agent ({command}): set {', '.join(missing)} "
            "in the environment"
        )


@dataclass(frozen=True)
class AgentConfig:
    agent_name: str = DEFAULT_AGENT_NAME
    redis_url: str = "redis://127.0.0.1:6379/0"
    spool_dir: Path = Path(".dialer/spool")
    openai_model: str = "gpt-4.1-mini"
    cartesia_model: str = "sonic-3"
    cartesia_voice: str | None = None
    silence_timeout_s: float = 8.0
    answer_timeout_s: float = 90.0
    amd: bool = True
    # How long a job whose result was spooled keeps trying to send it before it ends.
    spool_drain_s: float = 600.0
    # How often the agent server process sends whatever waits in the spool, calls or not.
    spool_flush_s: float = 15.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AgentConfig:
        env = os.environ if env is None else env

        def get(name: str, default: str) -> str:
            value = env.get(name, "").strip()
            return value or default

        return cls(
            agent_name=get("LIVEKIT_AGENT_NAME", DEFAULT_AGENT_NAME),
            redis_url=get("REDIS_URL", cls.redis_url),
            spool_dir=Path(get("DIALER_SPOOL_DIR", str(cls.spool_dir))),
            openai_model=get("AGENT_OPENAI_MODEL", cls.openai_model),
            cartesia_model=get("AGENT_CARTESIA_MODEL", cls.cartesia_model),
            cartesia_voice=env.get("AGENT_CARTESIA_VOICE", "").strip() or None,
            silence_timeout_s=_seconds(env, "AGENT_SILENCE_TIMEOUT_S", 8.0),
            answer_timeout_s=_seconds(env, "AGENT_ANSWER_TIMEOUT_S", 90.0),
            amd=get("AGENT_AMD", "1").lower() not in ("0", "false", "no", "off"),
            spool_drain_s=_seconds(env, "AGENT_SPOOL_DRAIN_S", 600.0),
            spool_flush_s=_seconds(env, "AGENT_SPOOL_FLUSH_S", 15.0),
        )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")
    return number
