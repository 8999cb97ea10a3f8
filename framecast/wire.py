"""The framecast wire format: the one place it is defined.

Every message a producer publishes, a gateway forwards and a client reads is
defined here; ``docs/protocol.md`` describes the same format for client
authors, and a test keeps the two in step.

Three families of message exist:

* **Stream messages**, published by a producer on Redis and forwarded by the
  gateways byte for byte: :class:`Result` (one per processed frame),
  :class:`Status` (a heartbeat, at least once per second) and :class:`Preview`
  (an annotated JPEG, binary, only to clients that ask for it).
* **Gateway replies**, sent by a gateway to one client: :class:`Hello`,
  :class:`Subscribed`, :class:`Unsubscribed`, :class:`Reset`, :class:`Gap`
  and :class:`Error`.
* **Client operations**, sent by a client to a gateway: :class:`Subscribe`
  and :class:`Unsubscribe`.

Text messages are UTF-8 JSON objects with a ``type`` field; stream messages
also carry ``v``, the format version. Decoding never trusts its input:
anything malformed raises :class:`WireError` naming the offending field.

This module imports neither OpenCV nor numpy: the gateway ships without them.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

__all__ = [
    "CLOSE_BAD_REQUEST",
    "CLOSE_GOING_AWAY",
    "CLOSE_SLOW_CONSUMER",
    "CLOSE_TOKEN_EXPIRED",
    "CLOSE_TRY_AGAIN_LATER",
    "HISTORY_FIELD",
    "KEY_PREFIX",
    "STATUS_KEY_PATTERN",
    "STREAM_NAME_PATTERN",
    "VERSION",
    "ClientOp",
    "Detection",
    "Error",
    "Gap",
    "Hello",
    "Preview",
    "Reset",
    "Result",
    "Status",
    "StreamMessage",
    "Subscribe",
    "Subscribed",
    "Unsubscribe",
    "Unsubscribed",
    "WireError",
    "canary_channel",
    "channel",
    "check_stream_name",
    "decode",
    "decode_op",
    "decode_preview",
    "encode",
    "encode_preview",
    "history_key",
    "is_preview",
    "peek",
    "preview_channel",
    "status_key",
    "stream_of_status_key",
]

VERSION = 1
"""Format version carried in every stream message as ``v``.

A reader accepts messages whose ``v`` it knows; unknown *fields* are ignored
so that minor additions never break old clients.
"""

KEY_PREFIX = "framecast:"
HISTORY_FIELD = "m"
"""The one field of every :func:`history_key` entry: the encoded :class:`Result`.

Redis hands field names back as bytes: read an entry with ``fields[HISTORY_FIELD.encode()]``.
"""
STREAM_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_STREAM_NAME = re.compile(STREAM_NAME_PATTERN)

# WebSocket close codes a gateway uses, beyond RFC 6455's own (1001 going
# away, 1007 invalid UTF-8, 1008 policy violation, 1009 message too big).
CLOSE_GOING_AWAY = 1001
"""The gateway is shutting down: reconnect, the load balancer picks another."""
CLOSE_BAD_REQUEST = 1008
"""Repeated malformed or unknown control messages."""
CLOSE_TRY_AGAIN_LATER = 1013
"""The gateway lost Redis for too long: reconnect (the load balancer picks a ready one), resume with since."""
CLOSE_TOKEN_EXPIRED = 4001
"""The connection's token expired: get a new one and reconnect."""
CLOSE_SLOW_CONSUMER = 4008
"""The client did not read for longer than the gateway's ``--max-lag``."""


class WireError(ValueError):
    """A message that does not follow the wire format.

    The text names the field that is wrong and why, so the log line that
    reports a bad message is enough to find the culprit.
    """


def check_stream_name(name: str) -> str:
    """Return ``name`` if it is a valid stream name, else raise WireError.

    Stream names become Redis keys and URL path segments, so they are limited
    to 1-64 characters of ``A-Z a-z 0-9 _ . -``, starting with a letter or digit.
    """
    if not isinstance(name, str) or not _STREAM_NAME.fullmatch(name):
        raise WireError(
            f"stream: {name!r} is not a valid stream name "
            f"(1-64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit)"
        )
    return name


def _tagged(stream: str) -> str:
    """``framecast:{<stream>}``: the braces are a Redis Cluster hash tag.

    Every name of one stream hashes to the same slot, so the producer's ``MULTI`` (history
    ``XADD`` + channel ``(S)PUBLISH``) is legal on a Redis Cluster, and sharded pub/sub spreads
    streams across shards. A standalone server ignores the braces.
    """
    return f"{KEY_PREFIX}{{{stream}}}"


def channel(stream: str) -> str:
    """Redis pub/sub channel carrying a stream's results and heartbeats: ``framecast:{<stream>}``."""
    return _tagged(stream)


def preview_channel(stream: str) -> str:
    """Redis pub/sub channel carrying a stream's binary preview frames: ``framecast:{<stream>}:preview``."""
    return f"{_tagged(stream)}:preview"


def history_key(stream: str) -> str:
    """Redis Stream holding a stream's recent results, newest last: ``framecast:{<stream>}:history``.

    Entry IDs are ``<epoch start ms>-<seq>``, so a replay from ``seq`` within
    an epoch is one ``XRANGE`` and the newest entry is the latest result.
    Each entry has one field, :data:`HISTORY_FIELD` (``m``), holding the encoded :class:`Result`.
    """
    return f"{_tagged(stream)}:history"


def canary_channel(gateway_id: str, shard: int | None = None) -> str:
    """Redis pub/sub channel a gateway publishes its liveness canary on and reads it back from.

    ``framecast:{__canary__:<id>}``, or ``framecast:{__canary__:<shard>:<id>}`` with ``shard``:
    a number that moves the channel to another hash slot, so that a gateway on a Redis Cluster
    can find one canary channel per shard. The ``__canary__`` segment cannot be a stream name,
    so no stream's channels collide with it.
    """
    inner = f"__canary__:{gateway_id}" if shard is None else f"__canary__:{shard}:{gateway_id}"
    return f"{KEY_PREFIX}{{{inner}}}"


def status_key(stream: str) -> str:
    """Redis string holding a stream's latest :class:`Status`, with a TTL of a few seconds.

    ``framecast:{<stream>}:status``. The producer refreshes it with every heartbeat, so the keys
    that exist are the live streams (a gateway's ``/streams`` lists them).
    """
    return f"{_tagged(stream)}:status"


STATUS_KEY_PATTERN = f"{KEY_PREFIX}{{*}}:status"
"""``SCAN MATCH`` pattern of every :func:`status_key` (check each hit with :func:`stream_of_status_key`)."""


def stream_of_status_key(key: str) -> str | None:
    """The stream name in a :func:`status_key`, or None if ``key`` is not one."""
    head, tail = f"{KEY_PREFIX}{{", "}:status"
    if key.startswith(head) and key.endswith(tail):
        name = key[len(head) : -len(tail)]
        if _STREAM_NAME.fullmatch(name):
            return name
    return None


# --------------------------------------------------------------------------
# Stream messages (producer -> Redis -> gateway -> client, unchanged)


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object.

    Attributes:
        label: What was found (a class name, or the text a QR code holds).
        confidence: 0.0 to 1.0.
        box: ``(x1, y1, x2, y2)`` in pixels of the source frame, with
            ``0 <= x1 <= x2 <= width`` and ``0 <= y1 <= y2 <= height``.
    """

    label: str
    confidence: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Result:
    """The predictions for one processed frame.

    Attributes:
        stream: Stream name.
        epoch: Random id of the producer run; ``seq`` restarts with each epoch.
        seq: Strictly increasing from 1 within an epoch, one per result.
            A gap in ``seq`` means results were lost on the way.
        frame: Index of the source frame (frames that were skipped to stay
            real-time leave gaps here; that is expected, unlike gaps in seq).
        captured_at: Unix time (seconds) the frame was captured.
        published_at: Unix time (seconds) the result was published.
        width: Frame width in pixels.
        height: Frame height in pixels.
        detections: What the predictor found, possibly nothing.
    """

    stream: str
    epoch: str
    seq: int
    frame: int
    captured_at: float
    published_at: float
    width: int
    height: int
    detections: tuple[Detection, ...] = ()
    type: Literal["result"] = field(default="result", init=False)


StreamState = Literal["online", "offline"]


@dataclass(frozen=True, slots=True)
class Status:
    """A producer heartbeat: sent at least once per second, detections or not.

    Clients and gateways tell "quiet" (heartbeats, no detections) from "dead"
    (no heartbeat) with it.

    Attributes:
        stream: Stream name.
        epoch: Producer run id (as in :class:`Result`).
        seq: ``seq`` of the last result published in this epoch (0 if none):
            a client that has a smaller one knows it missed results.
        sent_at: Unix time the heartbeat was sent.
        state: ``"online"`` while the source delivers frames, ``"offline"``
            while the producer is reopening it.
        reconnects: Times the source was reopened in this epoch.
        capture_fps: Frames captured per second (recent average).
        process_fps: Frames processed per second (recent average).
        skipped: Frames dropped to stay real-time, in this epoch.
        active: False while the predictor is paused for lack of viewers.
        source: A short, credential-free description of the source.
    """

    stream: str
    epoch: str
    seq: int
    sent_at: float
    state: StreamState = "online"
    reconnects: int = 0
    capture_fps: float = 0.0
    process_fps: float = 0.0
    skipped: int = 0
    active: bool = True
    source: str = ""
    type: Literal["status"] = field(default="status", init=False)


@dataclass(frozen=True, slots=True)
class Preview:
    """An annotated JPEG of a processed frame (sent as a binary message).

    Attributes:
        stream: Stream name.
        epoch: Producer run id.
        seq: ``seq`` of the :class:`Result` this picture shows.
        frame: Source frame index.
        captured_at: Unix time the frame was captured.
        width: JPEG width in pixels (may be smaller than the source frame:
            scale the result's boxes by ``width / result.width``).
        height: JPEG height in pixels.
        jpeg: The JPEG bytes.
    """

    stream: str
    epoch: str
    seq: int
    frame: int
    captured_at: float
    width: int
    height: int
    jpeg: bytes
    type: Literal["preview"] = field(default="preview", init=False)


StreamMessage: TypeAlias = Result | Status


# --------------------------------------------------------------------------
# Gateway replies (gateway -> one client)


@dataclass(frozen=True, slots=True)
class Hello:
    """First message on every connection: who serves it and which protocol.

    Attributes:
        gateway: Id of the gateway process serving this connection.
        v: Format version the gateway speaks.
    """

    gateway: str
    v: int = VERSION
    type: Literal["hello"] = field(default="hello", init=False)


@dataclass(frozen=True, slots=True)
class Subscribed:
    """A subscription is in place; stream messages follow.

    Attributes:
        stream: Stream name.
        previews: Whether binary previews were asked for and will be sent.
    """

    stream: str
    previews: bool = False
    type: Literal["subscribed"] = field(default="subscribed", init=False)


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """A subscription ended; no more messages for ``stream`` follow."""

    stream: str
    type: Literal["unsubscribed"] = field(default="unsubscribed", init=False)


@dataclass(frozen=True, slots=True)
class Reset:
    """A replay could not be served in full: history is not contiguous.

    Sent instead of replayed messages when the history no longer reaches back
    to ``since``, or the producer restarted (new epoch). The latest result
    follows, then live messages: the client should drop what it derived from
    the old sequence.

    Attributes:
        stream: Stream name.
        reason: ``"history-expired"``, ``"epoch-changed"``, ``"no-history"`` or
            ``"history-unavailable"`` (Redis could not be read).
    """

    stream: str
    reason: str
    type: Literal["reset"] = field(default="reset", init=False)


@dataclass(frozen=True, slots=True)
class Gap:
    """The gateway lost its Redis link: messages may have been missed.

    Sent to every client of the stream once the link is back. Clients that
    need every result reconnect or resubscribe with ``since``.
    """

    stream: str
    reason: str = "redis-reconnected"
    type: Literal["gap"] = field(default="gap", init=False)


@dataclass(frozen=True, slots=True)
class Error:
    """A request was refused; the connection stays open unless told otherwise.

    Attributes:
        code: Machine-readable: ``"bad-message"``, ``"unknown-op"``,
            ``"bad-stream"``, ``"forbidden"``, ``"too-many-streams"``.
        message: Human-readable explanation.
        stream: The stream concerned, if any.
    """

    code: str
    message: str
    stream: str | None = None
    type: Literal["error"] = field(default="error", init=False)


# --------------------------------------------------------------------------
# Client operations (client -> gateway)


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Ask for a stream's messages.

    Attributes:
        stream: Stream name.
        since: Last ``seq`` the client has; the gateway replays what came
            after it (within ``epoch``) before going live.
        epoch: The epoch ``since`` belongs to; required with ``since``.
        previews: Also send binary :class:`Preview` frames.
    """

    stream: str
    since: int | None = None
    epoch: str | None = None
    previews: bool = False
    op: Literal["subscribe"] = field(default="subscribe", init=False)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Stop a stream's messages."""

    stream: str
    op: Literal["unsubscribe"] = field(default="unsubscribe", init=False)


ClientOp: TypeAlias = Subscribe | Unsubscribe
GatewayReply: TypeAlias = Hello | Subscribed | Unsubscribed | Reset | Gap | Error
TextMessage: TypeAlias = Result | Status | Hello | Subscribed | Unsubscribed | Reset | Gap | Error


# --------------------------------------------------------------------------
# Encoding


def _as_dict(message: TextMessage | ClientOp) -> dict[str, Any]:
    if isinstance(message, Result):
        return {
            "v": VERSION,
            "type": "result",
            "stream": message.stream,
            "epoch": message.epoch,
            "seq": message.seq,
            "frame": message.frame,
            "captured_at": message.captured_at,
            "published_at": message.published_at,
            "width": message.width,
            "height": message.height,
            "detections": [
                {
                    "label": d.label,
                    "confidence": round(d.confidence, 4),
                    "box": [round(c, 1) for c in d.box],
                }
                for d in message.detections
            ],
        }
    out: dict[str, Any] = {"v": VERSION} if isinstance(message, Status) else {}
    kind = "op" if isinstance(message, Subscribe | Unsubscribe) else "type"
    out[kind] = getattr(message, kind)
    for name in message.__slots__:
        value = getattr(message, name)
        if value is not None and name != kind:
            out[name] = value
    return out


def encode(message: TextMessage | ClientOp) -> bytes:
    """Encode a text message as compact UTF-8 JSON.

    Args:
        message: Any text message or client operation.

    Returns:
        The bytes to publish or send as a WebSocket text frame.
    """
    return json.dumps(_as_dict(message), separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


_PREVIEW_MAGIC = b"FCP1"
_PREVIEW_HEADER = struct.Struct(">4sI")


def encode_preview(preview: Preview) -> bytes:
    """Encode a preview as ``b"FCP1" + uint32 header length + JSON header + JPEG``."""
    header = json.dumps(
        {
            "v": VERSION,
            "type": "preview",
            "stream": preview.stream,
            "epoch": preview.epoch,
            "seq": preview.seq,
            "frame": preview.frame,
            "captured_at": preview.captured_at,
            "width": preview.width,
            "height": preview.height,
        },
        separators=(",", ":"),
    ).encode()
    return _PREVIEW_HEADER.pack(_PREVIEW_MAGIC, len(header)) + header + preview.jpeg


# --------------------------------------------------------------------------
# Decoding


def _load(data: bytes | str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"not UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise WireError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _str(obj: dict[str, Any], key: str, *, optional: bool = False) -> Any:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise WireError(f"{key}: expected a string, got {value!r}")
    return value


def _int(obj: dict[str, Any], key: str, *, minimum: int = 0, optional: bool = False) -> Any:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise WireError(f"{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def _float(obj: dict[str, Any], key: str, *, default: float | None = None) -> float:
    value = obj.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise WireError(f"{key}: expected a finite number, got {value!r}")
    return float(value)


def _bool(obj: dict[str, Any], key: str, default: bool) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise WireError(f"{key}: expected true or false, got {value!r}")
    return value


def _version(obj: dict[str, Any]) -> None:
    if obj.get("v") != VERSION:
        raise WireError(f"v: unsupported format version {obj.get('v')!r} (this reader knows {VERSION})")


def _detection(raw: Any, index: int, width: int, height: int) -> Detection:
    where = f"detections[{index}]"
    if not isinstance(raw, dict):
        raise WireError(f"{where}: expected an object, got {raw!r}")
    label = raw.get("label")
    if not isinstance(label, str):
        raise WireError(f"{where}.label: expected a string, got {label!r}")
    confidence = _float(raw, "confidence")
    if not 0.0 <= confidence <= 1.0:
        raise WireError(f"{where}.confidence: {confidence} is outside 0..1")
    box = raw.get("box")
    if (
        not isinstance(box, list)
        or len(box) != 4
        or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in box)
    ):
        raise WireError(f"{where}.box: expected [x1, y1, x2, y2] numbers, got {box!r}")
    x1, y1, x2, y2 = (float(c) for c in box)
    if not (0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height):
        raise WireError(f"{where}.box: {box} is not inside the {width}x{height} frame")
    return Detection(label, confidence, (x1, y1, x2, y2))


def _result(obj: dict[str, Any]) -> Result:
    _version(obj)
    width = _int(obj, "width", minimum=1)
    height = _int(obj, "height", minimum=1)
    raw = obj.get("detections")
    if not isinstance(raw, list):
        raise WireError(f"detections: expected a list, got {raw!r}")
    return Result(
        stream=check_stream_name(_str(obj, "stream")),
        epoch=_str(obj, "epoch"),
        seq=_int(obj, "seq", minimum=1),
        frame=_int(obj, "frame"),
        captured_at=_float(obj, "captured_at"),
        published_at=_float(obj, "published_at"),
        width=width,
        height=height,
        detections=tuple(_detection(d, i, width, height) for i, d in enumerate(raw)),
    )


def _status(obj: dict[str, Any]) -> Status:
    _version(obj)
    state = obj.get("state", "online")
    if state not in ("online", "offline"):
        raise WireError(f"state: expected 'online' or 'offline', got {state!r}")
    return Status(
        stream=check_stream_name(_str(obj, "stream")),
        epoch=_str(obj, "epoch"),
        seq=_int(obj, "seq"),
        sent_at=_float(obj, "sent_at"),
        state=state,
        reconnects=_int(obj, "reconnects", optional=True) or 0,
        capture_fps=_float(obj, "capture_fps", default=0.0),
        process_fps=_float(obj, "process_fps", default=0.0),
        skipped=_int(obj, "skipped", optional=True) or 0,
        active=_bool(obj, "active", True),
        source=_str(obj, "source", optional=True) or "",
    )


def decode(data: bytes | str) -> TextMessage:
    """Decode any text message a client may receive.

    Args:
        data: The UTF-8 JSON text (bytes or str).

    Returns:
        The typed message.

    Raises:
        WireError: The message is malformed; the text names the field.
    """
    obj = _load(data)
    kind = obj.get("type")
    if kind == "result":
        return _result(obj)
    if kind == "status":
        return _status(obj)
    if kind == "hello":
        return Hello(gateway=_str(obj, "gateway"), v=_int(obj, "v"))
    if kind == "subscribed":
        return Subscribed(stream=_str(obj, "stream"), previews=_bool(obj, "previews", False))
    if kind == "unsubscribed":
        return Unsubscribed(stream=_str(obj, "stream"))
    if kind == "reset":
        return Reset(stream=_str(obj, "stream"), reason=_str(obj, "reason"))
    if kind == "gap":
        return Gap(stream=_str(obj, "stream"), reason=_str(obj, "reason"))
    if kind == "error":
        return Error(
            code=_str(obj, "code"),
            message=_str(obj, "message"),
            stream=_str(obj, "stream", optional=True),
        )
    raise WireError(f"type: unknown message type {kind!r}")


def decode_op(data: bytes | str) -> ClientOp:
    """Decode a client operation (what a gateway receives).

    Raises:
        WireError: Malformed, unknown ``op``, or an invalid stream name.
    """
    obj = _load(data)
    op = obj.get("op")
    if op == "subscribe":
        since = _int(obj, "since", optional=True)
        epoch = _str(obj, "epoch", optional=True)
        return Subscribe(
            stream=check_stream_name(_str(obj, "stream")),
            since=since,
            epoch=epoch,
            previews=_bool(obj, "previews", False),
        )
    if op == "unsubscribe":
        return Unsubscribe(stream=check_stream_name(_str(obj, "stream")))
    raise WireError(f"op: unknown operation {op!r} (expected 'subscribe' or 'unsubscribe')")


def is_preview(data: bytes) -> bool:
    """Whether ``data`` is a binary preview frame (it starts with the preview magic).

    Cheap: only the magic is checked; :func:`decode_preview` validates the rest.
    """
    return data[: len(_PREVIEW_MAGIC)] == _PREVIEW_MAGIC


def decode_preview(data: bytes) -> Preview:
    """Decode a binary preview frame.

    Raises:
        WireError: Not a framecast preview or a malformed header.
    """
    if len(data) < _PREVIEW_HEADER.size:
        raise WireError("preview: shorter than its header")
    magic, size = _PREVIEW_HEADER.unpack_from(data)
    if magic != _PREVIEW_MAGIC:
        raise WireError(f"preview: bad magic {magic!r}")
    start = _PREVIEW_HEADER.size
    obj = _load(data[start : start + size])
    _version(obj)
    return Preview(
        stream=check_stream_name(_str(obj, "stream")),
        epoch=_str(obj, "epoch"),
        seq=_int(obj, "seq"),
        frame=_int(obj, "frame"),
        captured_at=_float(obj, "captured_at"),
        width=_int(obj, "width", minimum=1),
        height=_int(obj, "height", minimum=1),
        jpeg=bytes(data[start + size :]),
    )


@dataclass(frozen=True, slots=True)
class Peek:
    """What a gateway reads of a stream message to route it, without a full decode.

    Attributes:
        type: ``"result"`` or ``"status"``.
        epoch: Producer run id.
        seq: Result sequence number (for status: last result's).
        captured_at: Capture time for results; ``sent_at`` for status.
        state: For status messages, ``"online"`` or ``"offline"``.
    """

    type: str
    epoch: str
    seq: int
    captured_at: float
    state: str | None = None


def peek(data: bytes) -> Peek:
    """Read the routing fields of a stream message (one JSON parse, no validation of detections).

    Raises:
        WireError: Not a result or status message of this version.
    """
    obj = _load(data)
    kind = obj.get("type")
    _version(obj)
    if kind == "result":
        return Peek("result", _str(obj, "epoch"), _int(obj, "seq", minimum=1), _float(obj, "captured_at"))
    if kind == "status":
        return Peek(
            "status",
            _str(obj, "epoch"),
            _int(obj, "seq"),
            _float(obj, "sent_at"),
            state=_str(obj, "state", optional=True) or "online",
        )
    raise WireError(f"type: {kind!r} is not a stream message")
