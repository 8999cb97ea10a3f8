"""The newest-frame slot between the capture thread and the predictor.

A :class:`LatestFrame` holds one frame: the grabber replaces it as fast as the source delivers,
the consumer always takes the freshest, so a slow predictor never works on a backlog (OpenCV's own
buffering would otherwise hand it ever older frames). A frame replaced before anyone took it is
counted as skipped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Frame", "LatestFrame"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured frame.

    Attributes:
        image: BGR pixels (height x width x 3, uint8).
        index: Running index from 0, increasing across reopens and loops.
        captured_at: Unix time the frame was read from the source.
        shows: For a played recording (a file, a synthetic scene): the second of the recording's
            own clock the picture shows (``index`` over its frame rate), which a busy producer
            reads later than that, at ``captured_at``. None for a live source: ``captured_at``
            is then the time the picture shows.
    """

    image: np.ndarray
    index: int
    captured_at: float
    shows: float | None = None


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

    def put(self, image: np.ndarray, *, pace: float | None = None) -> Frame:
        """Store ``image`` as the newest frame, stamping its index and capture time.

        Args:
            image: The picture.
            pace: The frame rate of the recording it is a frame of (see :attr:`Frame.shows`),
                None for a live source.
        """
        with self._cond:
            # Stamped under the lock: a frame stamped before a take() began is visible to it.
            index = self._next_index
            frame = Frame(image, index, time.time(), index / pace if pace else None)
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
