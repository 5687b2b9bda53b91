"""API keys for the HTTP API: random tokens with scopes, stored hashed.

A key looks like `dk_<id>_<secret>` (id: 12 hex digits, secret: 43 URL-safe characters, 256
bits). It is shown once, when created; Redis keeps only its SHA-256 (a fast hash is right for a
high-entropy random token: there is nothing to brute-force), compared in constant time.

    dialer apikeys create --name crm --scope screenings:read --scope screenings:write
    curl -H "Authorization: Bearer dk_…" http://127.0.0.1:8000/v1/screenings

Scopes:

    screenings:read    list / retrieve screenings, campaign progress
    screenings:write   create / cancel screenings, batch, /api/calls/outbound, campaign
                       create / policy / pause / resume (implies screenings:read)
    admin              webhook endpoints, do-not-call list (implies every scope)

Storage: hash `{prefix}:apikeys`, field = key id, value = JSON {id, name, scopes, hash,
created_at, revoked_at}.

Local development without keys: `DIALER_API_AUTH=off` makes the API accept requests without a
key, with every scope, but ONLY from loopback clients (127.0.0.0/8, ::1) that did not come
through a proxy (no Forwarded / X-Forwarded-For header); `dialer api` refuses to bind to
anything but loopback in that mode.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

import redis
from pydantic import BaseModel, ConfigDict

from dialer.errors import DialerError, FieldProblem, ValidationFailed
from dialer.keys import Keys

SCOPES = ("screenings:read", "screenings:write", "admin")
Scope = Literal["screenings:read", "screenings:write", "admin"]
_IMPLIED: dict[str, frozenset[str]] = {
    "screenings:read": frozenset({"screenings:read"}),
    "screenings:write": frozenset({"screenings:read", "screenings:write"}),
    "admin": frozenset(SCOPES),
}
TOKEN_PREFIX = "dk_"
_TOKEN_RE = re.compile(r"dk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,128})")
AUTH_ENV = "DIALER_API_AUTH"


class ApiKeyNotFound(DialerError):
    """No API key with that id."""


class ApiKey(BaseModel):
    """A stored key without its secret."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str = ""
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def granted(self) -> frozenset[str]:
        """Every scope this key has, implied ones included."""
        out: set[str] = set()
        for scope in self.scopes:
            out |= _IMPLIED.get(scope, frozenset())
        return frozenset(out)

    def allows(self, scope: str) -> bool:
        return self.active and scope in self.granted()

    @property
    def display(self) -> str:
        return f"{TOKEN_PREFIX}{self.id}_…"


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    values = tuple(dict.fromkeys(scopes))
    unknown = [s for s in values if s not in SCOPES]
    if not values or unknown:
        raise ValidationFailed(
            [
                FieldProblem(
                    "scopes",
                    (
                        f"unknown scope(s) {', '.join(unknown)}; "
                        if unknown
                        else "give at least one; "
                    )
                    + f"choose from {', '.join(SCOPES)}",
                )
            ]
        )
    return values


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def auth_disabled(environ: dict[str, str] | None = None) -> bool:
    """True when `DIALER_API_AUTH=off` (also: 0, false, no)."""
    env = os.environ if environ is None else environ
    return env.get(AUTH_ENV, "on").strip().lower() in ("off", "0", "false", "no")


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class ApiKeyStore:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r = client
        self.key = f"{keys.prefix}:apikeys"

    def create(
        self, scopes: Iterable[str], *, name: str = "", now: datetime | None = None
    ) -> tuple[ApiKey, str]:
        """A new key; returns (key, token). The token is not stored: show it once."""
        checked = check_scopes(scopes)
        if len(name) > 200:
            raise ValidationFailed([FieldProblem("name", "at most 200 characters")])
        for _ in range(10):
            key_id = secrets.token_hex(6)
            token = f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            api_key = ApiKey(
                id=key_id, name=name, scopes=checked, created_at=now or datetime.now(UTC)
            )
            record = api_key.model_dump(mode="json")
            record["hash"] = hash_token(token)
            if self.r.hsetnx(self.key, key_id, json.dumps(record)):
                return api_key, token
        raise DialerError("could not allocate an API key id; try again")  # pragma: no cover

    def _load(self, key_id: str) -> tuple[ApiKey, str] | None:
        raw = self.r.hget(self.key, key_id)
        if raw is None:
            return None
        record = json.loads(str(raw))
        stored_hash = str(record.pop("hash", ""))
        return ApiKey.model_validate(record), stored_hash

    def get(self, key_id: str) -> ApiKey:
        found = self._load(key_id)
        if found is None:
            raise ApiKeyNotFound(f"no API key {key_id!r} (list them with `dialer apikeys list`)")
        return found[0]

    def list(self) -> builtins.list[ApiKey]:
        raw: dict[str, str] = self.r.hgetall(self.key)  # type: ignore[assignment]
        found = []
        for value in raw.values():
            record = json.loads(value)
            record.pop("hash", None)
            found.append(ApiKey.model_validate(record))
        return sorted(found, key=lambda k: (k.created_at, k.id))

    def revoke(self, key_id: str, *, now: datetime | None = None) -> ApiKey:
        """The key stops working at once. Revoking twice keeps the first time."""
        loaded = self._load(key_id)
        if loaded is None:
            raise ApiKeyNotFound(f"no API key {key_id!r} (list them with `dialer apikeys list`)")
        api_key, stored_hash = loaded
        if api_key.revoked_at is not None:
            return api_key
        revoked = api_key.model_copy(update={"revoked_at": now or datetime.now(UTC)})
        record = revoked.model_dump(mode="json")
        record["hash"] = stored_hash
        self.r.hset(self.key, key_id, json.dumps(record))
        return revoked

    def verify(self, token: str) -> ApiKey | None:
        """The active key this token belongs to, or None (unknown, wrong secret, revoked)."""
        match = _TOKEN_RE.fullmatch(token.strip())
        if match is None:
            return None
        loaded = self._load(match.group(1))
        if loaded is None:
            return None
        api_key, stored_hash = loaded
        if not hmac.compare_digest(stored_hash, hash_token(token.strip())):
            return None
        return api_key if api_key.active else None
