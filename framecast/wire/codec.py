"""Encoding and decoding of the wire format: bytes to typed messages and back.

Decoding never trusts its input: anything malformed raises :class:`WireError`
naming the offending field, with the protocol error code in ``.code``.
"""

from __future__ import annotations

import json
import math
import re
import struct
from typing import Any

from framecast.exceptions import WireError
from framecast.wire.keys import STREAM_NAME_PATTERN, check_stream_name
from framecast.wire.messages import (
    KINDS,
    MAX_RATE,
    MAX_SEQ,
    VERSION,
    ClientOp,
    Detection,
    Error,
    Event,
    Gap,
    Hello,
    Kind,
    Peek,
    Preview,
    Reset,
    Result,
    Status,
    Subscribe,
    Subscribed,
    TextMessage,
    Unsubscribe,
    Unsubscribed,
)

__all__ = [
    "decode",
    "decode_op",
    "decode_preview",
    "encode",
    "encode_preview",
    "is_preview",
    "parse_kinds",
    "parse_max_rate",
    "peek",
]

_NAME = re.compile(STREAM_NAME_PATTERN)
_EVENT_KINDS = ("enter", "leave", "cross")
_DIRECTIONS = ("in", "out")


def _detection_dict(d: Detection) -> dict[str, Any]:
    out: dict[str, Any] = {
        "label": d.label,
        "confidence": round(d.confidence, 4),
        "box": [round(c, 1) for c in d.box],
    }
    if d.track is not None:
        out["track"] = d.track
    return out


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
            "detections": [_detection_dict(d) for d in message.detections],
            **({"occupancy": dict(message.occupancy)} if message.occupancy is not None else {}),
            **(
                {"crossings": {name: {"in": i, "out": o} for name, (i, o) in message.crossings.items()}}
                if message.crossings is not None
                else {}
            ),
        }
    out: dict[str, Any] = {"v": VERSION} if isinstance(message, Status | Event) else {}
    if isinstance(message, Status):
        out.update((name, value) for name, value in _status_fields(message))
        return out
    kind = "op" if isinstance(message, Subscribe | Unsubscribe) else "type"
    out[kind] = getattr(message, kind)
    for name in message.__slots__:
        value = getattr(message, name)
        # `video` (a later addition) only when set: without it a message is byte for byte as before.
        if value is not None and name != kind and not (name == "video" and not value):
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def _status_fields(status: Status) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [("type", "status")]
    for name in status.__slots__:
        value = getattr(status, name)
        if name == "type" or value is None or (name == "video" and not value):
            continue
        if name in ("zones", "lines"):
            value = {key: [list(p) for p in points] for key, points in value.items()}
        out.append((name, value))
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
    except ValueError as exc:
        # JSONDecodeError and UnicodeDecodeError, and int()'s digit limit (over 4300 digits).
        raise WireError(f"not UTF-8 JSON: {str(exc)[:200]}") from None
    except RecursionError:
        # A few thousand "[" fit in any message-size limit and exhaust the parser's stack.
        raise WireError("not UTF-8 JSON: nested too deeply") from None
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
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= MAX_SEQ:
        raise WireError(f"{key}: expected an integer from {minimum} to 2**64 - 1, got {repr(value)[:40]}")
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


def _name(obj: dict[str, Any], key: str) -> str:
    value = _str(obj, key)
    if not _NAME.fullmatch(value):
        raise WireError(f"{key}: {value[:70]!r} is not a valid name (1-64 of A-Z a-z 0-9 _ . -)")
    return str(value)


def _track(raw: dict[str, Any], where: str) -> int | None:
    value = raw.get("track")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SEQ:
        raise WireError(f"{where}track: expected an integer from 1 to 2**64 - 1, got {repr(value)[:40]}")
    return value


def _occupancy(obj: dict[str, Any]) -> dict[str, int] | None:
    raw = obj.get("occupancy")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise WireError(f"occupancy: expected an object of zone counts, got {repr(raw)[:60]}")
    return {_name({"zone": k}, "zone"): _int(raw, k) for k in raw}


def _crossings(obj: dict[str, Any]) -> dict[str, tuple[int, int]] | None:
    raw = obj.get("crossings")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise WireError(f"crossings: expected an object of line counts, got {repr(raw)[:60]}")
    out: dict[str, tuple[int, int]] = {}
    for name, counts in raw.items():
        _name({"line": name}, "line")
        if not isinstance(counts, dict):
            raise WireError(f'crossings.{name}: expected {{"in": N, "out": N}}, got {repr(counts)[:60]}')
        out[name] = (_int(counts, "in"), _int(counts, "out"))
    return out


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
    return Detection(label=label, confidence=confidence, box=(x1, y1, x2, y2), track=_track(raw, f"{where}."))


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
        occupancy=_occupancy(obj),
        crossings=_crossings(obj),
    )


def _event(obj: dict[str, Any]) -> Event:
    _version(obj)
    kind = obj.get("kind")
    if kind not in _EVENT_KINDS:
        raise WireError(f"kind: expected 'enter', 'leave' or 'cross', got {repr(kind)[:40]}")
    zone = line = direction = None
    lost = dwell = None
    if kind == "cross":
        line = _name(obj, "line")
        direction = obj.get("direction")
        if direction not in _DIRECTIONS:
            raise WireError(f"direction: expected 'in' or 'out', got {repr(direction)[:40]}")
    else:
        zone = _name(obj, "zone")
    if kind == "leave":
        lost = _bool(obj, "lost", False)
        dwell = _float(obj, "dwell", default=0.0)
    track = _track(obj, "")
    if track is None:
        raise WireError("track: expected an integer from 1 to 2**64 - 1, got None")
    return Event(
        stream=check_stream_name(_str(obj, "stream")),
        epoch=_str(obj, "epoch"),
        seq=_int(obj, "seq", minimum=1),
        kind=kind,
        track=track,
        label=_str(obj, "label"),
        frame=_int(obj, "frame"),
        captured_at=_float(obj, "captured_at"),
        published_at=_float(obj, "published_at"),
        zone=zone,
        line=line,
        direction=direction,
        lost=lost,
        dwell=dwell,
    )


def _status(obj: dict[str, Any]) -> Status:
    _version(obj)
    state = obj.get("state", "online")
    if state not in ("online", "offline"):
        raise WireError(f"state: expected 'online' or 'offline', got {state!r}")
    predictor = obj.get("predictor")
    if predictor not in (None, "ready", "down"):
        raise WireError(f"predictor: expected 'ready' or 'down', got {predictor!r}")
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
        event_seq=_int(obj, "event_seq", optional=True) or 0,
        zones=_shapes(obj, "zones", minimum=3),
        lines=_shapes(obj, "lines", minimum=2, maximum=2),  # type: ignore[arg-type]
        video=_str(obj, "video", optional=True) or "",
        predictor=predictor,
        predictor_restarts=_int(obj, "predictor_restarts", optional=True),
    )


def _shapes(
    obj: dict[str, Any], key: str, *, minimum: int, maximum: int | None = None
) -> dict[str, tuple[tuple[float, float], ...]] | None:
    """A status's ``zones`` or ``lines``: ``{name: [[x, y], ...]}``."""
    raw = obj.get(key)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise WireError(f"{key}: expected an object of named point lists, got {repr(raw)[:60]}")
    out: dict[str, tuple[tuple[float, float], ...]] = {}
    for name, points in raw.items():
        _name({key: name}, key)
        if (
            not isinstance(points, list)
            or not minimum <= len(points) <= (maximum or len(points))
            or not all(
                isinstance(p, list)
                and len(p) == 2
                and all(
                    isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c) for c in p
                )
                for p in points
            )
        ):
            raise WireError(f"{key}.{name}: expected a list of [x, y] points, got {repr(points)[:60]}")
        out[name] = tuple((float(x), float(y)) for x, y in points)
    return out


def parse_kinds(value: Any, *, key: str = "kinds") -> tuple[Kind, ...]:
    """The kinds a subscriber asked for: a list, or a comma-separated string (a query string).

    Returns:
        The kinds in :data:`KINDS` order, each once.

    Raises:
        WireError: Not a non-empty list of known kinds (``bad-message``).
    """
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise WireError(f"{key}: expected a non-empty list of {', '.join(KINDS)}, got {repr(value)[:60]}")
    wanted = set()
    for item in items:
        if not isinstance(item, str) or item.strip() not in KINDS:
            raise WireError(f"{key}: unknown kind {repr(item)[:40]} (expected {', '.join(KINDS)})")
        wanted.add(item.strip())
    return tuple(k for k in KINDS if k in wanted)


def parse_max_rate(value: Any, *, key: str = "max_rate") -> float:
    """A subscriber's cap on results per second: a number, or its text (a query string).

    Raises:
        WireError: Not a finite number above 0 and at most :data:`MAX_RATE` (``bad-message``).
    """
    if isinstance(value, str):
        try:
            value = float(value) if value.strip() and value.isascii() else None
        except ValueError:
            value = None
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0 < value <= MAX_RATE
    ):
        raise WireError(f"{key}: expected a number above 0 and at most {MAX_RATE:g} (results per second)")
    return float(value)


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
    if kind == "event":
        return _event(obj)
    if kind == "status":
        return _status(obj)
    if kind == "hello":
        return Hello(gateway=_str(obj, "gateway"), v=_int(obj, "v"))
    if kind == "subscribed":
        kinds = obj.get("kinds")
        rate = obj.get("max_rate")
        return Subscribed(
            stream=_str(obj, "stream"),
            previews=_bool(obj, "previews", False),
            kinds=None if kinds is None else parse_kinds(kinds),
            max_rate=None if rate is None else parse_max_rate(rate),
            video=_bool(obj, "video", False),
        )
    if kind == "unsubscribed":
        return Unsubscribed(stream=_str(obj, "stream"))
    if kind == "reset":
        of = obj.get("kind")
        if of not in (None, "event"):
            raise WireError(f"kind: expected 'event' or nothing, got {repr(of)[:40]}")
        return Reset(stream=_str(obj, "stream"), reason=_str(obj, "reason"), kind=of)
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
        WireError: Malformed or no ``op`` (``.code`` ``"bad-message"``), an unknown ``op``
            (``"unknown-op"``), or an invalid stream name (``"bad-stream"``).
    """
    obj = _load(data)
    op = obj.get("op")
    if op is None:
        # Not worded "op: ...": gateways that classify by message prefix would call it unknown-op.
        raise WireError("missing field op (expected 'subscribe' or 'unsubscribe')")
    if op == "subscribe":
        since = _int(obj, "since", optional=True)
        epoch = _str(obj, "epoch", optional=True)
        event_since = _int(obj, "event_since", optional=True)
        event_epoch = _str(obj, "event_epoch", optional=True)
        if event_since is not None and event_epoch is None:
            raise WireError("event_epoch: required with event_since (the epoch that event seq belongs to)")
        kinds = obj.get("kinds")
        rate = obj.get("max_rate")
        # Text is the query string's spelling; in JSON they are a number and a list.
        if isinstance(rate, str):
            raise WireError(f"max_rate: expected a number, got {rate[:40]!r}")
        if isinstance(kinds, str):
            raise WireError(f"kinds: expected a list of kinds, got {kinds[:40]!r}")
        return Subscribe(
            stream=check_stream_name(_str(obj, "stream")),
            since=since,
            epoch=epoch,
            previews=_bool(obj, "previews", False),
            kinds=None if kinds is None else parse_kinds(kinds),
            max_rate=None if rate is None else parse_max_rate(rate),
            event_since=event_since,
            event_epoch=event_epoch,
            video=_bool(obj, "video", False),
        )
    if op == "unsubscribe":
        return Unsubscribe(stream=check_stream_name(_str(obj, "stream")))
    raise WireError(
        f"op: unknown operation {op!r} (expected 'subscribe' or 'unsubscribe')", code="unknown-op"
    )


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


def peek(data: bytes) -> Peek:
    """Read the routing fields of a stream message (one JSON parse, no validation of detections).

    Raises:
        WireError: Not a result or status message of this version.
    """
    obj = _load(data)
    kind = obj.get("type")
    _version(obj)
    if kind == "result":
        return Peek(
            type="result",
            epoch=_str(obj, "epoch"),
            seq=_int(obj, "seq", minimum=1),
            captured_at=_float(obj, "captured_at"),
        )
    if kind == "event":
        return Peek(
            type="event",
            epoch=_str(obj, "epoch"),
            seq=_int(obj, "seq", minimum=1),
            captured_at=_float(obj, "captured_at"),
        )
    if kind == "status":
        return Peek(
            type="status",
            epoch=_str(obj, "epoch"),
            seq=_int(obj, "seq"),
            captured_at=_float(obj, "sent_at"),
            state=_str(obj, "state", optional=True) or "online",
        )
    raise WireError(f"type: {kind!r} is not a stream message")
