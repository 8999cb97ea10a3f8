"""Admission, sans I/O: whether a WebSocket handshake is accepted, or the answer that refuses it.

:func:`admit` looks at the request (path, query, credentials) and the gateway's state
(draining, ready, how many connections it holds) and returns a :class:`Handshake` to accept,
or a :class:`Refusal`: the HTTP status, one line of text and the headers to answer with. In
order: shutting down (503), not ready (503 with ``Retry-After``, which nginx retries on the
next gateway), full (503), a bad path or query (400), a missing or bad token (401), a stream
the token does not allow (403).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.http11 import Request

from gateway.auth import OPEN_GRANT, Authenticator, AuthError
from gateway.handshake import BadRequest, Handshake, bearer, parse_choices, parse_query_token, parse_ws_path

__all__ = ["Refusal", "admit", "is_websocket_path", "streams_allowed"]


@dataclass(frozen=True)
class Refusal:
    """A handshake refused: answer it with this HTTP status, text and headers."""

    status: int
    text: str
    headers: dict[str, str] = field(default_factory=dict)


def is_websocket_path(path: str) -> bool:
    """Whether a request's path (with its query) is a WebSocket endpoint: ``/ws`` or ``/ws/<stream>``."""
    plain = urllib.parse.urlsplit(path).path
    return plain == "/ws" or plain.startswith("/ws/")


def admit(
    request: Request,
    *,
    draining: bool,
    not_ready: str | None,
    connections: int,
    max_connections: int,
    auth: Authenticator,
) -> Handshake | Refusal:
    """Accept a WebSocket handshake (what it asks for) or refuse it (how to answer).

    Args:
        request: The handshake request.
        draining: The gateway is shutting down.
        not_ready: Why the gateway is not ready (None: ready).
        connections: Connections open or accepted and not yet handled.
        max_connections: Connections above which handshakes are refused.
        auth: Checks the token, when the gateway requires one.
    """
    if draining:
        return Refusal(503, "gateway shutting down: retry (another gateway will take you)")
    if not_ready is not None:
        # nginx retries a 503 on the next gateway (proxy_next_upstream http_503).
        return Refusal(503, f"gateway not ready ({not_ready}): retry", {"Retry-After": "1"})
    if connections >= max_connections:
        return Refusal(503, f"gateway full ({max_connections} connections): retry later")
    try:
        stream, since, epoch, previews, video, token = parse_ws_path(request.path)
        choices = parse_choices(request.path)
    except BadRequest as exc:
        return Refusal(400, str(exc))
    grant = OPEN_GRANT
    if auth.enabled:
        try:
            grant = auth.verify(token or bearer(request))
        except AuthError as exc:
            return Refusal(401, str(exc), {"WWW-Authenticate": 'Bearer realm="framecast"'})
        if stream is not None and not grant.allows(stream):
            return Refusal(403, f"token does not allow stream {stream!r}")
    return Handshake(
        stream=stream, since=since, epoch=epoch, previews=previews, video=video, grant=grant, choices=choices
    )


def streams_allowed(request: Request, *, auth: Authenticator) -> Callable[[str], bool]:
    """Which streams a plain HTTP request's token (``?token=`` or ``Bearer``) allows.

    Raises:
        AuthError: No token, or a bad one.
    """
    token = parse_query_token(request.path) or bearer(request)
    return auth.verify(token).allows
