"""Frame capture: open a source, keep only its newest frame, reopen it when it fails.

A :class:`Grabber` thread reads frames as fast as the source delivers them into a one-slot
:class:`LatestFrame`; the consumer always takes the freshest frame, so a slow predictor never works
on a backlog (OpenCV's own buffering would otherwise hand it ever older frames). A frame replaced
before anyone took it is counted as skipped.

Sources are opened by *openers*: functions that return a :class:`Reader`. :func:`opener` makes one
from a ``--source`` value; tests and embedders pass their own.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from framecast.retry import backoff
from producer.synthetic import Scene

__all__ = [
    "Frame",
    "Grabber",
    "LatestFrame",
    "Opener",
    "Reader",
    "Source",
    "SourceError",
    "opener",
    "parse_source",
]

log = logging.getLogger(__name__)

SYNTHETIC_FPS = 30.0
_NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")


class SourceError(RuntimeError):
    """A source that cannot be used; the text says which and why."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured frame.

    Attributes:
        image: BGR pixels (height x width x 3, uint8).
        index: Running index from 0, increasing across reopens and loops.
        captured_at: Unix time the frame was read from the source.
    """

    image: np.ndarray
    index: int
    captured_at: float


class LatestFrame:
    """A one-slot buffer holding the newest frame; older untaken frames are dropped and counted.

    Thread-safe: a grabber thread puts, a consumer takes.

    Args:
        on_put: Called (in the putting thread, under no lock) after each new frame, e.g. to wake
            an event loop.
    """

    def __init__(self, *, on_put: Callable[[Frame], None] | None = None) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._taken = True
        self._next_index = 0
        self._closed = False
        self._on_put = on_put
        self.captured = 0
        """Frames put so far."""
        self.skipped = 0
        """Frames replaced by a newer one before anyone took them."""

    def put(self, image: np.ndarray) -> Frame:
        """Store ``image`` as the newest frame, stamping its index and capture time."""
        with self._cond:
            # Stamped under the lock: a frame stamped before a take() began is visible to it.
            frame = Frame(image, self._next_index, time.time())
            self._next_index += 1
            if not self._taken:
                self.skipped += 1
            self._frame = frame
            self._taken = False
            self.captured += 1
            self._cond.notify_all()
        if self._on_put is not None:
            self._on_put(frame)
        return frame

    def poll(self, *, after: int = -1, captured_since: float = 0.0) -> Frame | None:
        """The newest frame if its index is above ``after`` (marking it taken), else None.

        Args:
            after: Index of the last frame the caller had.
            captured_since: Also leave the frame if it was captured before this Unix time (a
                rate-limited consumer waits for a fresh frame rather than take one already aging).
        """
        with self._cond:
            frame = self._frame
            if frame is not None and frame.captured_at < captured_since:
                return None
            return self._take_locked(after)

    def take(self, *, after: int = -1, timeout: float | None = None) -> Frame | None:
        """Wait for a frame newer than ``after`` and take it.

        Returns:
            The newest frame, or None when ``timeout`` passed or the buffer is closed with no newer
            frame left.
        """
        with self._cond:
            self._cond.wait_for(
                lambda: self._closed or (self._frame is not None and self._frame.index > after), timeout
            )
            return self._take_locked(after)

    def discard(self) -> None:
        """Drop the untaken frame without counting it as skipped (the consumer is paused, not slow)."""
        with self._cond:
            self._taken = True

    def close(self) -> None:
        """No more frames will come: wake waiting takers."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._on_put is not None and self._frame is not None:
            self._on_put(self._frame)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _take_locked(self, after: int) -> Frame | None:
        frame = self._frame
        if frame is None or frame.index <= after:
            return None
        self._taken = True
        return frame


# --------------------------------------------------------------------------
# Sources


class Reader(Protocol):
    """An open source."""

    def read(self) -> np.ndarray | None:
        """The next BGR frame, or None when the source ended or failed."""

    def close(self) -> None:
        """Release the source (called once, from the thread that read it)."""


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
            return "synthetic"
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
    if source.kind == "synthetic":
        return lambda: _SyntheticReader(Scene(), fps=SYNTHETIC_FPS)
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

    def close(self) -> None:
        self._cap.release()


class _SyntheticReader:
    def __init__(self, scene: Scene, *, fps: float) -> None:
        self._scene = scene
        self._pacer = _Pacer(fps)
        self._index = 0

    def read(self) -> np.ndarray | None:
        self._pacer.wait()
        image = self._scene.render(self._index)
        self._index += 1
        return image

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------
# The grabber thread

_Outcome = Literal["ended", "failed", "stalled", "stopped"]


class Grabber:
    """Reads a source into a :class:`LatestFrame` on its own thread, reopening it when it fails.

    A failed or stalled source (no frame for ``stall_timeout``) is reopened with capped
    exponential backoff and jitter, forever. A read that hangs is abandoned on its thread (it
    releases its capture whenever it returns) and a fresh one is opened. A file that ends is
    reopened at once when ``repeat`` is set; otherwise the slot is closed and :attr:`ended` set.

    Args:
        open: Opens the source (raising when it cannot).
        slot: Where frames go.
        finite: The source ends rather than fails when it returns no frame (a file).
        repeat: Reopen a finite source when it ends.
        stall_timeout: Seconds without a frame before the source is reopened.
        first: An already open reader to start with (a start-up check opened it).
        description: How the source is named in logs (no credentials).
        on_state: Called with True when frames start flowing, False when the source is lost.
        backoff_base: First reopen delay in seconds (doubled per failure, with jitter).
        backoff_cap: Largest reopen delay in seconds.
    """

    def __init__(
        self,
        open: Opener,
        slot: LatestFrame,
        *,
        finite: bool = False,
        repeat: bool = False,
        stall_timeout: float = 10.0,
        first: Reader | None = None,
        description: str = "source",
        on_state: Callable[[bool], None] | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 10.0,
    ) -> None:
        self._open = open
        self._slot = slot
        self._finite = finite
        self._repeat = repeat
        self._stall_timeout = stall_timeout
        self._first = first
        self._description = description
        self._on_state = on_state
        self._delays = functools.partial(backoff, initial=backoff_base, maximum=backoff_cap)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="grabber", daemon=True)
        self._readers: list[threading.Thread] = []
        self._session = 0
        self._last_frame = time.monotonic()
        self.online = False
        """Whether the source is delivering frames."""
        self.reconnects = 0
        """Times the source was opened again after being lost (not counting file loops)."""
        self.ended = False
        """A finite source reached its end and will not be reopened."""

    def start(self) -> None:
        """Start reading on a background thread."""
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop reading, waiting up to ``timeout`` seconds for reads in progress to return.

        Returns:
            Whether every thread finished. A read still blocked inside the source (a dead network
            camera) keeps its thread; such a process should end with ``os._exit``, since letting
            the interpreter tear down a thread inside FFmpeg aborts it ("exception not rethrown").
        """
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in (self._thread, *self._readers):
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in (self._thread, *self._readers))

    def _supervise(self) -> None:
        reader = self._first
        self._first = None
        opened_before = reader is not None
        delays = self._delays()
        opening_failed = False
        rewinding = False  # reopening a file that ended, to loop: not a reconnect
        try:
            while not self._stop.is_set():
                if reader is None:
                    try:
                        reader = self._open()
                    except Exception as exc:  # any failure to open is worth another try
                        if not opening_failed:
                            log.warning("cannot open %s: %s; retrying", self._description, _one_line(exc))
                            opening_failed = True
                        self._stop.wait(next(delays))
                        continue
                    if opened_before and not rewinding:
                        self.reconnects += 1
                    opened_before = True
                    rewinding = False
                    opening_failed = False
                outcome, delivered = self._run_session(reader)
                reader = None
                if outcome == "stopped":
                    return
                if outcome == "ended" and self._finite:
                    if not self._repeat:
                        log.info("%s ended", self._description)
                        self.ended = True
                        return
                    rewinding = True
                    continue
                self._set_online(False)
                why = f"stalled (no frame for {self._stall_timeout:g} s)" if outcome == "stalled" else "lost"
                log.warning("%s %s; reopening", self._description, why)
                if delivered:
                    delays = self._delays()
                self._stop.wait(next(delays))
        finally:
            self._set_online(False)
            self._slot.close()

    def _run_session(self, reader: Reader) -> tuple[_Outcome, bool]:
        """Read from ``reader`` on a worker thread until it ends, fails, stalls or we stop."""
        self._session += 1
        session = self._session
        done = threading.Event()
        result: list[_Outcome] = []
        delivered = threading.Event()
        self._last_frame = time.monotonic()
        worker = threading.Thread(
            target=self._read_loop,
            args=(reader, session, done, result, delivered),
            name=f"reader-{session}",
            daemon=True,
        )
        self._readers = [t for t in self._readers if t.is_alive()]
        self._readers.append(worker)
        worker.start()
        poll = min(0.25, self._stall_timeout / 4)
        while True:
            if done.wait(poll):
                return (result[0] if result else "failed"), delivered.is_set()
            if self._stop.is_set():
                self._session += 1  # the reader sees it is superseded and closes its source
                return "stopped", delivered.is_set()
            if time.monotonic() - self._last_frame > self._stall_timeout:
                self._session += 1
                return "stalled", delivered.is_set()

    def _read_loop(
        self,
        reader: Reader,
        session: int,
        done: threading.Event,
        result: list[_Outcome],
        delivered: threading.Event,
    ) -> None:
        outcome: _Outcome = "failed"
        try:
            while self._session == session:
                if self._stop.is_set():
                    outcome = "stopped"
                    break
                image = reader.read()
                if self._session != session:
                    break
                if image is None:
                    outcome = "ended" if self._finite else "failed"
                    break
                self._last_frame = time.monotonic()
                if not delivered.is_set():
                    delivered.set()
                    self._set_online(True)
                self._slot.put(image)
        except Exception as exc:
            log.warning("reading %s failed: %s", self._description, _one_line(exc))
        finally:
            with contextlib.suppress(Exception):
                reader.close()
            result.append(outcome)
            done.set()

    def _set_online(self, online: bool) -> None:
        if online == self.online:
            return
        self.online = online
        if online:
            log.info(
                "%s online%s", self._description, f" (reconnect {self.reconnects})" if self.reconnects else ""
            )
        if self._on_state is not None:
            self._on_state(online)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
