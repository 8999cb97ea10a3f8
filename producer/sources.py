"""Sources: classify a ``--source`` value and open it as a :class:`Reader`.

Sources are opened by *openers*: functions that return a :class:`Reader`. :func:`opener` makes one
from a parsed ``--source`` value; tests and embedders pass their own.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from framecast.exceptions import FramecastError
from producer.synthetic import Scene

__all__ = [
    "Opener",
    "Reader",
    "Source",
    "SourceError",
    "opener",
    "parse_source",
]

SYNTHETIC_FPS = 30.0
_NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")


class SourceError(FramecastError, RuntimeError):
    """A source that cannot be used; the text says which and why."""


class Reader(Protocol):
    """An open source."""

    def read(self) -> np.ndarray | None:
        """The next BGR frame, or None when the source ended or failed."""

    def close(self) -> None:
        """Release the source (called once, from the thread that read it)."""


# A reader may also have ``pace``: the frame rate it plays a recording at (a file, a synthetic
# scene), whose own clock is then its frame count, or None for a live source (camera, stream),
# whose clock is the time a frame is read. A busy producer plays a recording slower, never
# skipping a frame of it, so only the recording's clock says how far apart two frames are.


Opener = Callable[[], Reader]
"""Opens a source; raises (any exception) when it cannot, and is called again to reopen."""

SourceKind = Literal["synthetic", "device", "file", "network"]


@dataclass(frozen=True, slots=True)
class Source:
    """A parsed ``--source`` value.

    Attributes:
        kind: ``synthetic``, ``device``, ``file`` or ``network``.
        target: The device index, path or URL as given.
    """

    kind: SourceKind
    target: str

    @property
    def description(self) -> str:
        """A short description without credentials, safe to log and publish."""
        if self.kind == "synthetic":
            return self.target.lower() if ":" in self.target else "synthetic"
        if self.kind == "device":
            return f"device {self.target}"
        if self.kind == "file":
            return Path(self.target).name
        return _without_credentials(self.target)

    @property
    def finite(self) -> bool:
        """Whether the source ends (a file) rather than fails when it runs out of frames."""
        return self.kind == "file"


def parse_source(text: str) -> Source:
    """Classify a ``--source`` value (no I/O).

    Raises:
        SourceError: The value is empty.
    """
    text = text.strip()
    if not text:
        raise SourceError("the source is empty")
    if text.lower() == "synthetic":
        return Source("synthetic", text)
    if text.lower().startswith("synthetic:"):
        from producer.scenes import scene_named  # a scripted scene (producer/scenes.py)

        try:
            scene_named(text.partition(":")[2])
        except KeyError as exc:
            raise SourceError(exc.args[0]) from None
        return Source("synthetic", text)
    if text.isdigit():
        return Source("device", text)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) and urlsplit(text).scheme.lower() in _NETWORK_SCHEMES:
        return Source("network", text)
    return Source("file", text)


def _without_credentials(url: str) -> str:
    """``url`` without user:password and without the query (which often carries tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    with contextlib.suppress(ValueError):
        if parts.port is not None:
            host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def opener(source: Source, *, timeout: float = 10.0) -> Opener:
    """An opener for a parsed source.

    Args:
        source: What to open.
        timeout: Network sources: FFmpeg's open and read timeouts, in seconds.
    """
    if source.kind == "synthetic" and ":" in source.target:
        from producer import scenes

        scripted = scenes.scene_named(source.target.partition(":")[2])
        return lambda: _SyntheticReader(
            lambda i: scenes.render(scripted, i), fps=scenes.FPS, size=(scenes.WIDTH, scenes.HEIGHT)
        )
    if source.kind == "synthetic":
        return _scene_reader
    if source.kind == "device":
        return lambda: _open_device(int(source.target))
    if source.kind == "file":
        return lambda: _open_file(source.target)
    return lambda: _open_network(source.target, timeout=timeout)


def _open_device(index: int) -> Reader:
    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"cannot open camera device {index}: no such device, or it is busy")
    return _CaptureReader(cap, fps=None)


def _open_file(path: str) -> Reader:
    if not os.path.exists(path):
        raise SourceError(f"no such file: {path}")
    if os.path.isdir(path):
        raise SourceError(f"{path} is a directory, not a video file")
    mode = os.stat(path).st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        # Opening a named pipe waits, inside FFmpeg and for ever, for something to write to it.
        kind = "named pipe (FIFO)" if stat.S_ISFIFO(mode) else "socket"
        raise SourceError(
            f"{path} is a {kind}, not a video file: opening it would wait for a writer with no end;"
            " stream into framecast through rtsp:// or http:// instead, or record to a file"
        )
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"cannot read {path} as a video (unknown format or codec)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    # Some containers report no rate; 30 fps is what most cameras record.
    rate = fps if math.isfinite(fps) and 0 < fps <= 1000 else 30.0
    return _CaptureReader(cap, fps=rate)


def _open_network(url: str, *, timeout: float) -> Reader:
    if urlsplit(url).scheme.lower().startswith("rtsp"):
        # UDP loses packets on busy networks (grey smears); TCP is what users expect by default.
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    ms = max(1, round(timeout * 1000))
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise SourceError("unreachable, refused, or not a video stream")
    return _CaptureReader(cap, fps=None)


class _Pacer:
    """Sleeps so that frames come out at ``fps``; resynchronises after a hiccup instead of bursting."""

    def __init__(self, fps: float) -> None:
        self._interval = 1.0 / fps
        self._next = time.monotonic()

    def wait(self) -> None:
        now = time.monotonic()
        if self._next > now:
            time.sleep(self._next - now)
            self._next += self._interval
        else:
            late = now - self._next
            self._next = (now if late > self._interval else self._next) + self._interval


class _CaptureReader:
    """An OpenCV ``VideoCapture``, optionally paced to a file's native rate."""

    def __init__(self, cap: cv2.VideoCapture, *, fps: float | None) -> None:
        self._cap = cap
        self._pacer = _Pacer(fps) if fps else None
        self.pace = fps or None
        """The rate a file is played at (its own); None for a live source."""

    def read(self) -> np.ndarray | None:
        if self._pacer is not None:
            self._pacer.wait()
        ok, image = self._cap.read()
        if not ok or image is None:
            return None
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        return image

    @property
    def size(self) -> tuple[int, int] | None:
        """Width and height of the frames, as the backend reports them (None: unknown)."""
        width, height = (
            int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        return (width, height) if width > 0 and height > 0 else None

    def close(self) -> None:
        self._cap.release()


def _scene_reader() -> _SyntheticReader:
    scene = Scene()  # a fresh one per open, as a camera reopened
    return _SyntheticReader(scene.render, fps=SYNTHETIC_FPS, size=(scene.width, scene.height))


class _SyntheticReader:
    def __init__(self, render: Callable[[int], np.ndarray], *, fps: float, size: tuple[int, int]) -> None:
        self._render = render
        self._size = size
        self._pacer = _Pacer(fps)
        self.pace = fps
        """The scene's frame rate: frame ``i`` shows it ``i / pace`` seconds in, however late it is read."""
        self._index = 0

    def read(self) -> np.ndarray | None:
        self._pacer.wait()
        image = self._render(self._index)
        self._index += 1
        return image

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def close(self) -> None:
        pass
