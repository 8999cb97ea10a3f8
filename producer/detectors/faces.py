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
        work_width: Frames wider than this are shrunk to it first (the cascade's cost grows
            quickly with size; boxes are scaled back).
        min_size: Smallest face in pixels at the working size (24 is 32 in a 640-wide frame).
        scale_factor: Image pyramid step: larger is faster and misses more in-between sizes.
        min_neighbors: Raw hits needed to keep a face: higher means fewer false faces.
    """

    def __init__(
        self,
        *,
        work_width: int = 480,
        min_size: int = 24,
        scale_factor: float = 1.15,
        min_neighbors: int = 5,
    ) -> None:
        path = importlib.import_module("cv2.data").haarcascades + CASCADE
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"cannot load the face cascade {path} (OpenCV 5 no longer ships it)")
        self.work_width = work_width
        self.min_size = min_size
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors

    def __call__(self, frame: np.ndarray) -> list[Detection]:
        height, width = frame.shape[:2]
        scale = min(1.0, self.work_width / width)
        small = (
            cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else frame
        )
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))
        boxes, hits = self._cascade.detectMultiScale2(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        found: list[Detection] = []
        for (x, y, w, h), n in zip(boxes, hits, strict=True):
            confidence = float(n) / (float(n) + self.min_neighbors)
            box = (
                x / scale,
                y / scale,
                min(float(width), (x + w) / scale),
                min(float(height), (y + h) / scale),
            )
            found.append(Detection(label="face", confidence=round(confidence, 3), box=box))
        return found
