"""Standard Webhooks signing (https://www.standardwebhooks.com), done by the `standardwebhooks`
library so any Standard Webhooks verifier accepts what we send.

Secrets are `whsec_` + base64 of 24..64 random bytes (the spec's recommended range); generated
ones use 24 bytes. Signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the id is the
message id (stable across retries, so receivers can de-duplicate) and the timestamp is the wall
time of THIS try, so receivers' replay windows (5 minutes in the reference verifier) hold for
retries sent hours later.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import UTC, datetime
from functools import lru_cache

from standardwebhooks.webhooks import Webhook

from dialer.errors import FieldProblem, ValidationFailed

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64


def generate_secret() -> str:
    """A new `whsec_` secret: base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(MIN_SECRET_BYTES)).decode()


def validate_secret(secret: str) -> str:
    """Return the secret unchanged, or raise ValidationFailed (field `secret`) saying why.
    The secret itself never appears in the message."""

    def bad(message: str) -> ValidationFailed:
        return ValidationFailed([FieldProblem("secret", message)])

    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise bad(f"must start with {SECRET_PREFIX!r} followed by base64")
    body = secret[len(SECRET_PREFIX) :]
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise bad(f"is not valid base64 after {SECRET_PREFIX!r}") from None
    if not MIN_SECRET_BYTES <= len(raw) <= MAX_SECRET_BYTES:
        raise bad(
            f"must decode to {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes (got {len(raw)}); "
            "leave it out to have one generated"
        )
    return secret


def mask_secret(secret: str) -> str:
    """`whsec_…AbCd`: enough to tell secrets apart in a listing, useless to an attacker."""
    return f"{SECRET_PREFIX}…{secret[-4:]}" if len(secret) > len(SECRET_PREFIX) + 8 else "whsec_…"


@lru_cache(maxsize=512)
def _webhook(secret: str) -> Webhook:
    # Webhook() base64-decodes the secret; keep one per secret instead of one per delivery.
    return Webhook(secret)


def sign(secret: str, message_id: str, timestamp: datetime, payload: str) -> str:
    """The `webhook-signature` header value (`v1,<base64 HMAC-SHA256>`)."""
    # The library does `timestamp.replace(tzinfo=utc)`, so hand it UTC (not another zone).
    utc = timestamp.astimezone(UTC)
    return _webhook(secret).sign(msg_id=message_id, timestamp=utc, data=payload)


def signed_headers(
    secret: str, message_id: str, timestamp: datetime, payload: str
) -> dict[str, str]:
    """The three Standard Webhooks headers for one try. `timestamp` must be timezone-aware."""
    if timestamp.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": sign(secret, message_id, timestamp, payload),
    }
