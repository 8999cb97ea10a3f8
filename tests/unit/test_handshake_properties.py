"""Property-based tests of the handshake's query parser and the token checker (issue 12, hostile input).

docs/protocol.md: a bad stream name, ``since`` or ``previews`` value, or ``since`` without ``epoch``
is answered 400 before the upgrade; a missing, invalid or expired token 401. Here the parser and the
authenticator are driven directly: whatever the URL or token, the answer is a parse result or the
documented refusal (a ``ValueError`` the gateway turns into 400, an ``AuthError`` into 401), never
another exception (which websockets answers with 500).
"""

from __future__ import annotations

import re
import time
import urllib.parse
from typing import Any

import jwt
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from framecast import wire
from gateway.auth import Authenticator, AuthError
from gateway.handshake import parse_choices, parse_ws_path

_PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_SECRET = "s" * 64


def _fields(parsed: tuple[Any, ...]) -> dict[str, Any]:
    """(stream, since, epoch, previews, video, token) by name."""
    return dict(zip(("stream", "since", "epoch", "previews", "video", "token"), parsed, strict=True))


def _parse_or_refuse(path: str) -> dict[str, Any] | None:
    """The parse result, or None for the documented refusal (a ValueError: HTTP 400)."""
    try:
        parse_choices(path)  # kinds, max_rate, event_since/event_epoch: the same two answers
        return _fields(parse_ws_path(path))
    except ValueError as exc:
        assert str(exc), "a refusal must say what is wrong (it is the 400's body)"
        return None


_path_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]),
    max_size=60,
)


@_PROFILE
@given(_path_text)
@example("/ws/%00")
@example("/ws/..%2F..%2Fetc%2Fpasswd")
@example("/ws/a?since=%EF%BC%91&epoch=e")
@example("/ws?since=" + "9" * 5000 + "&epoch=e")
@example("/ws/a?previews=%ff")
@example("/ws/a?kinds=event,%00&max_rate=inf&event_since=%EF%BC%91&event_epoch=e")
def test_any_path_parses_or_is_refused(tail: str) -> None:
    for path in ("/ws/" + tail, "/ws?" + tail, "/ws/" + urllib.parse.quote(tail), "/ws/a?" + tail):
        _parse_or_refuse(path)


@_PROFILE
@given(
    st.dictionaries(
        st.sampled_from(["since", "epoch", "previews", "token", "x"]),
        st.text(max_size=12),
        max_size=5,
    )
)
def test_accepted_queries_hold_only_documented_values(query: dict[str, str]) -> None:
    path = "/ws/cam1?" + urllib.parse.urlencode(query)
    parsed = _parse_or_refuse(path)
    if parsed is None:
        return
    assert parsed["stream"] == "cam1"
    since = query.get("since")
    if since is not None:
        # A decimal number of ASCII digits only; the epoch it belongs to must be given too.
        assert since.isascii(), f"since={since!r} holds non-ASCII characters but was accepted"
        assert parsed["since"] == int(since) and parsed["since"] >= 0
        assert query.get("epoch"), "since without epoch was accepted"
    assert isinstance(parsed["previews"], bool)


@_PROFILE
@given(
    st.integers(min_value=0, max_value=2**63), st.text(alphabet="0123456789abcdef", min_size=1, max_size=16)
)
def test_a_well_formed_resume_parses_to_its_values(since: int, epoch: str) -> None:
    parsed = _parse_or_refuse(f"/ws/default?since={since}&epoch={epoch}&previews=1")
    assert parsed is not None
    assert (parsed["stream"], parsed["since"], parsed["epoch"], parsed["previews"]) == (
        "default",
        since,
        epoch,
        True,
    )


def test_fullwidth_and_other_unicode_digits_in_since_are_refused() -> None:
    """Known defect (issue 12): ``int()`` reads fullwidth, Arabic-Indic, Devanagari... digits as 12."""
    for digits in ("\uff11\uff12", "\u0661\u0662", "\u0967\u0968", "\U0001d7cf\U0001d7d0", "1\uff12"):
        path = "/ws/default?since=" + urllib.parse.quote(digits) + "&epoch=e1"
        assert _parse_or_refuse(path) is None, f"since={digits!r} was accepted"


@_PROFILE
@given(st.text(max_size=70))
def test_stream_names_in_the_path_follow_the_documented_rule(name: str) -> None:
    valid = name.isascii() and re.fullmatch(wire.STREAM_NAME_PATTERN, name) is not None
    parsed = _parse_or_refuse("/ws/" + urllib.parse.quote(name, safe=""))
    assert (parsed is not None) == valid, f"/ws/{name!r}: accepted={parsed is not None}, documented={valid}"
    if parsed is not None:
        assert parsed["stream"] == name


# --------------------------------------------------------------------------
# Tokens


def _verify(auth: Authenticator, token: str | None) -> object | None:
    try:
        return auth.verify(token)
    except AuthError as exc:
        assert str(exc)
        return None


@_PROFILE
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
@example("eyJhbGciOiJub25lIn0.eyJzdHJlYW1zIjoiKiJ9.")
@example("a.b.c")
@example("." * 3000)
def test_any_token_string_is_a_grant_or_an_auth_error(token: str) -> None:
    assert _verify(Authenticator(secret=_SECRET), token) is None or token.count(".") == 2


@_PROFILE
@given(
    st.dictionaries(
        st.sampled_from(["streams", "exp", "nbf", "iat", "sub", "aud"]),
        st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.lists(st.text(max_size=8)),
        max_size=5,
    )
)
def test_any_claims_signed_with_the_secret_are_a_grant_or_an_auth_error(claims: dict[str, Any]) -> None:
    grant = _verify(Authenticator(secret=_SECRET), jwt.encode(claims, _SECRET, algorithm="HS256"))
    if grant is None:
        return
    streams = claims.get("streams")
    # Documented: a list of stream names, or "*" for all; no claim allows none. A string other
    # than "*" is refused; other shapes (numbers, booleans) may at most allow nothing.
    assert not (isinstance(streams, str) and streams != "*"), f"streams={streams!r} accepted"
    allows = grant.allows  # type: ignore[attr-defined]
    if not isinstance(streams, list | str):
        assert not allows("default")
    elif streams == "*":
        assert allows("default")
    else:
        assert allows("default") == ("default" in streams)


def test_refused_tokens() -> None:
    """alg none, another key, wrong algorithm family, expired, and a plain-string ``streams`` claim."""
    auth = Authenticator(secret=_SECRET)
    now = int(time.time())
    refused = {
        "alg none": jwt.encode({"streams": "*"}, None, algorithm="none"),  # type: ignore[arg-type]
        "other secret": jwt.encode({"streams": "*"}, "t" * 64, algorithm="HS256"),
        "HS512": jwt.encode({"streams": "*"}, _SECRET, algorithm="HS512"),
        "expired": jwt.encode({"streams": "*", "exp": now - 3600}, _SECRET, algorithm="HS256"),
        # Known defect (issue 12): "lab" was read as ["lab"]; the claim is a list or "*".
        "streams as plain string": jwt.encode({"streams": "lab"}, _SECRET, algorithm="HS256"),
        "oversized": jwt.encode({"streams": ["x"] * 50_000}, "t" * 64, algorithm="HS256"),
    }
    accepted = [name for name, token in refused.items() if _verify(auth, token) is not None]
    assert accepted == [], f"accepted: {accepted}"
