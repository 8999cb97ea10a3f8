"""Decode framecast video with PyAV (FFmpeg's own decoders), and compare pictures with the scene."""

from __future__ import annotations

from collections.abc import Iterable

import av
import cv2
import numpy as np

from framecast import wire

DECODERS = {"vp8": "vp8", "vp09": "vp9", "avc1": "h264", "av01": "libdav1d"}
"""FFmpeg decoder per WebCodecs codec-string prefix."""


def decoder_for(codec: str) -> str:
    return DECODERS[codec.split(".", 1)[0]]


def decode(frames: Iterable[wire.VideoFrame]) -> list[tuple[wire.VideoFrame, np.ndarray]]:
    """Decode ``frames`` in order, starting at their first keyframe; each with its BGR picture.

    Raises:
        AssertionError: A frame that does not decode to exactly one picture.
        av.FFmpegError: FFmpeg refused the bitstream.
    """
    context = None
    out = []
    for frame in frames:
        if context is None:
            assert frame.key, f"the first frame (seq {frame.seq}) is not a keyframe"
            context = av.CodecContext.create(decoder_for(frame.codec), "r")
        pictures = context.decode(av.Packet(frame.data))
        assert len(pictures) == 1, f"seq {frame.seq} decoded to {len(pictures)} pictures"
        out.append((frame, pictures[0].to_ndarray(format="bgr24")))
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two pictures of one size, in dB (luma)."""
    ya = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(np.float64)
    yb = cv2.cvtColor(b, cv2.COLOR_BGR2GRAY).astype(np.float64)
    mse = float(np.mean((ya - yb) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-9))
