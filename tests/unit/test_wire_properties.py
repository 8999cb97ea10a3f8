"""Property-based tests of the wire decoders and the control-message parser (issue 12, hostile input).

Whatever bytes arrive, :mod:`framecast.wire` answers with a decoded message or a
:class:`~framecast.wire.WireError` naming the field (the gateway turns that into an ``error``
``bad-message``/``unknown-op``/``bad-stream`` and keeps the connection open, docs/protocol.md):
never another exception, which would end the connection with 1011.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from framecast import wire

_PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_json = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
_stream_names = st.from_regex(re.compile(rf"\A{wire.STREAM_NAME_PATTERN}\Z"), fullmatch=True)
_ops_like = st.fixed_dictionaries(
    {},
    optional={
        "op": st.sampled_from(["subscribe", "unsubscribe", "Subscribe", "", "publish"]) | _json,
        "stream": _stream_names | _json,
        "since": st.integers(min_value=-3, max_value=2**70) | _json,
        "epoch": st.text(max_size=12) | _json,
        "previews": st.booleans() | _json,
    },
)
_messages_like = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from([1, 2, "1", None, True]),
        "type": st.sampled_from(
            ["result", "status", "hello", "subscribed", "unsubscribed", "reset", "gap", "error", "x"]
        ),
        "stream": _stream_names | _json,
        "epoch": st.text(max_size=8) | _json,
        "seq": st.integers(min_value=-2, max_value=2**64) | _json,
        "frame": st.integers(min_value=-2, max_value=10**6) | _json,
        "captured_at": st.floats() | _json,
        "published_at": st.floats() | _json,
        "sent_at": st.floats() | _json,
        "width": st.integers(min_value=-1, max_value=4000) | _json,
        "height": st.integers(min_value=-1, max_value=4000) | _json,
        "detections": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "label": st.text(max_size=8) | _json,
                    "confidence": st.floats() | _json,
                    "box": st.lists(st.floats() | _json, max_size=5) | _json,
                },
            ),
            max_size=3,
        )
        | _json,
        "state": st.sampled_from(["online", "offline", "dead"]) | _json,
        "gateway": st.text(max_size=8) | _json,
        "code": st.text(max_size=8) | _json,
        "message": st.text(max_size=8) | _json,
        "reason": st.text(max_size=8) | _json,
        "previews": st.booleans() | _json,
    },
)


def _decodes_or_wire_error(decoder: Any, data: bytes | str) -> Any:
    """Run ``decoder``; a WireError is the documented refusal, anything else propagates (a defect)."""
    try:
        return decoder(data)
    except wire.WireError as exc:
        assert str(exc), "a WireError must say what is wrong"
        return None


def _dump(obj: object) -> bytes:
    return json.dumps(obj).encode()


# --------------------------------------------------------------------------
# Control messages (what a gateway reads from clients)


@_PROFILE
@given(st.binary(max_size=300))
@example(b"[" * 4000)
@example(b'{"a":' * 4000)
@example(b"\xff\xfe{}")
@example(b'{"op":"subscribe","stream":"a\x00"}')
def test_decode_op_on_any_bytes_decodes_or_raises_wire_error(data: bytes) -> None:
    op = _decodes_or_wire_error(wire.decode_op, data)
    assert op is None or isinstance(op, wire.Subscribe | wire.Unsubscribe)


@_PROFILE
@given(st.text(max_size=300))
@example("[" * 4000)
@example('{"op":"subscribe","stream":"' + "\ud800" + '"}')
def test_decode_op_on_any_text_decodes_or_raises_wire_error(text: str) -> None:
    _decodes_or_wire_error(wire.decode_op, text)


@_PROFILE
@given(_ops_like)
def test_decode_op_accepts_exactly_the_documented_operations(obj: dict[str, Any]) -> None:
    op = _decodes_or_wire_error(wire.decode_op, _dump(obj))
    if op is None:
        return
    # Anything accepted has a documented op, a valid stream name and well-typed options.
    assert obj["op"] in ("subscribe", "unsubscribe")
    assert isinstance(obj["stream"], str) and re.fullmatch(wire.STREAM_NAME_PATTERN, obj["stream"])
    assert op.stream == obj["stream"]
    if isinstance(op, wire.Subscribe):
        assert obj["op"] == "subscribe"
        since = obj.get("since")
        assert since is None or (isinstance(since, int) and not isinstance(since, bool) and since >= 0)
        assert op.since == since
        assert isinstance(op.previews, bool)


@_PROFILE
@given(
    _stream_names,
    st.none() | st.integers(min_value=0, max_value=2**53),
    st.none() | st.text(min_size=1, max_size=16),
    st.booleans(),
)
def test_encoded_subscribe_decodes_to_itself(
    stream: str, since: int | None, epoch: str | None, p: bool
) -> None:
    op = wire.Subscribe(stream=stream, since=since, epoch=epoch, previews=p)
    assert wire.decode_op(wire.encode(op)) == op
    unsub = wire.Unsubscribe(stream=stream)
    assert wire.decode_op(wire.encode(unsub)) == unsub


@_PROFILE
@given(st.text(max_size=80))
def test_stream_names_outside_the_documented_alphabet_are_refused(name: str) -> None:
    valid = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name) is not None and name.isascii()
    op = _decodes_or_wire_error(wire.decode_op, _dump({"op": "subscribe", "stream": name}))
    assert (op is not None) == valid, f"stream name {name!r}: accepted={op is not None}, documented={valid}"


def test_deeply_nested_json_is_a_wire_error_not_a_crash() -> None:
    """Known defect (issue 12): ``"[" * 4000`` raised RecursionError, which closed the connection 1011."""
    for payload in (b"[" * 4000, b"[" * 100_000, b'{"op":' * 4000, ("[" * 4000).encode() + b"]" * 4000):
        try:
            wire.decode_op(payload)
        except wire.WireError:
            continue
        raise AssertionError("nested JSON was accepted as an operation")


def test_an_object_without_op_is_refused() -> None:
    for obj in ({}, {"stream": "default"}, {"op": None, "stream": "default"}, {"type": "subscribe"}):
        try:
            wire.decode_op(_dump(obj))
        except wire.WireError:
            continue
        raise AssertionError(f"{obj} was accepted as an operation")


# --------------------------------------------------------------------------
# Gateway messages (what clients read) and previews


@_PROFILE
@given(st.binary(max_size=300))
@example(b"[" * 4000)
@example(b'{"v":1,"type":"result","detections":' + b"[" * 4000)
def test_decode_on_any_bytes_decodes_or_raises_wire_error(data: bytes) -> None:
    _decodes_or_wire_error(wire.decode, data)


@_PROFILE
@given(_messages_like)
def test_decode_on_message_shaped_objects_decodes_or_raises_wire_error(obj: dict[str, Any]) -> None:
    message = _decodes_or_wire_error(wire.decode, _dump(obj))
    if isinstance(message, wire.Result):
        assert obj["v"] == wire.VERSION and message.seq >= 1
        for d in message.detections:
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 <= x2 <= message.width and 0 <= y1 <= y2 <= message.height
            assert 0.0 <= d.confidence <= 1.0


@_PROFILE
@given(_messages_like)
def test_peek_on_message_shaped_objects_decodes_or_raises_wire_error(obj: dict[str, Any]) -> None:
    peeked = _decodes_or_wire_error(wire.peek, _dump(obj))
    assert peeked is None or isinstance(peeked, wire.Peek)


@_PROFILE
@given(st.binary(max_size=200))
@example(b"[" * 4000)
def test_peek_on_any_bytes_decodes_or_raises_wire_error(data: bytes) -> None:
    _decodes_or_wire_error(wire.peek, data)


@_PROFILE
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=2**32 - 1), st.binary(max_size=200))
@example(b"", 2**32 - 1, b"")
@example(b"", 4000, b"[" * 4000)
def test_decode_preview_on_any_frame_decodes_or_raises_wire_error(
    prefix: bytes, size: int, rest: bytes
) -> None:
    for data in (
        prefix,
        b"FCP1" + size.to_bytes(4, "big") + rest,
        b"FCP1" + len(rest).to_bytes(4, "big") + rest,
    ):
        _decodes_or_wire_error(wire.decode_preview, data)


@_PROFILE
@given(
    _stream_names,
    st.text(min_size=1, max_size=12),
    st.integers(min_value=1, max_value=2**53),
    st.integers(min_value=1, max_value=8192),
    st.integers(min_value=1, max_value=8192),
    st.lists(
        st.tuples(
            st.text(max_size=30),
            st.floats(min_value=0, max_value=1),
            st.floats(min_value=0, max_value=1),
            st.floats(min_value=0, max_value=1),
        ),
        max_size=4,
    ),
)
def test_encoded_results_decode_to_the_same_values(
    stream: str, epoch: str, seq: int, width: int, height: int, raw: list[tuple[str, float, float, float]]
) -> None:
    detections = tuple(
        wire.Detection(
            label=label,
            confidence=round(confidence, 4),
            box=(0.0, 0.0, float(round(a * width)), float(round(b * height))),
        )
        for label, confidence, a, b in raw
    )
    result = wire.Result(
        stream=stream,
        epoch=epoch,
        seq=seq,
        frame=seq,
        captured_at=1764258000.5,
        published_at=1764258000.6,
        width=width,
        height=height,
        detections=detections,
    )
    assert wire.decode(wire.encode(result)) == result
    assert wire.peek(wire.encode(result)) == wire.Peek(
        type="result", epoch=epoch, seq=seq, captured_at=1764258000.5
    )
