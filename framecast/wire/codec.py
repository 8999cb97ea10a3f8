"""Encoding and decoding of the wire format: bytes to typed messages and back.

Decoding never trusts its input: anything malformed raises :class:`WireError`
naming the offending field, with the protocol error code in ``.code``.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

from framecast.exceptions import WireError
from framecast.wire.keys import check_stream_name
from framecast.wire.messages import (
    MAX_SEQ,
    VERSION,
    ClientOp,
    Detection,
    Error,
    Gap,
    Hello,
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

__all__ = ["decode", "decode_op", "decode_preview", "encode", "encode_preview", "is_preview", "peek"]


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
        # `video` (a later addition) only when set: without it a message is byte for byte as before.
        if value is not None and name != kind and not (name == "video" and not value):
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
    return Detection(label=label, confidence=confidence, box=(x1, y1, x2, y2))


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
        video=_str(obj, "video", optional=True) or "",
        predictor=predictor,
        predictor_restarts=_int(obj, "predictor_restarts", optional=True),
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
        return Subscribed(
            stream=_str(obj, "stream"),
            previews=_bool(obj, "previews", False),
            video=_bool(obj, "video", False),
        )
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
        return Subscribe(
            stream=check_stream_name(_str(obj, "stream")),
            since=since,
            epoch=epoch,
            previews=_bool(obj, "previews", False),
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
    if kind == "status":
        return Peek(
            type="status",
            epoch=_str(obj, "epoch"),
            seq=_int(obj, "seq"),
            captured_at=_float(obj, "sent_at"),
            state=_str(obj, "state", optional=True) or "online",
        )
    raise WireError(f"type: {kind!r} is not a stream message")
