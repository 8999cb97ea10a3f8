"""The FCV1 video framing: round trips, the routing peek, and hostile bytes."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from framecast import wire

KEY = wire.VideoFrame(
    stream="cam1",
    epoch="9f3a1c2e",
    seq=7,
    group=7,
    frame=3127,
    captured_at=1764258000.512,
    width=640,
    height=480,
    key=True,
    codec="vp8",
    data=b"\x10\x02\x00\x9d\x01\x2a" + bytes(100),
)


def test_a_keyframe_round_trips_and_its_header_sits_at_the_documented_offsets() -> None:
    data = wire.encode_video(KEY)
    assert wire.is_video(data) and not wire.is_preview(data)
    assert wire.decode_video(data) == KEY
    assert len(data) == wire.VIDEO_HEADER_SIZE + len("cam1") + len("9f3a1c2e") + len("vp8") + len(KEY.data)
    # docs/protocol.md's table, read back with plain struct calls as another implementation would
    assert data[:4] == b"FCV1" and data[4] == 1 and data[5:8] == bytes([4, 8, 3])
    assert struct.unpack_from(">QQQd", data, 8) == (7, 7, 3127, 1764258000.512)
    assert struct.unpack_from(">HHI", data, 40) == (640, 480, 0)
    assert data[48:52] == b"cam1" and data[52:60] == b"9f3a1c2e" and data[60:63] == b"vp8"


def test_a_delta_frame_carries_no_codec_and_names_its_group() -> None:
    delta = wire.VideoFrame(
        stream="cam1", epoch="e", seq=9, group=7, frame=3131, captured_at=2.0, width=640, height=480,
        key=False, codec="ignored on a delta", description=b"ignored too", data=b"abc",
    )  # fmt: skip
    back = wire.decode_video(wire.encode_video(delta))
    assert (back.key, back.codec, back.description, back.group, back.data) == (False, "", b"", 7, b"abc")


def test_peek_reads_what_a_gateway_routes_by() -> None:
    data = wire.encode_video(KEY)
    assert wire.peek_video(data) == wire.VideoPeek(
        epoch="9f3a1c2e", seq=7, group=7, key=True, captured_at=1764258000.512, size=len(data)
    )


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"seq": 0, "group": 0}, "1 <= group <= seq"),
        ({"group": 8}, "1 <= group <= seq"),
        ({"group": 3}, "starts its own group"),
        ({"codec": ""}, "carries its codec"),
        ({"width": 70000}, "out of range"),
        ({"captured_at": float("nan")}, "not finite"),
    ],
)
def test_encoding_refuses_a_frame_that_breaks_the_rules(change: dict[str, object], complaint: str) -> None:
    from dataclasses import replace

    with pytest.raises(wire.WireError, match=complaint):
        wire.encode_video(replace(KEY, **change))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mangle", "complaint"),
    [
        (lambda d: d[:20], "shorter than its 48-byte header"),
        (lambda d: b"FCP1" + d[4:], "bad magic"),
        (lambda d: d[:16] + struct.pack(">Q", 99) + d[24:], "group 99 is not within"),
        (lambda d: d[:7] + b"\xff" + d[8:], "run past the end"),
        (lambda d: d[:48] + b"ca m" + d[52:], "not a valid stream name"),
        (lambda d: d[:4] + b"\x01" + d[5:7] + b"\x00" + d[8:], "without its codec"),
    ],
    ids=["short", "magic", "group", "lengths", "stream", "codec"],
)
def test_decoding_names_what_is_wrong(mangle: object, complaint: str) -> None:
    with pytest.raises(wire.WireError, match=complaint):
        wire.decode_video(mangle(wire.encode_video(KEY)))  # type: ignore[operator]


frames = st.builds(
    lambda key, seq, back, **kw: wire.VideoFrame(
        seq=seq, group=seq if key else max(1, seq - back), key=key, **kw
    ),
    key=st.booleans(),
    seq=st.integers(1, 2**64 - 1),
    back=st.integers(0, 1000),
    stream=st.from_regex(wire.STREAM_NAME_PATTERN, fullmatch=True),
    epoch=st.text(max_size=20).filter(lambda e: len(e.encode()) <= 255),
    frame=st.integers(0, 2**64 - 1),
    captured_at=st.floats(allow_nan=False, allow_infinity=False),
    width=st.integers(1, 0xFFFF),
    height=st.integers(1, 0xFFFF),
    codec=st.from_regex(r"[a-z0-9.]{1,40}", fullmatch=True),
    description=st.binary(max_size=64),
    data=st.binary(max_size=256),
)


@given(frames)
def test_every_valid_frame_round_trips(frame: wire.VideoFrame) -> None:
    back = wire.decode_video(wire.encode_video(frame))
    if not frame.key:
        assert (back.codec, back.description) == ("", b"")
        frame = back.__class__(
            **{
                **{f: getattr(frame, f) for f in frame.__slots__ if f != "type"},
                "codec": "",
                "description": b"",
            }
        )
    assert back == frame
    peek = wire.peek_video(wire.encode_video(frame))
    assert (peek.seq, peek.group, peek.key, peek.epoch) == (frame.seq, frame.group, frame.key, frame.epoch)


@given(st.binary(max_size=200), st.binary(max_size=64))
def test_hostile_bytes_raise_wire_error_and_nothing_else(junk: bytes, tail: bytes) -> None:
    for data in (junk, b"FCV1" + junk, wire.encode_video(KEY)[: len(junk) % 70] + tail):
        for read in (wire.decode_video, wire.peek_video):
            with contextlib.suppress(wire.WireError):
                read(data)
