"""``onnx:PATH``: a YOLO-style detection model run with OpenCV DNN.

Handles the two common output layouts of exported YOLO models:

* YOLOv5/v7: ``[1, N, 5 + classes]``, rows of ``cx, cy, w, h, objectness, class scores...``;
* YOLOv8/v11: ``[1, 4 + classes, N]``, columns of ``cx, cy, w, h, class scores...``.

Boxes are in model-input pixels; the frame is letterboxed into the square input (aspect kept,
grey padding) and boxes are mapped back to frame pixels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from framecast.wire import Detection
from producer.detectors import DetectorError, classes_from_file

__all__ = ["COCO", "Letterbox", "Yolo", "decode", "letterbox"]

COCO: tuple[str, ...] = (
    " ",
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)
"""The 80 COCO class names, used for 80-class models when no ``--classes`` file is given."""


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a frame was fitted into the model input: ``input = frame * scale + (pad_x, pad_y)``."""

    scale: float
    pad_x: float
    pad_y: float
    width: int
    height: int


def letterbox(frame: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Resize ``frame`` into a ``size`` x ``size`` square, aspect kept, padded with grey (114)."""
    height, width = frame.shape[:2]
    scale = min(size / width, size / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    square = cv2.copyMakeBorder(
        resized,
        pad_y,
        size - new_h - pad_y,
        pad_x,
        size - new_w - pad_x,
        cv2.BORDER_CONSTANT,
        value=(114, 114, 114),
    )
    return square, Letterbox(scale, float(pad_x), float(pad_y), width, height)


def decode(
    output: np.ndarray,
    box: Letterbox,
    *,
    confidence: float = 0.25,
    nms: float = 0.45,
    names: Sequence[str] | None = None,
) -> list[Detection]:
    """Turn a YOLO output tensor into detections in frame pixels.

    Args:
        output: The raw output, ``[1, N, 5 + C]`` (v5) or ``[1, 4 + C, N]`` (v8), batch of one.
        box: How the frame was letterboxed.
        confidence: Lowest score kept (v5: objectness x class score; v8: class score).
        nms: IoU threshold of per-class non-maximum suppression.
        names: Class names; decides the layout when its length matches, else the longer axis
            is taken as the box axis and only channel-first outputs are read as v8.

    Raises:
        ValueError: The output has a shape no YOLO layout explains.
    """
    table = np.asarray(output, dtype=np.float32)
    while table.ndim > 2 and table.shape[0] == 1:
        table = table[0]
    if table.ndim != 2:
        raise ValueError(f"model output of shape {np.shape(output)} is not a YOLO detection table")
    transposed = table.shape[0] < table.shape[1]
    if transposed:
        table = table.T
    channels = table.shape[1]
    if names is not None and channels == 5 + len(names):
        objectness = True
    elif names is not None and channels == 4 + len(names):
        objectness = False
    elif names is not None:
        raise ValueError(
            f"model output has {channels} values per box; {len(names)} class names need "
            f"{4 + len(names)} (YOLOv8) or {5 + len(names)} (YOLOv5)"
        )
    else:
        objectness = not transposed
    first_class = 5 if objectness else 4
    if channels <= first_class:
        raise ValueError(f"model output has {channels} values per box: too few for a YOLO layout")
    class_scores = table[:, first_class:]
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(table)), class_ids]
    if objectness:
        scores = scores * table[:, 4]
    keep = scores >= confidence
    if not keep.any():
        return []
    rows, scores, class_ids = table[keep], scores[keep], class_ids[keep]
    cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    x1 = (cx - w / 2 - box.pad_x) / box.scale
    y1 = (cy - h / 2 - box.pad_y) / box.scale
    x2 = (cx + w / 2 - box.pad_x) / box.scale
    y2 = (cy + h / 2 - box.pad_y) / box.scale
    x1, x2 = np.clip(x1, 0, box.width), np.clip(x2, 0, box.width)
    y1, y2 = np.clip(y1, 0, box.height), np.clip(y2, 0, box.height)
    rects = [
        [float(a), float(b), float(c - a), float(d - b)] for a, b, c, d in zip(x1, y1, x2, y2, strict=True)
    ]
    kept = cv2.dnn.NMSBoxesBatched(rects, scores.tolist(), class_ids.tolist(), confidence, nms)
    found: list[Detection] = []
    for i in sorted(np.asarray(kept, dtype=int).reshape(-1).tolist(), key=lambda j: -float(scores[j])):
        if x2[i] <= x1[i] or y2[i] <= y1[i]:
            continue
        found.append(
            Detection(
                label=_label(int(class_ids[i]), names),
                confidence=round(min(1.0, max(0.0, float(scores[i]))), 4),
                box=(float(x1[i]), float(y1[i]), float(x2[i]), float(y2[i])),
            )
        )
    return found


def _label(class_id: int, names: Sequence[str] | None) -> str:
    if names is not None and 0 <= class_id < len(names):
        return names[class_id]
    return f"class {class_id}"


class Yolo:
    """A YOLO ONNX model as a predictor.

    Args:
        path: The ``.onnx`` file.
        input_size: The model's square input size.
        confidence: Lowest score kept.
        nms: IoU threshold of non-maximum suppression.
        classes: File of class names, one per line; COCO's names for 80-class models otherwise.

    Raises:
        DetectorError: The file is missing or is not a model OpenCV can run.
    """

    def __init__(
        self,
        path: str,
        *,
        input_size: int = 640,
        confidence: float = 0.25,
        nms: float = 0.45,
        classes: str | None = None,
    ) -> None:
        if not path:
            raise DetectorError("onnx: needs a model path, e.g. onnx:yolov8n.onnx")
        if not os.path.isfile(path):
            raise DetectorError(f"no such ONNX model: {path}")
        try:
            self._net = cv2.dnn.readNetFromONNX(path)
        except cv2.error as exc:
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
            raise DetectorError(f"cannot load {path} as an ONNX model: {detail}") from None
        self._names: Sequence[str] | None = classes_from_file(classes) if classes else None
        self.input_size = input_size
        self.confidence = confidence
        self.nms = nms

    def __call__(self, frame: np.ndarray) -> list[Detection]:
        square, box = letterbox(frame, self.input_size)
        blob = cv2.dnn.blobFromImage(square, 1 / 255.0, (self.input_size, self.input_size), swapRB=True)
        self._net.setInput(blob)
        output = self._net.forward()
        names = self._names
        if names is None:
            channels = min(np.squeeze(output).shape) if np.squeeze(output).ndim == 2 else 0
            names = COCO if channels in (84, 85) else None
        return decode(output, box, confidence=self.confidence, nms=self.nms, names=names)
