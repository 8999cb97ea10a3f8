"""``motion``: regions that changed against a learned background (MOG2)."""

from __future__ import annotations

import cv2
import numpy as np

from framecast.wire import Detection

__all__ = ["Motion"]


class Motion:
    """Finds moving regions: MOG2 background subtraction, a morphological opening, contour boxes.

    Stateful: it learns the background from the frames it sees, so feed it consecutive frames of
    one camera. The first frame only seeds the model (everything would look new).

    Args:
        min_area: Smallest box reported, in frame pixels.
        work_width: Frames wider than this are shrunk to it first (speed; boxes are scaled back).
        history: Frames the background model remembers.
        threshold: MOG2 variance threshold: higher ignores fainter changes.
    """

    def __init__(
        self, *, min_area: int = 400, work_width: int = 320, history: int = 300, threshold: float = 25.0
    ) -> None:
        self.min_area = min_area
        self.work_width = work_width
        self._model = cv2.createBackgroundSubtractorMOG2(
            history=history, varThreshold=threshold, detectShadows=False
        )
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._seeded = False

    def __call__(self, frame: np.ndarray) -> list[Detection]:
        height, width = frame.shape[:2]
        scale = min(1.0, self.work_width / width)
        small = (
            cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else frame
        )
        small = cv2.GaussianBlur(small, (3, 3), 0)
        mask = self._model.apply(small)
        if not self._seeded:
            self._seeded = True
            return []
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)
        mask = cv2.dilate(mask, self._kernel, iterations=2)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_small_area = self.min_area * scale * scale
        found: list[Detection] = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            if w * h < min_small_area:
                continue
            filled = float(np.count_nonzero(mask[y : y + h, x : x + w])) / (w * h)
            found.append(
                Detection(
                    "motion",
                    round(min(1.0, filled), 3),
                    (
                        min(width, x / scale),
                        min(height, y / scale),
                        min(width, (x + w) / scale),
                        min(height, (y + h) / scale),
                    ),
                )
            )
        return found
