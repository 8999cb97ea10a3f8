"""Admission, sans I/O: every answer to a WebSocket handshake, from the request and the gateway's state."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request

from gateway.admission import Refusal, admit, is_websocket_path, streams_allowed
from gateway.auth import OPEN_GRANT, Authenticator, AuthError
from gateway.handshake import Choices, Handshake

SECRET = "s" * 64
OPEN = Authenticator()
LOCKED = Authenticator(secret=SECRET)


def request(path: str, **headers: str) -> Request:
    return Request(path, Headers(headers))


def token(**claims: Any) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


def decide(path: str, *, auth: Authenticator = OPEN, **state: Any) -> Handshake | Refusal:
    return admit(
        request(path, **state.pop("headers", {})),
        **{
            "draining": False,
            "not_ready": None,
            "connections": 0,
            "max_connections": 10,
            "auth": auth,
            **state,
        },
    )


def test_a_ready_gateway_accepts_what_the_path_asks_for() -> None:
    assert decide("/ws/cam1?since=7&epoch=e1&previews=1") == Handshake(
        stream="cam1", since=7, epoch="e1", previews=True, grant=OPEN_GRANT
    )
    assert decide("/ws") == Handshake(stream=None, since=None, epoch=None, previews=False, grant=OPEN_GRANT)
    assert decide("/ws/cam1?video=1") == Handshake(
        stream="cam1", since=None, epoch=None, previews=False, video=True, grant=OPEN_GRANT
    )


def test_a_bad_video_flag_is_a_400_that_names_it() -> None:
    refusal = decide("/ws/cam1?video=maybe")
    assert isinstance(refusal, Refusal) and refusal.status == 400
    assert refusal.text == "video: expected 1 or 0, got 'maybe'"


@pytest.mark.parametrize(
    ("state", "status", "text", "headers"),
    [
        ({"draining": True, "not_ready": "draining: shutting down"}, 503, "gateway shutting down", {}),
        (
            {"not_ready": "redis unreachable"},
            503,
            "gateway not ready (redis unreachable)",
            {"Retry-After": "1"},
        ),
        ({"connections": 10}, 503, "gateway full (10 connections)", {}),
    ],
    ids=["draining", "not-ready", "full"],
)
def test_a_gateway_that_cannot_take_a_client_says_why(
    state: dict[str, Any], status: int, text: str, headers: dict[str, str]
) -> None:
    refusal = decide("/ws/cam1", **state)
    assert isinstance(refusal, Refusal)
    assert (refusal.status, refusal.headers) == (status, headers)
    assert refusal.text.startswith(text)


def test_the_gateway_state_is_judged_before_the_request() -> None:
    """A draining gateway says so even to a bad request: the client retries elsewhere either way."""
    refusal = decide("/ws/bad name", draining=True, not_ready="draining")
    assert isinstance(refusal, Refusal) and refusal.status == 503


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("/ws/bad name", "stream"),
        ("/ws/cam1?since=1", "since needs epoch"),
        ("/ws/cam1?since=-1&epoch=e", "since: expected"),
        ("/ws/cam1?previews=maybe", "previews"),
        ("/ws/cam1?kinds=", "kinds"),
        ("/ws/cam1?kinds=event,preview", "unknown kind 'preview'"),
        ("/ws/cam1?max_rate=0", "max_rate"),
        ("/ws/cam1?max_rate=1e9", "max_rate"),
        ("/ws/cam1?max_rate=nan", "max_rate"),
        ("/ws/cam1?max_rate=%EF%BC%92", "max_rate"),  # a fullwidth 2
        ("/ws/cam1?event_since=3", "event_since needs event_epoch"),
        ("/ws/cam1?event_since=3.0&event_epoch=e", "event_since: expected"),
        ("/ws/cam1?event_since=" + "9" * 21 + "&event_epoch=e", "event_since: expected"),
    ],
)
def test_a_bad_path_or_query_is_a_400_that_says_what_is_wrong(path: str, needle: str) -> None:
    refusal = decide(path)
    assert isinstance(refusal, Refusal) and refusal.status == 400 and needle in refusal.text, refusal


def test_the_subscription_choices_of_the_query_are_taken_as_subscribe_takes_them() -> None:
    decided = decide("/ws/door?kinds=status,event&max_rate=2.5&event_since=17&event_epoch=9f3a")
    assert isinstance(decided, Handshake)
    assert decided.choices == Choices(
        kinds=("event", "status"), max_rate=2.5, event_since=17, event_epoch="9f3a"
    )
    plain = decide("/ws/door")
    assert isinstance(plain, Handshake) and plain.choices == Choices()


def test_video_and_the_subscription_choices_go_together() -> None:
    decided = decide("/ws/door?video=1&kinds=event&max_rate=2")
    assert isinstance(decided, Handshake)
    assert decided.video and decided.choices == Choices(kinds=("event",), max_rate=2.0)


def test_tokens_are_checked_only_when_the_gateway_requires_them() -> None:
    missing = decide("/ws/cam1", auth=LOCKED)
    assert isinstance(missing, Refusal) and missing.status == 401
    assert missing.headers == {"WWW-Authenticate": 'Bearer realm="framecast"'}
    expired = decide(f"/ws/cam1?token={token(streams='*', exp=time.time() - 60)}", auth=LOCKED)
    assert isinstance(expired, Refusal) and expired.status == 401
    other = decide(f"/ws/cam2?token={token(streams=['cam1'])}", auth=LOCKED)
    assert isinstance(other, Refusal) and other.status == 403 and "cam2" in other.text
    accepted = decide("/ws/cam1", auth=LOCKED, headers={"Authorization": f"Bearer {token(streams=['cam1'])}"})
    assert (
        isinstance(accepted, Handshake) and accepted.grant.allows("cam1") and not accepted.grant.allows("x")
    )
    # /ws names no stream yet: the token is checked, the streams at each subscribe.
    bare = decide(f"/ws?token={token(streams=['cam1'])}", auth=LOCKED)
    assert isinstance(bare, Handshake) and bare.stream is None


def test_websocket_paths_are_ws_and_below() -> None:
    assert is_websocket_path("/ws") and is_websocket_path("/ws/cam1?since=1")
    assert not is_websocket_path("/wsx") and not is_websocket_path("/healthz") and not is_websocket_path("/")


def test_plain_http_requests_are_allowed_the_streams_of_their_token() -> None:
    allows = streams_allowed(request(f"/streams?token={token(streams=['cam1'])}"), auth=LOCKED)
    assert allows("cam1") and not allows("cam2")
    with pytest.raises(AuthError):
        streams_allowed(request("/streams"), auth=LOCKED)
