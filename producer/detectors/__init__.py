"""Predictors and the loader that turns a ``--detector`` value into one.

A predictor is any callable ``(frame) -> detections``: ``frame`` is a BGR ``numpy`` array,
detections are :class:`framecast.wire.Detection` (or ``(label, confidence, (x1, y1, x2, y2))``
tuples) with boxes in frame pixels. It may keep state (a background model); it is only ever called
from one thread at a time.

Where a predictor comes from, in the order :func:`load` tries:

* a built-in name: ``motion``, ``faces``, ``people``, ``qr``;
* ``onnx:PATH``: a YOLO-style ONNX model run with onnxruntime (OpenCV DNN where it is absent);
* ``module:attribute``: your own code; a class is instantiated once with no arguments, any other
  callable is used as it is;
* a name registered in the entry-point group ``framecast.detectors`` (same rule as above).
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeAlias

import numpy as np

from framecast.exceptions import FramecastError
from framecast.wire import Detection

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "DetectorError",
    "Options",
    "Predictor",
    "choices",
    "clip",
    "load",
]

Predictor: TypeAlias = Callable[[np.ndarray], Iterable[Any] | None]
"""``(BGR frame) -> detections`` (None counts as nothing found); see the module docstring."""

ENTRY_POINT_GROUP = "framecast.detectors"


class DetectorError(FramecastError, ValueError):
    """A ``--detector`` value that names no usable predictor; the text says why."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Options:
    """Tuning for the built-in predictors (each reads the fields it needs).

    Attributes:
        min_area: motion: smallest region reported, in frame pixels.
        confidence: onnx: lowest score reported.
        nms: onnx: IoU threshold of non-maximum suppression.
        classes: onnx: file of class names, one per line.
        input_size: onnx: square model input size.
        engine: onnx: ``auto`` (onnxruntime, else OpenCV DNN), ``onnxruntime`` or ``opencv``.
        device: onnx: where onnxruntime runs the model (:mod:`producer.devices`).
        threads: onnx: threads per inference (0: the engine's default, one per core).
    """

    min_area: int = 400
    confidence: float = 0.25
    nms: float = 0.45
    classes: str | None = None
    input_size: int = 640
    engine: str = "auto"
    device: str = "auto"
    threads: int = 0


def _motion(options: Options) -> Predictor:
    from producer.detectors.motion import Motion

    return Motion(min_area=options.min_area)


def _faces(options: Options) -> Predictor:
    from producer.detectors.faces import Faces

    return Faces()


def _people(options: Options) -> Predictor:
    from producer.detectors.people import People

    return People()


def _qr(options: Options) -> Predictor:
    from producer.detectors.qr import QRCodes

    return QRCodes()


BUILTIN: dict[str, Callable[[Options], Predictor]] = {
    "motion": _motion,
    "faces": _faces,
    "people": _people,
    "qr": _qr,
}
"""Built-in predictors by name: each entry builds a fresh predictor from :class:`Options`."""


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def choices() -> list[str]:
    """Every accepted form of ``--detector``, for error messages and ``--help``."""
    return [*BUILTIN, "onnx:PATH", "module:callable", *sorted(_entry_points())]


def load(spec: str, *, options: Options | None = None) -> Predictor:
    """Build the predictor a ``--detector`` value names.

    Args:
        spec: ``motion``, ``faces``, ``people``, ``qr``, ``onnx:PATH``, ``module:attribute`` or an
            entry-point name.
        options: Tuning for built-in predictors.

    Returns:
        A ready predictor.

    Raises:
        DetectorError: Unknown name, missing model, import failure...; one line saying what.
    """
    options = options or Options()
    spec = spec.strip()
    if spec in BUILTIN:
        return BUILTIN[spec](options)
    if spec.startswith("onnx:"):
        path = spec[len("onnx:") :]
        from producer.detectors.yolo import Yolo

        return Yolo(
            path,
            input_size=options.input_size,
            confidence=options.confidence,
            nms=options.nms,
            classes=options.classes,
            engine=options.engine,
            device=options.device,
            threads=options.threads,
        )
    if ":" in spec:
        module_name, _, attribute = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise DetectorError(f"cannot import {module_name!r}: {exc}") from None
        except Exception as exc:
            raise DetectorError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
        target: Any = module
        for part in attribute.split("."):
            if not hasattr(target, part):
                raise DetectorError(f"module {module_name!r} has no attribute {attribute!r}")
            target = getattr(target, part)
        return _instantiate(target, spec)
    entry_points = _entry_points()
    if spec in entry_points:
        try:
            target = entry_points[spec].load()
        except Exception as exc:
            raise DetectorError(f"loading entry point {spec!r} failed: {type(exc).__name__}: {exc}") from None
        return _instantiate(target, spec)
    raise DetectorError(f"unknown detector {spec!r} (choose from: {', '.join(choices())})")


def _instantiate(target: Any, spec: str) -> Predictor:
    if isinstance(target, type):
        try:
            target = target()
        except Exception as exc:
            raise DetectorError(f"creating {spec} failed: {type(exc).__name__}: {exc}") from None
    if not callable(target):
        raise DetectorError(f"{spec} is not callable (a predictor is a function frame -> detections)")
    predictor: Predictor = target
    return predictor


def clip(detections: Iterable[Any] | None, width: int, height: int) -> tuple[Detection, ...]:
    """Validate a predictor's output and clip its boxes to the frame.

    Accepts :class:`Detection` objects, ``(label, confidence, box)`` sequences and
    ``{"label", "confidence", "box"}`` mappings. Boxes that fall entirely outside the frame are
    dropped; confidences are clamped to 0..1.

    Raises:
        TypeError: Something that is not a detection (the predictor is at fault).
    """
    out: list[Detection] = []
    if detections is None:
        return ()
    label: Any
    confidence: Any
    box: Any
    for index, item in enumerate(detections):
        if isinstance(item, Detection):
            label, confidence, box = item.label, item.confidence, item.box
        elif isinstance(item, dict):
            label, confidence, box = item.get("label"), item.get("confidence"), item.get("box")
        elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 3:
            label, confidence, box = item
        else:
            raise TypeError(
                f"detection {index}: expected a Detection or (label, confidence, box), got {item!r}"
            )
        if not isinstance(label, str):
            raise TypeError(f"detection {index}: label must be a string, got {label!r}")
        try:
            score = float(confidence)
            x1, y1, x2, y2 = (float(c) for c in box)
        except (TypeError, ValueError):
            raise TypeError(
                f"detection {index}: expected a number and 4 box coordinates, got {confidence!r}, {box!r}"
            ) from None
        if not all(math.isfinite(v) for v in (score, x1, y1, x2, y2)):
            raise TypeError(f"detection {index}: not a finite number in {confidence!r}, {box!r}")
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            continue
        box_out = (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
        out.append(Detection(label=label, confidence=min(1.0, max(0.0, score)), box=box_out))
    return tuple(out)


def classes_from_file(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a text file, one per line (blank lines and ``#`` comments ignored).

    Raises:
        DetectorError: The file cannot be read.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise DetectorError(f"cannot read class names from {path}: {exc.strerror or exc}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
