"""The pixels around a detection model: letterboxing frames into its input, and NMS on its boxes.

Both are vectorised (numpy and OpenCV, no per-pixel or per-box Python): at a YOLOv8n's ~22
frames/s on 2 cores they must cost a small fraction of the ~45 ms inference. Measured by
``framecast bench --parts predictors`` (docs/performance.md): letterbox + blob well under 1 ms
for a 640x480 frame in a 640 input, NMS bounded by ``max_detections`` greedy rounds whatever the
candidate count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["OPENCV_NMS_MAX", "PAD", "Letterbox", "blob", "letterbox", "nms"]

PAD = 114
"""Grey of the padding, as in Ultralytics' exports' training."""


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a frame was fitted into the model input: ``input = frame * scale + (pad_x, pad_y)``."""

    scale: float
    pad_x: float
    pad_y: float
    width: int
    height: int


def _fit(width: int, height: int, size: int) -> tuple[Letterbox, int, int]:
    scale = min(size / width, size / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    return Letterbox(scale, float(pad_x), float(pad_y), width, height), new_w, new_h


def _place(frame: np.ndarray, square: np.ndarray, size: int) -> Letterbox:
    """Resize ``frame`` into the (already grey) ``square``, aspect kept, centred."""
    height, width = frame.shape[:2]
    box, new_w, new_h = _fit(width, height, size)
    resized = (
        frame
        if (new_w, new_h) == (width, height)
        else cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    )
    top, left = int(box.pad_y), int(box.pad_x)
    square[top : top + new_h, left : left + new_w] = resized
    return box


def letterbox(frame: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Resize ``frame`` into a ``size`` x ``size`` square, aspect kept, padded with grey (114)."""
    square = np.full((size, size, 3), PAD, np.uint8)
    return square, _place(frame, square, size)


def blob(frames: Sequence[np.ndarray], size: int) -> tuple[np.ndarray, list[Letterbox]]:
    """Letterbox BGR frames into one ``[N, 3, size, size]`` float32 RGB blob scaled to 0..1.

    Each frame is resized straight into its place in a grey canvas (no ``copyMakeBorder``), split
    into its channels (OpenCV's SIMD), and each channel scaled into its plane of the blob in one
    contiguous numpy pass. Single-threaded on purpose: OpenCV's ``blobFromImage``, the former way,
    spreads over its thread pool and, on a machine busy with other work, waited for it (measured
    0.8 to 14 ms per 640x480 frame against a steady ~0.4-0.7 ms here, docs/producer.md).
    """
    canvas = np.full((len(frames), size, size, 3), PAD, np.uint8)
    boxes = [_place(frame, canvas[i], size) for i, frame in enumerate(frames)]
    out = np.empty((len(frames), 3, size, size), np.float32)
    scale = np.float32(1 / 255)
    for index in range(len(frames)):
        blue, green, red = cv2.split(canvas[index])
        for channel, plane in enumerate((red, green, blue)):
            np.multiply(plane, scale, out=out[index, channel], casting="unsafe")
    return out, boxes


def nms(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, *, iou: float, max_detections: int = 300
) -> np.ndarray:
    """Per-class greedy non-maximum suppression; the indices kept, best score first.

    Boxes of different classes never suppress each other: each class is moved to its own region
    of the plane (the offset trick of torchvision's ``batched_nms``), so one pass serves all.
    Each round keeps the best box left and drops, in one vectorised step, those overlapping it by
    more than ``iou``; at most ``max_detections`` rounds (Ultralytics' ``max_det``), so a model
    answering thousands of distinct boxes costs bounded time. Up to :data:`OPENCV_NMS_MAX`
    candidates (a trained model's usual answer), OpenCV's NMS does the same, cheaper.

    Args:
        boxes: ``[N, 4]`` corners ``x1, y1, x2, y2``.
        scores: ``[N]`` confidences.
        classes: ``[N]`` class ids.
        iou: Overlap (intersection over union) above which the weaker box goes.
        max_detections: Most boxes kept.
    """
    if not len(boxes):
        return np.zeros(0, np.intp)
    boxes = np.asarray(boxes, np.float32)
    scores = np.asarray(scores, np.float32)
    if len(boxes) <= OPENCV_NMS_MAX:
        return _opencv_nms(boxes, scores, np.asarray(classes), iou=iou, max_detections=max_detections)
    span = float(np.abs(boxes).max()) + 1.0
    shifted = boxes + (np.asarray(classes, np.float32) * span)[:, None]
    x1, y1, x2, y2 = shifted.T
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_detections:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        w = np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest])
        h = np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest])
        inter = np.maximum(w, 0) * np.maximum(h, 0)
        union = areas[best] + areas[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou]
    return np.asarray(keep, np.intp)


OPENCV_NMS_MAX = 1000
"""Up to this many candidates, OpenCV's NMS (C++, cost ~ candidates x kept) is the cheaper one;
above, the bounded rounds here (a random or broken model answers thousands of distinct boxes:
OpenCV's took ~300-600 ms on 8400 of them, docs/producer.md). Both keep the same boxes."""


def _opencv_nms(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, *, iou: float, max_detections: int
) -> np.ndarray:
    rects = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).astype(np.float64)
    kept = np.asarray(
        cv2.dnn.NMSBoxesBatched(rects, scores, classes.astype(np.int32), -1.0, iou),  # type: ignore[arg-type]
        np.intp,
    ).reshape(-1)
    # Best first (OpenCV's order among equal scores is its own: ties go by index, as above).
    kept = kept[np.lexsort((kept, -scores[kept]))]
    return kept[:max_detections]
