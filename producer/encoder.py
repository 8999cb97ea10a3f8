"""Video encoding with PyAV (FFmpeg): the codecs framecast offers and one real-time encoder.

The producer encodes the frames it hands to its predictor, so every encoded picture has exactly
one result computed on it (same ``epoch`` and ``frame``). Settings are real-time ones: no
look-ahead and no B-frames (a frame leaves the encoder as soon as it went in), a keyframe every
``keyframe_interval`` seconds of capture time (where a joining viewer starts and the most a lagging
one skips), and a bitrate cap. Everything here is synchronous; :mod:`producer.videofeed` runs it
on its own thread (FFmpeg releases the GIL while it encodes).

Which codecs the installed ``av`` wheel can encode is checked, not assumed (:func:`check_codec`):
PyAV's wheels bundle libvpx (VP8, VP9), libx264 (H.264) and SVT-AV1, but a PyAV built against
another FFmpeg may lack any of them.
"""

from __future__ import annotations

import contextlib
import fractions
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import cv2
import numpy as np

from framecast.exceptions import FramecastError

__all__ = [
    "CODECS",
    "DEFAULT_CODEC",
    "Codec",
    "EncodeError",
    "Encoder",
    "Packet",
    "check_codec",
    "check_size",
    "video_size",
]


class EncodeError(FramecastError, RuntimeError):
    """A codec cannot be used: unknown, missing from the installed FFmpeg, or it refused a setting."""


@dataclass(frozen=True)
class Codec:
    """One codec framecast can send to browsers.

    Attributes:
        name: What ``--video-codec`` takes and the heartbeat's ``video`` says.
        encoder: The FFmpeg encoder.
        licence: The encoder library's licence (what a deployment that uses it ships).
        containers: File extensions ``framecast record`` can write this codec into.
        options: FFmpeg private options for real-time encoding.
    """

    name: str
    encoder: str
    licence: str
    containers: tuple[str, ...]
    options: Mapping[str, str] = field(default_factory=dict)


CODECS: dict[str, Codec] = {
    c.name: c
    for c in (
        # cpu-used 8 and no look-ahead: libvpx's real-time mode, as in WebRTC.
        Codec(
            "vp8",
            "libvpx",
            "BSD-3-Clause",
            ("webm",),
            {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "auto-alt-ref": "0"},
        ),
        Codec(
            "vp9",
            "libvpx-vp9",
            "BSD-3-Clause",
            ("webm", "mp4"),
            {
                "deadline": "realtime",
                "cpu-used": "8",
                "lag-in-frames": "0",
                "auto-alt-ref": "0",
                "row-mt": "1",
            },
        ),
        # Constrained baseline: every H.264 decoder takes it. forced-idr: a forced keyframe is an
        # IDR (a point a decoder can start at), scenecut=0: keyframes only where asked for.
        Codec(
            "h264",
            "libx264",
            "GPL-2.0-or-later",
            ("mp4",),
            {
                "preset": "veryfast",
                "tune": "zerolatency",
                "profile": "baseline",
                "forced-idr": "1",
                "x264-params": "scenecut=0",
            },
        ),
        # rtc=1: SVT-AV1's real-time mode (low-delay prediction, no frames held back); with
        # maxrate = bitrate FFmpeg runs it in CBR, the only rate control low delay allows.
        Codec(
            "av1",
            "libsvtav1",
            "BSD-3-Clause-Clear",
            ("webm", "mp4"),
            {"preset": "10", "svtav1-params": "rtc=1"},
        ),
    )
}
DEFAULT_CODEC = "vp8"


class Packet(NamedTuple):
    """One encoded frame as it left the encoder."""

    data: bytes
    key: bool
    codec: str  # the WebCodecs codec string
    width: int
    height: int


def _av() -> Any:
    # SVT-AV1 prints to stderr itself, not through FFmpeg's log; FFmpeg's log reaches Python's
    # logging as "libav.*". Both are quiet: an EncodeError carries FFmpeg's last error line.
    os.environ.setdefault("SVT_LOG", "0")
    logging.getLogger("libav").setLevel(logging.CRITICAL)
    try:
        import av
    except ImportError as exc:  # the producer extra installs it
        raise EncodeError(f"video needs PyAV (pip install 'framecast[producer]'): {exc}") from None
    av.logging.set_level(av.logging.ERROR)
    return av


def check_codec(name: str) -> Codec:
    """The codec called ``name``, if the installed PyAV can encode it.

    Raises:
        EncodeError: An unknown name, or one whose encoder the installed FFmpeg lacks.
    """
    codec = CODECS.get(name.lower())
    if codec is None:
        raise EncodeError(f"unknown codec {name!r} (choose {', '.join(CODECS)})")
    av = _av()
    try:
        av.codec.Codec(codec.encoder, "w")
    except Exception:  # UnknownCodecError, or a codec without an encoder
        usable = [c.name for c in CODECS.values() if _has_encoder(av, c.encoder)]
        raise EncodeError(
            f"the installed PyAV {av.__version__} has no {codec.encoder} encoder for {codec.name}"
            f" (its FFmpeg was built without it); usable here: {', '.join(usable) or 'none'}"
        ) from None
    return codec


def _has_encoder(av: Any, name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


def video_size(width: int, height: int, *, max_width: int) -> tuple[int, int]:
    """The encoded size of a ``width`` x ``height`` source: at most ``max_width`` wide, never larger
    than the source, aspect kept, both even (4:2:0 chroma needs whole 2x2 blocks)."""
    scale = min(1.0, max_width / width)
    return max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2)


def check_size(codec: Codec, width: int, height: int, *, fps: float, bitrate: int) -> None:
    """Open ``codec`` for ``width`` x ``height`` frames and encode one, as the producer will.

    Raises:
        EncodeError: The encoder refuses that size (e.g. SVT-AV1 below 64 pixels, VP8 over 16383).
    """
    encoder = Encoder(codec, width=width, height=height, fps=fps, bitrate=bitrate, keyframe_interval=1.0)
    try:
        encoder.encode(np.zeros((height, width, 3), np.uint8), 0.0)
    finally:
        encoder.close()


def _level(table: tuple[tuple[int, int], ...], pixels: int) -> int:
    return next((level for limit, level in table if pixels <= limit), table[-1][1])


# Largest luma picture per level (VP9 spec, annex A; AV1 spec, annex A.3); the stream claims the
# smallest level its picture fits, which is what browsers check against their decoders.
_VP9_LEVELS = ((36864, 10), (73728, 11), (122880, 20), (245760, 21), (552960, 30), (983040, 31),
               (2228224, 40), (8912896, 50), (35651584, 60))  # fmt: skip
_AV1_LEVELS = ((147456, 0), (278784, 1), (665856, 4), (1065024, 5), (2359296, 8), (8912896, 12),
               (35651584, 16))  # fmt: skip


def _h264_string(data: bytes) -> str | None:
    """``avc1.PPCCLL`` from the sequence parameter set of an Annex B access unit."""
    at = 0
    while (at := data.find(b"\x00\x00\x01", at)) != -1 and at + 6 < len(data):
        at += 3
        if data[at] & 0x1F == 7:  # SPS: profile_idc, constraint flags, level_idc follow
            return f"avc1.{data[at + 1]:02X}{data[at + 2]:02X}{data[at + 3]:02X}"
    return None


def codec_string(codec: Codec, width: int, height: int, keyframe: bytes) -> str:
    """The WebCodecs codec string of a stream (``vp8``, ``vp09.00.30.08``, ``avc1.42C01E``...)."""
    pixels = width * height
    if codec.name == "vp9":
        return f"vp09.00.{_level(_VP9_LEVELS, pixels):02d}.08"
    if codec.name == "av1":
        return f"av01.0.{_level(_AV1_LEVELS, pixels):02d}M.08"
    if codec.name == "h264":
        found = _h264_string(keyframe)
        if found is None:
            raise EncodeError("libx264 produced a keyframe without a sequence parameter set")
        return found
    return codec.name


class Encoder:
    """A real-time encoder for one run of frames of one size (not thread-safe: one thread uses it).

    Args:
        codec: What to encode with (from :func:`check_codec`).
        width: Encoded width (even).
        height: Encoded height (even).
        fps: The frame rate rate control plans for (the producer's ``--max-fps``).
        bitrate: Bitrate cap in bits/s.
        keyframe_interval: Seconds of capture time between keyframes.

    Raises:
        EncodeError: The encoder refused these settings.
    """

    def __init__(
        self, codec: Codec, *, width: int, height: int, fps: float, bitrate: int, keyframe_interval: float
    ) -> None:
        av = _av()
        self.codec = codec
        self.width = width
        self.height = height
        self._interval = keyframe_interval
        self._picture_type = av.video.frame.PictureType.I
        self._frame_class = av.VideoFrame
        rate = fractions.Fraction(fps).limit_denominator(1000) if fps > 0 else fractions.Fraction(30)
        ctx = av.CodecContext.create(codec.encoder, "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base = fractions.Fraction(1, 1000)  # pts in ms of capture time
        ctx.framerate = rate
        # Keyframes come where this class forces them; the encoder's own limit is a backstop.
        ctx.gop_size = max(1, round(4 * keyframe_interval * float(rate)))
        ctx.max_b_frames = 0
        # One thread: a frame is a few ms of work, and encoder threads that wait on each other
        # on a busy machine (the predictor shares it) made VP8's delay 85 ms on average, not 4.
        ctx.thread_count = 1
        ctx.bit_rate = bitrate
        # The cap: a one-second rate buffer that never holds more than the bitrate.
        ctx.options = {**codec.options, "maxrate": str(bitrate), "bufsize": str(bitrate)}
        try:
            ctx.open()
        except Exception as exc:
            raise EncodeError(_reason(exc)) from None
        self._ctx: Any = ctx
        self._start: float | None = None
        self._last_pts = -1
        self._next_key = float("-inf")
        self._string: str | None = None

    def encode(self, image: np.ndarray, captured_at: float, *, key: bool = False) -> list[Packet]:
        """Encode one BGR frame (any size: it is scaled to the encoder's).

        Args:
            image: The frame, BGR, as captured.
            captured_at: Its capture time (Unix seconds): the frame's timestamp, and what the
                keyframe schedule counts.
            key: Make this frame a keyframe whatever the schedule says (a chain was broken).

        Returns:
            The packets the frame produced (one, with real-time settings).

        Raises:
            EncodeError: FFmpeg failed on the frame.
        """
        if image.shape[1] != self.width or image.shape[0] != self.height:
            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        yuv = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
        frame = self._frame_class.from_ndarray(yuv, format="yuv420p")
        if self._start is None:
            self._start = captured_at
        # Strictly increasing, as encoders require, even if the clock steps back.
        self._last_pts = max(self._last_pts + 1, round((captured_at - self._start) * 1000))
        frame.pts = self._last_pts
        if key or captured_at >= self._next_key:
            frame.pict_type = self._picture_type
            self._next_key = captured_at + self._interval
        try:
            packets = self._ctx.encode(frame)
        except Exception as exc:
            raise EncodeError(_reason(exc)) from None
        out = []
        for packet in packets:
            data = bytes(packet)
            if packet.is_keyframe and self._string is None:
                self._string = codec_string(self.codec, self.width, self.height, data)
            out.append(Packet(data, bool(packet.is_keyframe), self._string or "", self.width, self.height))
        return out

    def close(self) -> None:
        """Release the encoder (frames still inside are dropped: nobody waits for them)."""
        if self._ctx is None:
            return
        with contextlib.suppress(Exception):
            self._ctx.encode(None)  # end of stream: SVT-AV1 complains when closed without one
        self._ctx = None


def _reason(exc: BaseException) -> str:
    """FFmpeg's own words, without PyAV's call syntax around them."""
    text = str(exc)
    if "last error log:" in text:
        text = text.split("last error log:", 1)[1]
    return " ".join(text.split())[:300] or type(exc).__name__
