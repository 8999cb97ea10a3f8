"""What a WebSocket handshake asks for: the path, its query and the credentials.

``/ws`` or ``/ws/<stream>`` with ``since``, ``epoch``, ``previews``, ``video`` and ``token`` in
the query (or the token as ``Authorization: Bearer``), and the subscription's choices: ``kinds``,
``max_rate``, ``event_since`` and ``event_epoch``. Pure parsing: :class:`BadRequest` carries
the one-line reason a 400 answers with.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from websockets.http11 import Request

from framecast import wire
from framecast.exceptions import FramecastError
from gateway.auth import Grant

__all__ = [
    "BadRequest",
    "Choices",
    "Handshake",
    "bearer",
    "parse_choices",
    "parse_query_token",
    "parse_ws_path",
]

# A sequence number is a Redis stream id part: 64 bits, so at most 20 digits (int() of a huge digit
# string raises past 4300 digits, and a longer one is never a valid position anyway).
_DIGITS = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True)
class Choices:
    """What a ``/ws/<stream>`` subscription chose in its query (as in ``subscribe``)."""

    kinds: tuple[wire.Kind, ...] | None = None
    max_rate: float | None = None
    event_since: int | None = None
    event_epoch: str | None = None


NO_CHOICES = Choices()


@dataclass(frozen=True)
class Handshake:
    """What process_request learned about a connection, for its handler."""

    stream: str | None
    since: int | None
    epoch: str | None
    previews: bool
    grant: Grant
    choices: Choices = NO_CHOICES
    video: bool = False


class BadRequest(FramecastError, ValueError):
    """A handshake the gateway answers with 400 (the message says why)."""


def _flag(name: str, value: str | None) -> bool:
    if value is None:
        return False
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on", ""):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise BadRequest(f"{name}: expected 1 or 0, got {value!r}")


def parse_ws_path(path: str) -> tuple[str | None, int | None, str | None, bool, bool, str | None]:
    """``/ws`` or ``/ws/<stream>`` with its query: (stream, since, epoch, previews, video, token)."""
    parts = urllib.parse.urlsplit(path)
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)

    def one(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    stream: str | None = None
    if parts.path.startswith("/ws/"):
        name = urllib.parse.unquote(parts.path[len("/ws/") :])
        try:
            stream = wire.check_stream_name(name)
        except wire.WireError as exc:
            raise BadRequest(str(exc)) from None
    since, epoch = _position(one("since"), one("epoch"), "since", "epoch")
    previews, video = _flag("previews", one("previews")), _flag("video", one("video"))
    return stream, since, epoch or None, previews, video, one("token")


def _position(
    raw: str | None, epoch: str | None, name: str, epoch_name: str
) -> tuple[int | None, str | None]:
    if raw is None:
        return None, epoch or None
    # ASCII digits only: int() also takes fullwidth digits, signs, spaces and underscores.
    if not _DIGITS.fullmatch(raw):
        raise BadRequest(f"{name}: expected a whole number of 1-20 ASCII digits 0-9, got {raw[:40]!r}")
    value = int(raw)
    if value > wire.MAX_SEQ:
        raise BadRequest(f"{name}: {raw} is above the largest sequence number (2**64 - 1)")
    if not epoch:
        raise BadRequest(f"{name} needs {epoch_name} (the epoch the seq belongs to)")
    return value, epoch


def parse_choices(path: str) -> Choices:
    """The subscription's choices in a path's query: ``kinds``, ``max_rate``, ``event_since``/``event_epoch``.

    Raises:
        BadRequest: A value the ``subscribe`` operation would refuse too.
    """
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query, keep_blank_values=True)

    def one(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    if not any(name in query for name in ("kinds", "max_rate", "event_since", "event_epoch")):
        return NO_CHOICES  # the common case: nothing chosen
    kinds_raw, rate_raw = one("kinds"), one("max_rate")
    try:
        kinds = None if kinds_raw is None else wire.parse_kinds(kinds_raw)
        max_rate = None if rate_raw is None else wire.parse_max_rate(rate_raw)
    except wire.WireError as exc:
        raise BadRequest(str(exc)) from None
    event_since, event_epoch = _position(one("event_since"), one("event_epoch"), "event_since", "event_epoch")
    return Choices(kinds=kinds, max_rate=max_rate, event_since=event_since, event_epoch=event_epoch)


def parse_query_token(path: str) -> str | None:
    """The ``token`` query parameter of a path, if any."""
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("token")
    return values[-1] if values else None


def bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if any."""
    header = request.headers.get("Authorization")
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None
