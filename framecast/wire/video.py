"""The binary framing of encoded video: one message per encoded frame, ``FCV1``.

A producer encodes the frames it hands to its predictor and publishes each encoded frame on the
stream's video channel (:func:`framecast.wire.video_channel`); gateways forward the bytes
unchanged. Everything a gateway needs to keep the rules of a group of pictures (join at a
keyframe, never a delta frame without the frames it depends on, drop by age at a keyframe) sits
at fixed offsets of a 48-byte header, so it is read with one ``struct`` call and no decoding of
the picture (:func:`peek_video`). Everything a browser needs to configure a WebCodecs
``VideoDecoder`` comes with every keyframe (``codec``, ``description``), so a client can start at
any keyframe.

Layout (integers unsigned, big-endian)::

    offset size
    0      4    magic b"FCV1"
    4      1    flags: bit 0 key (a keyframe: decodable alone, starts a group); other bits 0
    5      1    S, length of the stream name
    6      1    E, length of the epoch
    7      1    C, length of the codec string (0 on a delta frame)
    8      8    seq: encoded frames of this epoch, from 1, +1 per frame (a gap is a lost frame)
    16     8    group: seq of the keyframe that starts this frame's group (= seq on a keyframe)
    24     8    frame: source frame index of the picture (the ``frame`` of its result)
    32     8    captured_at: IEEE 754 double, Unix seconds the picture was captured
    40     2    width: coded width in pixels
    42     2    height: coded height in pixels
    44     4    D, length of the codec description (0 on a delta frame, and for codecs without one)
    48     S    stream name (ASCII)
           E    epoch (UTF-8)
           C    codec: the WebCodecs codec string (``vp8``, ``vp09.00.31.08``, ``avc1.42C01E``...)
           D    description: the WebCodecs ``description`` (codec-specific configuration)
           ...  the encoded frame: a VP8/VP9 frame, an H.264 access unit in Annex B (SPS and PPS
                in every keyframe), an AV1 temporal unit (a sequence header in every keyframe)
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Literal

from framecast.exceptions import WireError
from framecast.wire.keys import check_stream_name

__all__ = [
    "VIDEO_HEADER_SIZE",
    "VideoFrame",
    "VideoPeek",
    "decode_video",
    "encode_video",
    "is_video",
    "peek_video",
]

_MAGIC = b"FCV1"
_HEADER = struct.Struct(">4sBBBBQQQdHHI")
VIDEO_HEADER_SIZE = _HEADER.size
"""Bytes of the fixed header (48): the variable fields and the encoded frame follow it."""
_KEY = 0x01
_MAX_U64 = 2**64 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoFrame:
    """One encoded video frame with the identity of its picture (sent as a binary message).

    Attributes:
        stream: Stream name.
        epoch: Producer run id (the ``epoch`` of the stream's results).
        seq: Encoded frames of this epoch, from 1, one more per frame: a gap means a frame was
            lost, and the frames after it up to the next keyframe cannot be decoded.
        group: ``seq`` of the keyframe that starts this frame's group of pictures.
        frame: Source frame index of the picture: the result with the same ``epoch`` and
            ``frame`` holds the boxes computed on this very picture.
        captured_at: Unix time (seconds) the picture was captured.
        width: Coded width in pixels (boxes are in the source frame's pixels: scale them by
            ``width / result.width``).
        height: Coded height in pixels.
        key: A keyframe: decodable on its own; ``codec`` (and ``description``) come with it.
        codec: The WebCodecs codec string (keyframes only, ``""`` otherwise).
        description: The WebCodecs ``description`` (keyframes of codecs that have one; ``b""``).
        data: The encoded frame.
    """

    stream: str
    epoch: str
    seq: int
    group: int
    frame: int
    captured_at: float
    width: int
    height: int
    key: bool
    codec: str = ""
    description: bytes = b""
    data: bytes = b""
    type: Literal["video"] = field(default="video", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoPeek:
    """What a gateway reads of a video frame to route it (:func:`peek_video`).

    Attributes:
        epoch: Producer run id.
        seq: The frame's number within the epoch.
        group: ``seq`` of the keyframe its group starts with.
        key: Whether it is a keyframe.
        captured_at: Unix time its picture was captured.
        size: Bytes of the whole message (what a client's buffer holds for it).
    """

    epoch: str
    seq: int
    group: int
    key: bool
    captured_at: float
    size: int


def encode_video(frame: VideoFrame) -> bytes:
    """Encode a video frame in the ``FCV1`` framing (see the module's docstring).

    Raises:
        WireError: A field does not fit its slot (a name over 255 bytes, a size over 65535...).
    """
    stream = frame.stream.encode("ascii")
    epoch = frame.epoch.encode()
    codec = frame.codec.encode("ascii") if frame.key else b""
    description = frame.description if frame.key else b""
    if not 1 <= frame.seq <= _MAX_U64 or not 1 <= frame.group <= frame.seq:
        raise WireError(f"video: seq {frame.seq} and group {frame.group} must satisfy 1 <= group <= seq")
    if frame.key and frame.group != frame.seq:
        raise WireError(f"video: a keyframe starts its own group (group {frame.group} != seq {frame.seq})")
    if frame.key and not codec:
        raise WireError("video: a keyframe carries its codec string")
    if not (0 <= frame.frame <= _MAX_U64 and 1 <= frame.width <= 0xFFFF and 1 <= frame.height <= 0xFFFF):
        raise WireError(f"video: frame {frame.frame} or size {frame.width}x{frame.height} out of range")
    if len(epoch) > 255 or len(codec) > 255 or not math.isfinite(frame.captured_at):
        raise WireError("video: epoch or codec longer than 255 bytes, or a capture time that is not finite")
    header = _HEADER.pack(
        _MAGIC,
        _KEY if frame.key else 0,
        len(stream),
        len(epoch),
        len(codec),
        frame.seq,
        frame.group,
        frame.frame,
        frame.captured_at,
        frame.width,
        frame.height,
        len(description),
    )
    return b"".join((header, stream, epoch, codec, description, frame.data))


def is_video(data: bytes) -> bool:
    """Whether ``data`` is a binary video frame (only the magic is checked)."""
    return data[: len(_MAGIC)] == _MAGIC


def _unpack(data: bytes) -> tuple[int, int, int, int, int, int, int, float, int, int, int]:
    if len(data) < VIDEO_HEADER_SIZE:
        raise WireError(f"video: {len(data)} bytes, shorter than its {VIDEO_HEADER_SIZE}-byte header")
    magic, *fields = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise WireError(f"video: bad magic {magic!r}")
    flags, s, e, c, seq, group, frame, captured_at, width, height, d = fields
    if not 1 <= group <= seq:
        raise WireError(f"video: group {group} is not within 1..seq ({seq})")
    if flags & _KEY and group != seq:
        raise WireError(f"video: a keyframe starts its own group (group {group} != seq {seq})")
    if not math.isfinite(captured_at):
        raise WireError(f"video: captured_at {captured_at} is not finite")
    if VIDEO_HEADER_SIZE + s + e + c + d > len(data):
        raise WireError("video: the header's lengths run past the end of the message")
    return flags, s, e, c, seq, group, frame, captured_at, width, height, d


def peek_video(data: bytes) -> VideoPeek:
    """Read the routing fields of a video frame: one ``struct`` call, no picture decoding.

    Raises:
        WireError: Not a video frame, or a header that contradicts itself.
    """
    flags, s, e, _c, seq, group, _frame, captured_at, _w, _h, _d = _unpack(data)
    start = VIDEO_HEADER_SIZE + s
    try:
        epoch = data[start : start + e].decode()
    except UnicodeDecodeError:
        raise WireError("video: the epoch is not UTF-8") from None
    return VideoPeek(
        epoch=epoch, seq=seq, group=group, key=bool(flags & _KEY), captured_at=captured_at, size=len(data)
    )


def decode_video(data: bytes) -> VideoFrame:
    """Decode a binary video frame.

    Raises:
        WireError: Not a video frame, or a malformed header (a bad stream name, a keyframe
            without its codec, lengths past the end).
    """
    flags, s, e, c, seq, group, frame, captured_at, width, height, d = _unpack(data)
    key = bool(flags & _KEY)
    if width == 0 or height == 0:
        raise WireError(f"video: size {width}x{height}")
    if key and not c:
        raise WireError("video: a keyframe without its codec string")
    at = VIDEO_HEADER_SIZE
    try:
        stream = data[at : at + s].decode("ascii")
        epoch = data[at + s : at + s + e].decode()
        codec = data[at + s + e : at + s + e + c].decode("ascii")
    except UnicodeDecodeError:
        raise WireError("video: stream, epoch or codec is not text") from None
    at += s + e + c
    return VideoFrame(
        stream=check_stream_name(stream),
        epoch=epoch,
        seq=seq,
        group=group,
        frame=frame,
        captured_at=captured_at,
        width=width,
        height=height,
        key=key,
        codec=codec,
        description=bytes(data[at : at + d]),
        data=bytes(data[at + d :]),
    )
