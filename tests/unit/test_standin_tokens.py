"""The LiveKit stand-in checks bearer tokens as LiveKit does: HS256 signature with the API
secret, issuer = API key, `exp` required, `nbf` honoured (both with leeway)."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from dialer.livekit_standin.server import InvalidToken, verify_token

KEY, SECRET, NOW = "APIkey", "a-secret-long-enough-for-hs256-signing", 1_800_000_000


def token(claims: dict[str, object], secret: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


def good(**extra: object) -> dict[str, object]:
    return {
        "iss": KEY,
        "sub": "",
        "nbf": NOW,
        "exp": NOW + 600,
        "video": {"roomCreate": True},
        **extra,
    }


def test_a_good_token_gives_its_claims() -> None:
    assert verify_token(token(good()), SECRET, KEY, 60, NOW)["video"] == {"roomCreate": True}


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (token(good(), secret="another-secret-another-secret-0000"), "signature"),
        (token(good(iss="someone-else")), "issuer"),
        (token({k: v for k, v in good().items() if k != "exp"}), "exp"),
        (token(good(exp=NOW - 61)), "expired"),
        (token(good(nbf=NOW + 61)), "nbf"),
        (token(good(), secret="x" * 48, alg="HS384"), "HS256"),
        ("not-a-token", "not a JWT"),
    ],
)
def test_bad_tokens_are_refused_with_the_reason(raw: str, why: str) -> None:
    with pytest.raises(InvalidToken, match=why):
        verify_token(raw, SECRET, KEY, 60, NOW)


def test_a_tampered_payload_fails_the_signature() -> None:
    header, _, signature = token(good()).split(".")
    forged = base64.urlsafe_b64encode(json.dumps(good(video={"roomAdmin": True})).encode())
    tampered = f"{header}.{forged.decode().rstrip('=')}.{signature}"
    with pytest.raises(InvalidToken, match="signature"):
        verify_token(tampered, SECRET, KEY, 60, NOW)


def test_leeway_admits_a_token_just_expired() -> None:
    assert verify_token(token(good(exp=NOW - 30)), SECRET, KEY, 60, NOW)["iss"] == KEY
