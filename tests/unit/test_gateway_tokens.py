"""JWT checks of the gateway (pure: pyjwt, no network)."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from gateway.auth import Authenticator, AuthError

SECRET = "unit-test-secret-long-enough-for-hs256-use"


def make(claims: dict[str, object], *, secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def test_no_key_means_open_gateway() -> None:
    auth = Authenticator()
    assert not auth.enabled
    grant = auth.verify(None)
    assert grant.allows("anything")


def test_streams_claim_limits_streams() -> None:
    auth = Authenticator(secret=SECRET)
    assert auth.verify(make({"streams": ["a", "b"]})).allows("a")
    assert not auth.verify(make({"streams": ["a", "b"]})).allows("c")
    assert auth.verify(make({"streams": "*"})).allows("c")
    assert not auth.verify(make({})).allows("a"), "no claim allows nothing"


@pytest.mark.parametrize("claim", ["a", "a,b", [1, 2], {"a": True}, 7, None])
def test_streams_claim_other_than_a_list_or_star_is_refused(claim: object) -> None:
    with pytest.raises(AuthError, match='streams claim must be a list of stream names or "\\*"'):
        Authenticator(secret=SECRET).verify(make({"streams": claim}))


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "required"),
        ("", "required"),
        ("garbage", "malformed"),
        (make({"streams": "*"}, secret="another-secret-also-long-enough-for-hs256"), "invalid"),
        (make({"streams": "*", "exp": int(time.time()) - 10}), "expired"),
        (make({"streams": "*"}, secret=SECRET * 2, algorithm="HS512"), "not accepted"),
    ],
)
def test_refused_tokens_say_why(token: str | None, reason: str) -> None:
    with pytest.raises(AuthError, match=reason):
        Authenticator(secret=SECRET).verify(token)


def test_alg_none_is_refused() -> None:
    unsigned = jwt.encode({"streams": "*"}, key=None, algorithm="none")
    with pytest.raises(AuthError):
        Authenticator(secret=SECRET).verify(unsigned)


def test_expiry_is_reported() -> None:
    exp = int(time.time()) + 100
    grant = Authenticator(secret=SECRET).verify(make({"streams": "*", "exp": exp, "sub": "me"}))
    assert grant.expires_at == exp and grant.subject == "me"


def test_public_key_without_crypto_support_or_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ValueError, match="jwt-public-key"):
        Authenticator(public_key_path=str(missing))
