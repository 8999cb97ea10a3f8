"""The wire format: round trips and rejection of malformed messages."""

from __future__ import annotations

import json

import pytest

from framecast import wire


def _result(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "v": 1,
        "type": "result",
        "stream": "default",
        "epoch": "e1",
        "seq": 1,
        "frame": 0,
        "captured_at": 1.0,
        "published_at": 1.1,
        "width": 640,
        "height": 480,
        "detections": [{"label": "motion", "confidence": 0.5, "box": [0, 0, 10, 10]}],
    }
    base.update(overrides)
    return base


def test_result_round_trip() -> None:
    result = wire.Result(
        stream="cam-1",
        epoch="abc",
        seq=7,
        frame=21,
        captured_at=1700000000.25,
        published_at=1700000000.3,
        width=640,
        height=480,
        detections=(wire.Detection(label="person", confidence=0.87, box=(10.0, 20.0, 110.0, 220.0)),),
    )
    assert wire.decode(wire.encode(result)) == result


@pytest.mark.parametrize(
    "message",
    [
        wire.Status(stream="s", epoch="e", seq=0, sent_at=2.0, state="offline", reconnects=3),
        wire.Hello(gateway="g1"),
        wire.Subscribed(stream="s", previews=True),
        wire.Unsubscribed(stream="s"),
        wire.Reset(stream="s", reason="history-expired"),
        wire.Gap(stream="s"),
        wire.Error(code="forbidden", message="no", stream="s"),
    ],
)
def test_text_messages_round_trip(message: wire.TextMessage) -> None:
    assert wire.decode(wire.encode(message)) == message


def test_ops_round_trip() -> None:
    for op in (wire.Subscribe(stream="s", since=4, epoch="e", previews=True), wire.Unsubscribe(stream="s")):
        assert wire.decode_op(wire.encode(op)) == op


def test_preview_round_trip() -> None:
    preview = wire.Preview(
        stream="s",
        epoch="e",
        seq=3,
        frame=9,
        captured_at=5.0,
        width=320,
        height=240,
        jpeg=b"\xff\xd8\xff\xe0jpeg",
    )
    assert wire.decode_preview(wire.encode_preview(preview)) == preview


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"v": 2}, "v"),
        ({"seq": 0}, "seq"),
        ({"seq": "1"}, "seq"),
        ({"seq": True}, "seq"),
        ({"stream": "bad name"}, "stream"),
        ({"captured_at": "now"}, "captured_at"),
        ({"width": 0}, "width"),
        ({"detections": {}}, "detections"),
        ({"detections": [{"label": "x", "confidence": 2, "box": [0, 0, 1, 1]}]}, "confidence"),
        ({"detections": [{"label": "x", "confidence": 1, "box": [0, 0, 1]}]}, "box"),
        ({"detections": [{"label": "x", "confidence": 1, "box": [0, 0, 700, 10]}]}, "box"),
        ({"detections": [{"label": "x", "confidence": 1, "box": [5, 0, 1, 10]}]}, "box"),
        ({"type": "nope"}, "type"),
    ],
)
def test_malformed_results_are_rejected_naming_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(wire.WireError, match=field):
        wire.decode(json.dumps(_result(**overrides)))


@pytest.mark.parametrize("data", [b"\xff\xfe", b"[1,2]", b"{", b"", "null"])
def test_non_objects_are_rejected(data: bytes | str) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(data)


@pytest.mark.parametrize(
    "data",
    [
        '{"op":"dance"}',
        '{"op":"subscribe"}',
        '{"op":"subscribe","stream":"../etc"}',
        '{"op":"subscribe","stream":"s","since":-1}',
        '{"op":"subscribe","stream":"s","previews":"yes"}',
    ],
)
def test_bad_ops_are_rejected(data: str) -> None:
    with pytest.raises(wire.WireError):
        wire.decode_op(data)


def test_peek_reads_routing_fields() -> None:
    data = json.dumps(_result(seq=9, captured_at=12.5)).encode()
    peeked = wire.peek(data)
    assert (peeked.type, peeked.epoch, peeked.seq, peeked.captured_at) == ("result", "e1", 9, 12.5)
    with pytest.raises(wire.WireError):
        wire.peek(wire.encode(wire.Hello(gateway="g")))


def test_encoding_is_compact_utf8_json() -> None:
    data = wire.encode(wire.Error(code="c", message="ünïcode"))
    assert b" " not in data.replace("ünïcode".encode(), b"")
    assert json.loads(data)["message"] == "ünïcode"


def test_previews_are_told_apart_from_text_messages_by_their_magic() -> None:
    preview = wire.encode_preview(
        wire.Preview(
            stream="s",
            epoch="e",
            seq=3,
            frame=9,
            captured_at=5.0,
            width=320,
            height=240,
            jpeg=b"\xff\xd8jpeg",
        )
    )
    assert wire.is_preview(preview)
    assert not wire.is_preview(wire.encode(wire.Hello(gateway="g")))
    assert not wire.is_preview(preview[:3])
    assert not wire.is_preview(b"")


def test_redis_names_are_fixed_and_never_collide_with_a_stream() -> None:
    # Producers and gateways of different versions share these names: changing one breaks replay or readiness.
    assert wire.HISTORY_FIELD == "m"
    # The stream name is a Redis Cluster hash tag: all of one stream's names share one slot.
    assert wire.channel("cam") == "framecast:{cam}"
    assert wire.preview_channel("cam") == "framecast:{cam}:preview"
    assert wire.history_key("cam") == "framecast:{cam}:history"
    assert wire.status_key("cam") == "framecast:{cam}:status"
    assert wire.canary_channel("gw-1") == "framecast:{__canary__:gw-1}"
    assert wire.canary_channel("gw-1", 7) == "framecast:{__canary__:7:gw-1}"
    with pytest.raises(wire.WireError):
        wire.check_stream_name("__canary__")  # so no wire.channel(stream) is a canary channel


def test_a_streams_names_hash_to_one_cluster_slot_and_status_keys_parse_back() -> None:
    from redis.crc import key_slot

    for stream in ("cam", "cam-1", "a.b_c"):
        names = (wire.channel(stream), wire.preview_channel(stream), wire.history_key(stream))
        assert {key_slot(n.encode()) for n in (*names, wire.status_key(stream))} == {
            key_slot(stream.encode())
        }
        assert wire.stream_of_status_key(wire.status_key(stream)) == stream
    # Different shards get different canaries: the shard number is inside the hash tag.
    assert len({key_slot(wire.canary_channel("gw", n).encode()) for n in range(8)}) > 1
    for key in ("framecast:cam:status", "framecast:{cam}:history", "framecast:{__canary__:x}:status", "x"):
        assert wire.stream_of_status_key(key) is None


def test_result_keys_come_in_the_order_the_load_client_parses() -> None:
    # bench/client.py pulls seq and captured_at out of raw frames with a regex (for speed), relying on
    # wire.encode writing these keys first and in this order: a change here must fail loudly.
    from bench.client import _ONE_RESULT, _RESULT

    result = wire.Result(
        stream="cam-1",
        epoch="ab12",
        seq=42,
        frame=40,
        captured_at=1700000000.125,
        published_at=1700000000.25,
        width=640,
        height=480,
    )
    data = wire.encode(result)
    assert list(json.loads(data))[:7] == ["v", "type", "stream", "epoch", "seq", "frame", "captured_at"]
    assert _RESULT.findall(b"junk" + data + data) == [(b"42", b"1700000000.125")] * 2
    found = _ONE_RESULT.match(data)
    assert found is not None and (int(found[1]), float(found[2])) == (42, result.captured_at)


@pytest.mark.parametrize(
    "kind", [wire.Result, wire.Status, wire.Preview, wire.Detection, wire.Gap, wire.Subscribe]
)
def test_messages_take_keyword_arguments_only(kind: type) -> None:
    # Result(stream, epoch, seq, frame, ...) with seq and frame swapped would type-check and mislead.
    with pytest.raises(TypeError, match="positional"):
        kind("cam", "e1", 1, 2)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b'{"op": "subscribe", "stream": "no/slash"}', "bad-stream"),
        (b'{"op": "publish", "stream": "cam"}', "unknown-op"),
        (b'{"op": "subscribe"}', "bad-message"),
        (b"not json", "bad-message"),
        (b"[1, 2]", "bad-message"),
    ],
)
def test_wire_errors_carry_the_protocol_error_code(data: bytes, code: str) -> None:
    with pytest.raises(wire.WireError) as caught:
        wire.decode_op(data)
    assert caught.value.code == code


@pytest.mark.parametrize("decoder", [wire.decode, wire.decode_op, wire.peek])
def test_deeply_nested_json_is_a_bad_message_not_a_crash(decoder: object) -> None:
    # 4000 bytes fit the gateway's default 4096-byte limit. Deeper than the parser's stack up to
    # CPython 3.12; 3.13's parser takes that depth, and the message fails for what it is instead.
    with pytest.raises(wire.WireError) as caught:
        decoder(b"[" * 4000)  # type: ignore[operator]
    assert caught.value.code == "bad-message"
    # Deeper than any CPython's parser goes (a larger --max-message-size lets it through).
    with pytest.raises(wire.WireError, match="nested too deeply") as caught:
        decoder(b"[" * 100_000 + b"]" * 100_000)  # type: ignore[operator]
    assert caught.value.code == "bad-message"


def test_an_op_without_op_is_a_bad_message() -> None:
    with pytest.raises(wire.WireError, match="missing field op") as caught:
        wire.decode_op(b'{"stream": "cam"}')
    assert caught.value.code == "bad-message"


@pytest.mark.parametrize("decoder", [wire.decode, wire.decode_op, wire.peek])
def test_an_integer_past_pythons_digit_limit_is_a_bad_message_not_a_crash(decoder: object) -> None:
    # json.loads raises a plain ValueError past 4300 digits; a decoder owes a WireError.
    digits = "9" * 5000
    data = '{"op":"subscribe","stream":"cam","seq":' + digits + ',"since":' + digits + "}"
    with pytest.raises(wire.WireError) as caught:
        decoder(data.encode())  # type: ignore[operator]
    assert caught.value.code == "bad-message"


def test_since_is_bounded_by_the_largest_sequence_number_as_at_the_handshake() -> None:
    def op(since: int) -> bytes:
        return json.dumps({"op": "subscribe", "stream": "cam", "since": since, "epoch": "e"}).encode()

    assert wire.decode_op(op(wire.MAX_SEQ)) == wire.Subscribe(stream="cam", since=wire.MAX_SEQ, epoch="e")
    with pytest.raises(wire.WireError, match="since: expected an integer from 0 to 2\\*\\*64 - 1") as caught:
        wire.decode_op(op(wire.MAX_SEQ + 1))
    assert caught.value.code == "bad-message"


def test_a_refused_stream_name_is_carried_by_the_error() -> None:
    with pytest.raises(wire.WireError) as caught:
        wire.decode_op(b'{"op":"subscribe","stream":"../etc"}')
    assert (caught.value.code, caught.value.stream) == ("bad-stream", "../etc")
    with pytest.raises(wire.WireError) as caught:
        wire.decode_op(b'{"op":"subscribe","stream":7}')
    assert (caught.value.code, caught.value.stream) == ("bad-message", None)
