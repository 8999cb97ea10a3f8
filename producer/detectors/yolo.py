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
from producer.detectors.onnx_meta import names_from_metadata

__all__ = ["COCO", "Layout", "Letterbox", "Yolo", "decode", "layout", "letterbox"]

COCO: tuple[str, ...] = (
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


@dataclass(frozen=True, slots=True)
class Layout:
    """How to read a model's output table.

    Attributes:
        objectness: YOLOv5/v7 (a box score before the class scores) rather than YOLOv8/v11.
        channel_first: Boxes are columns (``[4 + C, N]``) rather than rows (``[N, 5 + C]``).
        classes: Number of class scores per box.
    """

    objectness: bool
    channel_first: bool
    classes: int


_LAYOUTS = "YOLOv5/v7 [1, N, 5 + classes] or YOLOv8/v11 [1, 4 + classes, N]"


def layout(shape: Sequence[int], names: Sequence[str] | None = None) -> Layout:
    """The layout of an output of ``shape``, given the class names when known.

    With names, one axis must hold 4 + classes values per box (v8) or 5 + classes (v5); without,
    84 and 85 are COCO's v8 and v5. Otherwise the shorter axis holds the values (exports have
    thousands of candidates), and boxes as columns mean v8, as rows v5.

    Raises:
        ValueError: No supported layout explains ``shape``; the text names it and what would.
    """
    dims = [int(d) for d in shape]
    while len(dims) > 2 and dims[0] == 1:
        dims = dims[1:]
    if len(dims) != 2:
        raise ValueError(f"output of shape {list(shape)} is not a detection table ({_LAYOUTS})")
    # Either axis may hold the values per box; the shorter one is the likelier.
    orientations = [(True, dims[0]), (False, dims[1])]
    if dims[0] > dims[1]:
        orientations.reverse()
    if names is not None:
        for channel_first, values in orientations:
            if values in (4 + len(names), 5 + len(names)):
                objectness = values == 5 + len(names)
                return Layout(objectness=objectness, channel_first=channel_first, classes=len(names))
        raise ValueError(
            f"output of shape {list(shape)} has {orientations[0][1]} values per box; {len(names)} class "
            f"names need {4 + len(names)} (YOLOv8/v11) or {5 + len(names)} (YOLOv5/v7)"
        )
    for channel_first, values in orientations:
        if values in (4 + len(COCO), 5 + len(COCO)):
            objectness = values == 5 + len(COCO)
            return Layout(objectness=objectness, channel_first=channel_first, classes=len(COCO))
    channel_first, values = orientations[0]
    objectness = not channel_first
    classes = values - (5 if objectness else 4)
    if classes < 1:
        raise ValueError(f"output of shape {list(shape)} has too few values per box for {_LAYOUTS}")
    return Layout(objectness=objectness, channel_first=channel_first, classes=classes)


def decode(
    output: np.ndarray,
    box: Letterbox,
    *,
    confidence: float = 0.25,
    nms: float = 0.45,
    names: Sequence[str] | None = None,
    shape: Layout | None = None,
) -> list[Detection]:
    """Turn a YOLO output tensor into detections in frame pixels.

    Args:
        output: The raw output, ``[1, N, 5 + C]`` (v5) or ``[1, 4 + C, N]`` (v8), batch of one.
        box: How the frame was letterboxed.
        confidence: Lowest score kept (v5: objectness x class score; v8: class score).
        nms: IoU threshold of per-class non-maximum suppression.
        names: Class names (``class N`` labels without); 80-class models get COCO's.
        shape: The output's layout, when already known (:func:`layout` of it otherwise).

    Raises:
        ValueError: The output has a shape no YOLO layout explains.
    """
    table = np.asarray(output, dtype=np.float32)
    found_layout = shape or layout(table.shape, names)
    while table.ndim > 2 and table.shape[0] == 1:
        table = table[0]
    if found_layout.channel_first:
        table = table.T
    if names is None and found_layout.classes == len(COCO):
        names = COCO
    first_class = 5 if found_layout.objectness else 4
    class_scores = table[:, first_class:]
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(table)), class_ids]
    if found_layout.objectness:
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

    Class names come from ``classes`` if given, else from the model's own ``names`` metadata
    (Ultralytics exports carry it), else COCO's for 80-class models, else ``class N``. The output
    layout is found once, at load, by running the model on a blank input.

    Args:
        path: The ``.onnx`` file.
        input_size: The model's square input size.
        confidence: Lowest score kept.
        nms: IoU threshold of non-maximum suppression.
        classes: File of class names, one per line.

    Raises:
        DetectorError: The file is missing, is not a model OpenCV can run, or its outputs match no
            supported layout (the message names the shapes seen).
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
            raise DetectorError(f"cannot load {path} as an ONNX model: {_cv_detail(exc)}") from None
        self.names: Sequence[str] | None = (
            classes_from_file(classes) if classes else names_from_metadata(path)
        )
        """Class names, or None when the model has none (labels are then ``class N``)."""
        self.input_size = input_size
        self.confidence = confidence
        self.nms = nms
        self.layout = self._probe(path)
        """The output layout, found at load."""
        if self.names is None and self.layout.classes == len(COCO):
            self.names = COCO

    def _probe(self, path: str) -> Layout:
        """Run the model once on a blank input and read its output layout."""
        blank = np.zeros((1, 3, self.input_size, self.input_size), np.float32)
        try:
            self._net.setInput(blank)
            outputs = self._net.forward(self._net.getUnconnectedOutLayersNames())
        except cv2.error as exc:
            raise DetectorError(
                f"{path} does not run on a {self.input_size}x{self.input_size} input "
                f"(set --input-size to the model's): {_cv_detail(exc)}"
            ) from None
        shapes = [list(np.shape(o)) for o in outputs]
        if len(shapes) != 1:
            # Segmentation and pose exports add outputs (mask prototypes...) this predictor cannot use.
            raise DetectorError(
                f"{path}: the model has {len(shapes)} outputs, of shapes {', '.join(map(str, shapes))}; "
                f"a detection model has one: {_LAYOUTS}"
            )
        try:
            return layout(shapes[0], self.names)
        except ValueError as exc:
            raise DetectorError(f"{path}: {exc}") from None

    def __call__(self, frame: np.ndarray) -> list[Detection]:
        square, box = letterbox(frame, self.input_size)
        blob = cv2.dnn.blobFromImage(square, 1 / 255.0, (self.input_size, self.input_size), swapRB=True)
        self._net.setInput(blob)
        output = self._net.forward()
        return decode(
            output, box, confidence=self.confidence, nms=self.nms, names=self.names, shape=self.layout
        )


def _cv_detail(exc: cv2.error) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else "unreadable"
