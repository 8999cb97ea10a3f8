"""``onnx:PATH``: a YOLO-style detection model, run by onnxruntime (or OpenCV DNN where it is absent).

Handles the two common output layouts of exported YOLO models:

* YOLOv5/v7: ``[1, N, 5 + classes]``, rows of ``cx, cy, w, h, objectness, class scores...``;
* YOLOv8/v11: ``[1, 4 + classes, N]``, columns of ``cx, cy, w, h, class scores...``.

Boxes are in model-input pixels; the frame is letterboxed into the square input (aspect kept,
grey padding) and boxes are mapped back to frame pixels. :meth:`Yolo.batch` does the same for
several frames in one inference (the shared worker, :mod:`producer.inference`, batches cameras).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from framecast.wire import Detection
from producer.detectors import DetectorError, classes_from_file
from producer.detectors.boxes import Letterbox, blob, letterbox, nms
from producer.detectors.coco import COCO
from producer.detectors.engines import Engine, open_engine
from producer.detectors.onnx_meta import names_from_metadata

__all__ = ["COCO", "MAX_DETECTIONS", "Layout", "Letterbox", "Yolo", "decode", "layout", "letterbox"]

MAX_DETECTIONS = 300
"""Most boxes reported per frame (Ultralytics' ``max_det``): bounds NMS and the message size."""


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
    max_detections: int = MAX_DETECTIONS,
) -> list[Detection]:
    """Turn a YOLO output tensor into detections in frame pixels, best first.

    Args:
        output: The raw output of one frame, ``[1, N, 5 + C]`` (v5) or ``[1, 4 + C, N]`` (v8).
        box: How the frame was letterboxed.
        confidence: Lowest score kept (v5: objectness x class score; v8: class score).
        nms: IoU threshold of per-class non-maximum suppression.
        names: Class names (``class N`` labels without); 80-class models get COCO's.
        shape: The output's layout, when already known (:func:`layout` of it otherwise).
        max_detections: Most detections kept (the best ones).

    Raises:
        ValueError: The output has a shape no YOLO layout explains.
    """
    table = np.asarray(output, dtype=np.float32)
    found_layout = shape or layout(table.shape, names)
    while table.ndim > 2 and table.shape[0] == 1:
        table = table[0]
    if names is None and found_layout.classes == len(COCO):
        names = COCO
    # Boxes as columns (v8's natural order): every step below reads rows of this view, no copy.
    columns = table if found_layout.channel_first else table.T
    first_class = 5 if found_layout.objectness else 4
    class_scores = columns[first_class:]
    class_ids = class_scores.argmax(axis=0)
    scores = np.take_along_axis(class_scores, class_ids[None], axis=0)[0]
    if found_layout.objectness:
        scores = scores * columns[4]
    keep = np.flatnonzero(scores >= confidence)
    if not keep.size:
        return []
    scores, class_ids = scores[keep], class_ids[keep]
    cx, cy, w, h = columns[:4, keep]
    corners = np.stack(
        [
            (cx - w / 2 - box.pad_x) / box.scale,
            (cy - h / 2 - box.pad_y) / box.scale,
            (cx + w / 2 - box.pad_x) / box.scale,
            (cy + h / 2 - box.pad_y) / box.scale,
        ],
        axis=1,
    )
    np.clip(corners[:, 0::2], 0, box.width, out=corners[:, 0::2])
    np.clip(corners[:, 1::2], 0, box.height, out=corners[:, 1::2])
    kept = _nms(corners, scores, class_ids, iou=nms, max_detections=max_detections)
    found: list[Detection] = []
    for i in kept.tolist():
        x1, y1, x2, y2 = corners[i].tolist()
        if x2 <= x1 or y2 <= y1:
            continue
        found.append(
            Detection(
                label=_label(int(class_ids[i]), names),
                confidence=round(min(1.0, max(0.0, float(scores[i]))), 4),
                box=(x1, y1, x2, y2),
            )
        )
    return found


_nms = nms  # decode()'s keyword argument of the same name shadows it


def _label(class_id: int, names: Sequence[str] | None) -> str:
    if names is not None and 0 <= class_id < len(names):
        return names[class_id]
    return f"class {class_id}"


class Yolo:
    """A YOLO ONNX model as a predictor, one frame (``__call__``) or several (:meth:`batch`) at a time.

    Class names come from ``classes`` if given, else from the model's own ``names`` metadata
    (Ultralytics exports carry it), else COCO's for 80-class models, else ``class N``. The output
    layout is found once, at load, by running the model on a blank input.

    Args:
        path: The ``.onnx`` file.
        input_size: The model's square input size.
        confidence: Lowest score kept.
        nms: IoU threshold of non-maximum suppression.
        classes: File of class names, one per line.
        engine: ``auto`` (onnxruntime, else OpenCV DNN), ``onnxruntime`` or ``opencv``.
        device: Where onnxruntime runs it (:mod:`producer.devices`).
        threads: Threads per inference (0: the engine's default).

    Raises:
        DetectorError: The file is missing, is not a model the engine can run, or its outputs
            match no supported layout (the message names the shapes seen).
        DeviceError: The device cannot be used here.
    """

    def __init__(
        self,
        path: str,
        *,
        input_size: int = 640,
        confidence: float = 0.25,
        nms: float = 0.45,
        classes: str | None = None,
        engine: str = "auto",
        device: str = "auto",
        threads: int = 0,
    ) -> None:
        if not path:
            raise DetectorError("onnx: needs a model path, e.g. onnx:yolov8n.onnx")
        if not os.path.isfile(path):
            raise DetectorError(f"no such ONNX model: {path}")
        self.engine: Engine = open_engine(path, engine=engine, device=device, threads=threads)
        """What runs the graph (its ``name`` and ``provider`` say which)."""
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
            outputs = self.engine.run(blank)
        except Exception as exc:  # the engines' own error types
            text = str(exc).strip().splitlines()
            raise DetectorError(
                f"{path} does not run on a {self.input_size}x{self.input_size} input "
                f"(set --input-size to the model's): {text[-1] if text else type(exc).__name__}"
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
        return self.batch([frame])[0]

    def batch(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Detections of each frame, from one inference over all of them (frames may differ in size)."""
        if not frames:
            return []
        tensor, boxes = blob(frames, self.input_size)
        output = self.engine.run(tensor)[0]
        return [
            decode(
                output[i : i + 1],
                box,
                confidence=self.confidence,
                nms=self.nms,
                names=self.names,
                shape=self.layout,
            )
            for i, box in enumerate(boxes)
        ]
