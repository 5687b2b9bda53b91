"""API-key authentication as FastAPI dependencies: `Depends(require("screenings:read"))`.

Keys travel as `Authorization: Bearer dk_…` or `X-API-Key: dk_…` (see `dialer.apikeys` for the
format, the scopes and `DIALER_API_AUTH=off`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from dialer.apikeys import SCOPES, ApiKey, is_loopback
from dialer.http.errors import ApiError
from dialer.http.state import services

bearer = HTTPBearer(
    auto_error=False, description="An API key: `Authorization: Bearer dk_…`", scheme_name="bearer"
)
api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key in a header", scheme_name="apiKey"
)

_CREATE_HINT = "create one with `dialer apikeys create --scope {scope}`"


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key, or the loopback client of a keyless dev server."""

    key: ApiKey | None
    scopes: frozenset[str]

    @property
    def name(self) -> str:
        return self.key.id if self.key is not None else "local"


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def require(scope: str) -> Callable[..., Principal]:
    """A dependency that admits callers whose key has `scope` (or implies it)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
        header_key: str | None = Depends(api_key_header),
    ) -> Principal:
        svc = services(request)
        token = credentials.credentials if credentials is not None else header_key
        if not token:
            if svc.auth_off:
                client = request.client.host if request.client else None
                proxied = any(h in request.headers for h in ("forwarded", "x-forwarded-for"))
                if is_loopback(client) and not proxied:
                    return Principal(None, frozenset(SCOPES))
                raise _unauthorized(
                    "API keys are switched off (DIALER_API_AUTH=off), which only serves direct "
                    "loopback clients; send an API key (" + _CREATE_HINT.format(scope=scope) + ")"
                )
            raise _unauthorized(
                "missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>` ("
                + _CREATE_HINT.format(scope=scope)
                + ")"
            )
        key = svc.apikeys.verify(token)
        if key is None:
            raise _unauthorized(
                "unknown or revoked API key; check the key, or " + _CREATE_HINT.format(scope=scope)
            )
        if not key.allows(scope):
            raise ApiError(
                403,
                "forbidden",
                f"this API key ({key.display}, scopes: {', '.join(key.scopes)}) lacks the scope "
                f"{scope!r} this route needs; " + _CREATE_HINT.format(scope=scope),
            )
        return Principal(key, key.granted())

    return dependency


READ = Depends(require("screenings:read"))
WRITE = Depends(require("screenings:write"))
ADMIN = Depends(require("admin"))
