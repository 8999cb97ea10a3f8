"""Annotated preview pictures: the frame, shrunk, with the detections drawn on it, as JPEG."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from framecast.wire import Detection

__all__ = ["annotate", "render"]

_COLORS = ((0, 200, 255), (255, 160, 0), (80, 220, 80), (220, 80, 220), (60, 60, 255), (255, 255, 80))


def _color(label: str) -> tuple[int, int, int]:
    # Stable per label across frames and runs (str hash is salted per process).
    return _COLORS[sum(label.encode()) % len(_COLORS)]


def annotate(image: np.ndarray, detections: Sequence[Detection], *, width: int) -> np.ndarray:
    """A copy of ``image`` no wider than ``width`` with each detection's box and label drawn.

    Args:
        image: The BGR frame the detections were made on.
        detections: Boxes in ``image`` pixels.
        width: Largest output width (the frame is never scaled up).
    """
    height0, width0 = image.shape[:2]
    scale = min(1.0, width / width0)
    if scale < 1.0:
        size = (max(1, round(width0 * scale)), max(1, round(height0 * scale)))
        out: np.ndarray = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    else:
        out = image.copy()
    thickness = max(1, round(out.shape[1] / 320))
    font_scale = max(0.35, out.shape[1] / 1280)
    for detection in detections:
        x1, y1, x2, y2 = (round(c * scale) for c in detection.box)
        color = _color(detection.label)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        text = f"{detection.label[:40]} {detection.confidence:.2f}"
        (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = y1 - th - baseline - 2 if y1 - th - baseline - 2 >= 0 else y1
        left = max(0, min(x1, out.shape[1] - tw - 4))  # keep the label inside the picture
        cv2.rectangle(out, (left, top), (left + tw + 4, top + th + baseline + 2), color, -1)
        cv2.putText(
            out,
            text,
            (left + 2, top + th + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return out


def render(
    image: np.ndarray, detections: Sequence[Detection], *, width: int = 640, quality: int = 75
) -> tuple[bytes, int, int]:
    """The annotated preview as JPEG bytes, with its width and height."""
    picture = annotate(image, detections, width=width)
    ok, jpeg = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return jpeg.tobytes(), picture.shape[1], picture.shape[0]
