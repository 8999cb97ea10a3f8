"""Part ``predictors``: what runs an ONNX detector, and what it costs around the model.

* **engines**: the YOLOv8n graph (:mod:`bench.models`) on OpenCV DNN and on onnxruntime's CPU
  provider, per thread count and batch size: frames/s and the time of one call (a batch);
* **pre/post**: letterbox + blob of a 640x480 frame (the former ``copyMakeBorder`` +
  ``blobFromImage`` and the vectorised one now used), and decode + NMS of the model's own
  output, of 10 objects' worth of boxes and of 8400 distinct candidates (the worst case);
* **transport**: a frame's round trip to another process (:mod:`bench.transport`).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench import models, transport
from bench.stats import percentiles

__all__ = ["EngineOptions", "letterbox_before", "run"]


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    """What part ``predictors`` runs (see ``python -m bench --help``)."""

    model: str = "yolov8n"
    """``yolov8n`` (built with Ultralytics in its own environment) or ``standin`` (YOLOv8n's shape)."""
    threads: tuple[int, ...] = (1, 2)
    batches: tuple[int, ...] = (1, 2, 4)
    seconds: float = 4.0
    max_calls: int = 200
    transport_frames: int = 300


class _Times(list[float]):
    """Wall seconds of each call, and the process's CPU seconds over all of them."""

    cpu: float = 0.0


def _timed(call: Callable[[], Any], *, seconds: float, max_calls: int) -> _Times:
    for _ in range(2):  # warm-up: allocations, first-run graph optimisation
        call()
    times = _Times()
    cpu = time.process_time()
    end = time.perf_counter() + seconds
    while len(times) < max_calls and (len(times) < 3 or time.perf_counter() < end):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    times.cpu = time.process_time() - cpu
    return times


def _entry(engine: str, provider: str, threads: int, batch: int, times: _Times) -> dict[str, Any]:
    call_ms = percentiles(times, scale=1e3)
    return {
        "engine": engine,
        "provider": provider,
        "threads": threads,
        "batch": batch,
        "calls": len(times),
        "fps": round(batch * len(times) / sum(times), 2),
        "call_ms": call_ms,
        "ms_per_frame": round(float(np.median(times)) * 1e3 / batch, 2),
        # CPU (all threads) per frame: what other work on a shared machine does not inflate.
        "cpu_ms_per_frame": round(times.cpu * 1e3 / (batch * len(times)), 2),
    }


def _engines(
    options: EngineOptions, fixed: str, dynamic: str, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    import cv2

    from producer.detectors.engines import CvEngine, OrtEngine
    from producer.devices import Device

    rng = np.random.default_rng(1)
    entries: list[dict[str, Any]] = []
    blobs = {b: rng.random((b, 3, 640, 640), np.float32) for b in options.batches}
    threads_before = cv2.getNumThreads()
    try:
        for threads in options.threads:
            cv = CvEngine(fixed, threads=threads)
            times = _timed(
                lambda cv=cv: cv.run(blobs[1][:1]), seconds=options.seconds, max_calls=options.max_calls
            )
            entries.append(_entry("opencv", "opencv", threads, 1, times))
            del cv
            for batch in options.batches:
                ort = OrtEngine(fixed if batch == 1 else dynamic, device=Device("cpu"), threads=threads)
                blob = blobs[batch]
                times = _timed(
                    lambda o=ort, b=blob: o.run(b), seconds=options.seconds, max_calls=options.max_calls
                )
                entries.append(_entry("onnxruntime", ort.provider, threads, batch, times))
                del ort
                gc.collect()
            say(
                "  "
                + ", ".join(
                    f"{e['engine']} b{e['batch']} {e['ms_per_frame']} ms/frame"
                    for e in entries
                    if e["threads"] == threads
                )
                + f" ({threads} thread{'s' if threads > 1 else ''})"
            )
    finally:
        cv2.setNumThreads(threads_before)
    return entries


def letterbox_before(frame: np.ndarray, size: int) -> np.ndarray:
    """The producer's letterbox + blob before the vectorised one (for the comparison)."""
    import cv2

    height, width = frame.shape[:2]
    scale = min(size / width, size / height)
    new_w, new_h = round(width * scale), round(height * scale)
    resized = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    square = cv2.copyMakeBorder(
        resized,
        pad_y,
        size - new_h - pad_y,
        pad_x,
        size - new_w - pad_x,
        cv2.BORDER_CONSTANT,
        value=(114,) * 3,
    )
    blob: np.ndarray = cv2.dnn.blobFromImage(square, 1 / 255.0, (size, size), swapRB=True)
    return blob


def _decode_before(output: np.ndarray, box: Any) -> int:
    """The producer's decode + NMS before vectorising: a Python list of boxes for OpenCV's NMS."""
    import cv2

    table = output[0].T
    class_scores = table[:, 4:]
    ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(table)), ids]
    keep = scores >= 0.25
    if not keep.any():
        return 0
    rows, scores, ids = table[keep], scores[keep], ids[keep]
    x1 = (rows[:, 0] - rows[:, 2] / 2 - box.pad_x) / box.scale
    y1 = (rows[:, 1] - rows[:, 3] / 2 - box.pad_y) / box.scale
    w, h = rows[:, 2] / box.scale, rows[:, 3] / box.scale
    rects = [[float(a), float(b), float(c), float(d)] for a, b, c, d in zip(x1, y1, w, h, strict=True)]
    kept = cv2.dnn.NMSBoxesBatched(rects, scores.tolist(), ids.tolist(), 0.25, 0.45)
    return len(sorted(np.asarray(kept, dtype=int).reshape(-1).tolist(), key=lambda j: -float(scores[j])))


def _tables(real: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    objects = np.zeros((1, 84, 8400), np.float32)
    for k in range(80):  # 10 objects, 8 overlapping candidates each, as a trained model answers
        o = k // 8
        objects[0, :4, k] = [60 + o * 55 + rng.uniform(-3, 3), 320 + rng.uniform(-3, 3), 40, 80]
        objects[0, 4 + o, k] = 0.5 + rng.uniform(0, 0.4)
    worst = np.zeros((1, 84, 8400), np.float32)
    worst[0, 0], worst[0, 1] = rng.uniform(0, 640, 8400), rng.uniform(80, 560, 8400)
    worst[0, 2:4] = rng.uniform(10, 100, (2, 8400))
    worst[0, 4:] = rng.uniform(0, 1, (80, 8400)) ** 8  # every candidate above 0.25, few overlaps
    return {"model output": real[:1], "10 objects": objects, "8400 candidates": worst}


def _pre_post(model: str, options: EngineOptions) -> dict[str, Any]:
    from producer.detectors.boxes import blob
    from producer.detectors.yolo import Yolo, decode, layout
    from producer.synthetic import Scene

    frame = Scene(width=640, height=480).render(10)
    quick = {"seconds": min(1.0, options.seconds), "max_calls": 100}
    out: dict[str, Any] = {
        "letterbox_before_ms": percentiles(_timed(lambda: letterbox_before(frame, 640), **quick), scale=1e3),
        "letterbox_ms": percentiles(_timed(lambda: blob([frame], 640), **quick), scale=1e3),
        "decode": [],
    }
    yolo = Yolo(model, engine="onnxruntime", device="cpu")
    tensor, boxes = blob([frame], 640)
    real = yolo.engine.run(tensor)[0]
    shape = layout((1, 84, 8400))
    for name, table in _tables(real).items():
        kept = len(decode(table, boxes[0], shape=shape))
        out["decode"].append(
            {
                "table": name,
                "candidates": int((table[0, 4:].max(axis=0) >= 0.25).sum()),
                "kept": kept,
                "ms": percentiles(
                    _timed(lambda t=table: decode(t, boxes[0], shape=shape), **quick), scale=1e3
                ),
                "before_ms": percentiles(
                    _timed(lambda t=table: _decode_before(t, boxes[0]), **quick), scale=1e3
                ),
            }
        )
    return out


def run(options: EngineOptions, *, say: Callable[[str], None]) -> dict[str, Any]:
    """Run part ``predictors``."""
    if options.model == "standin":
        fixed = dynamic = str(models.standin())
    else:
        fixed, dynamic = str(models.yolov8n(say=say)), str(models.yolov8n(dynamic=True, say=say))
    say(f"predictors: {options.model} on each engine")
    results: dict[str, Any] = {
        "model": options.model,
        "load_average_before": round(os.getloadavg()[0], 2),
        "engines": _engines(options, fixed, dynamic, say),
        "load_average_after": round(os.getloadavg()[0], 2),
    }
    say("predictors: letterbox and decode")
    results["pre_post"] = _pre_post(fixed, options)
    say("predictors: frame transport between processes")
    results["transport"] = transport.run(count=options.transport_frames)
    return results
