"""``faces``: frontal faces with OpenCV's Haar cascade."""

from __future__ import annotations

import importlib

import cv2
import numpy as np

from framecast.wire import Detection

__all__ = ["Faces"]

CASCADE = "haarcascade_frontalface_default.xml"


class Faces:
    """Finds frontal faces.

    Haar cascades give no score; ``confidence`` grows with the number of overlapping raw hits
    that were merged into the box (``n / (n + min_neighbors)``), a usable ranking but not a
    probability.

    Args:
        min_size: Smallest face in pixels.
        scale_factor: Image pyramid step.
        min_neighbors: Raw hits needed to keep a face: higher means fewer false faces.
    """

    def __init__(self, *, min_size: int = 30, scale_factor: float = 1.1, min_neighbors: int = 5) -> None:
        path = importlib.import_module("cv2.data").haarcascades + CASCADE
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"cannot load the face cascade {path} (OpenCV 5 no longer ships it)")
        self.min_size = min_size
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors

    def __call__(self, frame: np.ndarray) -> list[Detection]:
        gray = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        boxes, hits = self._cascade.detectMultiScale2(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        height, width = frame.shape[:2]
        found: list[Detection] = []
        for (x, y, w, h), n in zip(boxes, hits, strict=True):
            confidence = float(n) / (float(n) + self.min_neighbors)
            box = (float(x), float(y), float(min(width, x + w)), float(min(height, y + h)))
            found.append(Detection("face", round(confidence, 3), box))
        return found
