"""``qr``: QR codes, labelled with the text they hold."""

from __future__ import annotations

import cv2
import numpy as np

from framecast.wire import Detection

__all__ = ["QRCodes"]


class QRCodes:
    """Finds and decodes QR codes.

    A code that is found but cannot be decoded (blurred, cut off) is reported with the label
    ``"qr"`` and confidence 0.5; a decoded one with its text and confidence 1.0.
    """

    def __init__(self) -> None:
        self._detector = cv2.QRCodeDetector()

    def __call__(self, frame: np.ndarray) -> list[Detection]:
        found_any, texts, corners, _ = self._detector.detectAndDecodeMulti(frame)
        if not found_any or corners is None:
            return []
        height, width = frame.shape[:2]
        found: list[Detection] = []
        for text, quad in zip(texts, np.asarray(corners).reshape(-1, 4, 2), strict=True):
            x1, y1 = (float(v) for v in quad.min(axis=0))
            x2, y2 = (float(v) for v in quad.max(axis=0))
            box = (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
            if box[0] >= box[2] or box[1] >= box[3]:
                continue
            found.append(
                Detection(label=text, confidence=1.0, box=box)
                if text
                else Detection(label="qr", confidence=0.5, box=box)
            )
        return found
