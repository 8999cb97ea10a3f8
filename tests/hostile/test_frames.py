"""Hostile WebSocket frames and operations against a real gateway (issue 12).

Each attack gets its documented answer (docs/protocol.md "Close codes", docs/guarantees.md "Close
codes and handshake answers"; protocol violations RFC 6455's 1002) and none disturbs the witness
client next to it (it keeps receiving every result in order).
"""

from __future__ import annotations

import json
import socket

import pytest

from framecast import wire
from tests.hostile._frames import (
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Frame,
    FrameReader,
    frame,
)
from tests.hostile.conftest import Bench
from tests.support.gateway import raw_websocket


def _case_id(value: object) -> str:
    """Each case is named by its description: the frames' random masks would make the ids differ
    between runs, and pytest-xdist's workers must collect the same ids."""
    return value if isinstance(value, str) else str(value) if isinstance(value, int) else "frame"


def _open(bench: Bench, path: str = "/ws") -> tuple[socket.socket, FrameReader]:
    sock, head = raw_websocket(bench.port, path)
    assert head.startswith(b"HTTP/1.1 101"), head[:200]
    reader = FrameReader(sock)
    hello = reader.next()
    assert hello is not None and isinstance(wire.decode(hello.payload), wire.Hello)
    return sock, reader


def _reply(reader: FrameReader) -> wire.TextMessage:
    got = reader.next()
    assert got is not None and got.opcode == OP_TEXT, got
    return wire.decode(got.payload)


def _closed_with(bench: Bench, data: bytes, code: int) -> None:
    sock, reader = _open(bench)
    with sock:
        sock.sendall(data)
        _, got = reader.until_close()
        assert got == code, f"closed with {got}, expected {code}"
    bench.assert_undisturbed()


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("unmasked frame", frame(OP_TEXT, b'{"op":"subscribe","stream":"a"}', mask=False), 1002),
        ("reserved bit 1", frame(OP_TEXT, b"{}", rsv=0b100), 1002),
        ("reserved bit 3", frame(OP_TEXT, b"{}", rsv=0b001), 1002),
        ("unknown data opcode", frame(0x3, b"x"), 1002),
        ("unknown control opcode", frame(0xB, b"x"), 1002),
        ("fragmented ping", frame(OP_PING, b"x", fin=False), 1002),
        ("ping over 125 bytes", frame(OP_PING, b"p" * 126), 1002),
        ("continuation without a start", frame(OP_CONT, b"x"), 1002),
        ("huge length header", frame(OP_TEXT, b"", length=2**63 - 1), 1009),
        ("text over --max-message-size", frame(OP_TEXT, b" " * 5000), 1009),
        (
            "fragments over --max-message-size",
            frame(OP_TEXT, b" " * 3000, fin=False) + frame(OP_CONT, b" " * 3000),
            1009,
        ),
        ("invalid UTF-8", frame(OP_TEXT, b'{"op":"\xff\xfe"}'), 1007),
        ("truncated UTF-8", frame(OP_TEXT, b'{"op":"\xe2\x82"}'), 1007),
        ("UTF-8 surrogate", frame(OP_TEXT, b'"\xed\xa0\x80"'), 1007),
    ],
    ids=_case_id,
)
def test_protocol_violations_get_their_close_code(
    open_bench: Bench, name: str, data: bytes, code: int
) -> None:
    _closed_with(open_bench, data, code)


@pytest.mark.parametrize(
    ("name", "payload", "code"),
    [
        ("nested JSON", b"[" * 4000, "bad-message"),
        ("nested object", b'{"":' * 1000, "bad-message"),
        ("not JSON", b"hello", "bad-message"),
        ("a JSON array", b"[1,2]", "bad-message"),
        ("no op", b'{"stream":"default"}', "bad-message"),
        ("op null", b'{"op":null,"stream":"default"}', "bad-message"),
        ("unknown op", b'{"op":"publish","stream":"default"}', "unknown-op"),
        ("bad stream name", b'{"op":"subscribe","stream":"../etc"}', "bad-stream"),
        ("stream name too long", b'{"op":"subscribe","stream":"' + b"a" * 65 + b'"}', "bad-stream"),
        ("NUL in stream name", b'{"op":"subscribe","stream":"a\\u0000b"}', "bad-stream"),
        ("since negative", b'{"op":"subscribe","stream":"default","since":-1,"epoch":"e"}', "bad-message"),
        ("since a string", b'{"op":"subscribe","stream":"default","since":"5","epoch":"e"}', "bad-message"),
        ("since without epoch", b'{"op":"subscribe","stream":"default","since":5}', "bad-message"),
        ("previews not a bool", b'{"op":"subscribe","stream":"default","previews":"yes"}', "bad-message"),
    ],
)
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_bad_operations_get_an_error_and_the_connection_stays_open(
    open_bench: Bench, name: str, payload: bytes, code: str, opcode: int
) -> None:
    sock, reader = _open(open_bench)
    with sock:
        sock.sendall(frame(opcode, payload))
        error = _reply(reader)
        assert isinstance(error, wire.Error) and error.code == code, error
        if code == "bad-stream":  # the refused name comes back, so a client can tell which
            assert error.stream == json.loads(payload)["stream"], error
        # Still open and serving: a good operation after the bad one is answered.
        sock.sendall(frame(OP_TEXT, wire.encode(wire.Unsubscribe(stream="default"))))
        assert isinstance(_reply(reader), wire.Unsubscribed)
    open_bench.assert_undisturbed()


def test_binary_frames_that_are_not_utf8_json_get_bad_message(open_bench: Bench) -> None:
    sock, reader = _open(open_bench)
    with sock:
        sock.sendall(frame(OP_BINARY, b"\xff\xd8\xff\xe0 a JPEG, not an operation"))
        error = _reply(reader)
        assert isinstance(error, wire.Error) and error.code == "bad-message", error
        sock.sendall(frame(OP_BINARY, wire.encode(wire.Subscribe(stream="default"))))
        assert isinstance(_reply(reader), wire.Subscribed)
    open_bench.assert_undisturbed()


def test_five_bad_operations_in_a_row_close_with_1008(open_bench: Bench) -> None:
    sock, reader = _open(open_bench)
    with sock:
        for _ in range(5):
            sock.sendall(frame(OP_TEXT, b"not json"))
        frames, code = reader.until_close()
        errors = [wire.decode(f.payload) for f in frames if f.opcode == OP_TEXT]
        assert [e.code for e in errors if isinstance(e, wire.Error)] == ["bad-message"] * 5
        assert code == 1008
    open_bench.assert_undisturbed()


def test_a_ping_flood_is_answered_and_harms_no_one(open_bench: Bench) -> None:
    count = 2000
    sock, reader = _open(open_bench)
    with sock:
        sock.sendall(b"".join(frame(OP_PING, i.to_bytes(4, "big")) for i in range(count)))
        pongs: list[Frame] = []
        for _ in range(count):
            got = reader.next()
            assert got is not None, f"closed after {len(pongs)} pongs"
            pongs.append(got)
        assert [p.opcode for p in pongs] == [OP_PONG] * count
        assert [int.from_bytes(p.payload, "big") for p in pongs] == list(range(count))
    open_bench.assert_undisturbed()


def test_an_error_flood_interleaved_with_good_operations_is_answered_in_order(open_bench: Bench) -> None:
    """Bad operations that never reach 5 in a row keep being answered; the connection stays open."""
    rounds = 500
    sock, reader = _open(open_bench)
    with sock:
        bad, good = frame(OP_TEXT, b'{"op":"nope"}'), frame(OP_TEXT, b'{"op":"unsubscribe","stream":"x"}')
        sock.sendall((bad * 4 + good) * rounds)
        kinds: list[str] = []
        for _ in range(rounds * 5):
            message = _reply(reader)
            kinds.append(message.code if isinstance(message, wire.Error) else message.type)
        assert kinds == (["unknown-op"] * 4 + ["unsubscribed"]) * rounds
    open_bench.assert_undisturbed()


def test_thousands_of_subscribe_unsubscribe_cycles_leave_the_gateway_serving(open_bench: Bench) -> None:
    cycles = 1000
    sock, reader = _open(open_bench)
    with sock:
        sub = frame(OP_TEXT, json.dumps({"op": "subscribe", "stream": "churn"}).encode())
        unsub = frame(OP_TEXT, json.dumps({"op": "unsubscribe", "stream": "churn"}).encode())
        answers: list[str] = []
        for _ in range(cycles // 100):
            sock.sendall((sub + unsub) * 100)
            for _ in range(10_000):
                message = _reply(reader)
                if isinstance(message, wire.Subscribed | wire.Unsubscribed):
                    answers.append(message.type)
                    if answers.count("unsubscribed") % 100 == 0 and answers[-1] == "unsubscribed":
                        break
        assert answers == ["subscribed", "unsubscribed"] * cycles
        # Nothing is left subscribed: the churn stream has no client on the gateway.
        sock.sendall(frame(OP_TEXT, wire.encode(wire.Subscribe(stream="default"))))
        for _ in range(100):
            message = _reply(reader)
            if isinstance(message, wire.Result):
                break
        else:
            raise AssertionError("no result after the churn")
    open_bench.assert_undisturbed()
