"""``motion``: regions that changed against a learned background (MOG2)."""

from __future__ import annotations

import cv2
import numpy as np

from framecast.wire import Detection

__all__ = ["Motion"]

_GROWTH = 2  # dilation iterations with a 3x3 kernel: boxes grow by this many pixels per side


class Motion:
    """Finds moving regions: MOG2 background subtraction, a morphological opening, contour boxes.

    Stateful: it learns the background from the frames it sees, so feed it consecutive frames of
    one camera. The first frame only seeds the model (everything would look new).

    Args:
        min_area: Smallest box reported, in frame pixels.
        work_width: Frames wider than this are shrunk to it first (speed; boxes are scaled back).
        learning_rate: How fast the background model adapts per frame. An object that stops
            becomes background after roughly ``0.1 / learning_rate`` frames (30 by default); a
            moving one never does. (MOG2's automatic rate learns so fast in the first seconds that
            slow objects vanish into the background, hence a fixed one.)
        threshold: MOG2 variance threshold: higher ignores fainter changes.
    """

    def __init__(
        self,
        *,
        min_area: int = 400,
        work_width: int = 320,
        learning_rate: float = 1 / 300,
        threshold: float = 25.0,
    ) -> None:
        self.min_area = min_area
        self.work_width = work_width
        self.learning_rate = learning_rate
        self._model = cv2.createBackgroundSubtractorMOG2(varThreshold=threshold, detectShadows=False)
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._seeded = False

    def __call__(self, frame: np.ndarray) -> list[Detection]:
        height, width = frame.shape[:2]
        scale = min(1.0, self.work_width / width)
        small = (
            cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else frame
        )
        small = cv2.GaussianBlur(small, (3, 3), 0)
        if not self._seeded:
            self._model.apply(small, learningRate=1.0)  # the first frame is the background
            self._seeded = True
            return []
        mask = self._model.apply(small, learningRate=self.learning_rate)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)
        mask = cv2.dilate(mask, self._kernel, iterations=_GROWTH)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_small_area = self.min_area * scale * scale
        found: list[Detection] = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            # Undo the dilation's growth (it is there to join fragments, not to pad boxes).
            x, y, w, h = x + _GROWTH, y + _GROWTH, w - 2 * _GROWTH, h - 2 * _GROWTH
            if w <= 0 or h <= 0 or w * h < min_small_area:
                continue
            filled = float(np.count_nonzero(mask[y : y + h, x : x + w])) / (w * h)
            found.append(
                Detection(
                    label="motion",
                    confidence=round(min(1.0, filled), 3),
                    box=(
                        min(width, x / scale),
                        min(height, y / scale),
                        min(width, (x + w) / scale),
                        min(height, (y + h) / scale),
                    ),
                )
            )
        return found
