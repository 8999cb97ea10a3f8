"""Letterboxing and NMS around a detection model: vectorised, and the same answers as before."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest

from bench.engines import letterbox_before
from producer.detectors import Options, clip, load
from producer.detectors import boxes as boxes_module
from producer.detectors.boxes import Letterbox, blob, letterbox, nms
from producer.synthetic import Scene
from tests.support.onnx_models import SIZE, conv_model


@pytest.mark.parametrize("shape", [(480, 640), (720, 1280), (640, 480), (100, 100), (1080, 1920)])
def test_the_batched_blob_equals_the_former_per_frame_blob(shape: tuple[int, int]) -> None:
    frames = [Scene(width=shape[1], height=shape[0]).render(i) for i in (3, 40)]
    tensor, boxes = blob(frames, 320)
    assert tensor.shape == (2, 3, 320, 320) and tensor.dtype == np.float32
    for frame, one, box in zip(frames, tensor, boxes, strict=True):
        np.testing.assert_allclose(one, letterbox_before(frame, 320)[0], atol=1e-6)
        square, same = letterbox(frame, 320)
        assert same == box and (box.width, box.height) == (shape[1], shape[0])
        np.testing.assert_allclose(square[..., ::-1].transpose(2, 0, 1) / np.float32(255), one, atol=1e-6)


def test_frames_of_different_sizes_share_one_batch() -> None:
    tensor, boxes = blob([np.zeros((480, 640, 3), np.uint8), np.zeros((240, 320, 3), np.uint8)], 64)
    assert boxes == [Letterbox(0.1, 0.0, 8.0, 640, 480), Letterbox(0.2, 0.0, 8.0, 320, 240)]
    assert tensor.shape == (2, 3, 64, 64)


@pytest.mark.parametrize("many", [False, True], ids=["opencv", "rounds"])
def test_nms_keeps_what_opencvs_nms_keeps(many: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if many:  # the bounded rounds, which serve above OPENCV_NMS_MAX candidates
        monkeypatch.setattr(boxes_module, "OPENCV_NMS_MAX", 0)
    rng = np.random.default_rng(3)
    for _ in range(20):
        count = int(rng.integers(1, 200))
        xy = rng.uniform(0, 300, (count, 2))
        wh = rng.uniform(5, 80, (count, 2))
        boxes = np.hstack([xy, xy + wh]).astype(np.float32)
        scores = rng.uniform(0.3, 1.0, count).astype(np.float32)
        classes = rng.integers(0, 3, count)
        ours = nms(boxes, scores, classes, iou=0.45, max_detections=1000)
        rects = np.hstack([xy, wh]).astype(np.float64)
        theirs = cv2.dnn.NMSBoxesBatched(rects, scores, classes.astype(np.int32), 0.0, 0.45)
        assert sorted(ours.tolist()) == sorted(np.asarray(theirs).reshape(-1).tolist())
        assert list(scores[ours]) == sorted(scores[ours], reverse=True)  # best first


@pytest.mark.parametrize("many", [False, True], ids=["opencv", "rounds"])
def test_nms_is_per_class_and_bounded_by_max_detections(many: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if many:
        monkeypatch.setattr(boxes_module, "OPENCV_NMS_MAX", 0)
    same = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    assert nms(same, np.array([0.9, 0.8]), np.array([0, 0]), iou=0.5).tolist() == [0]
    assert nms(same, np.array([0.9, 0.8]), np.array([0, 1]), iou=0.5).tolist() == [0, 1]
    apart = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(1000)], np.float32)
    kept = nms(apart, np.linspace(1, 0.5, 1000), np.zeros(1000, int), iou=0.5, max_detections=300)
    assert kept.tolist() == list(range(300))
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0, int), iou=0.5).size == 0


def test_both_engines_find_the_same_boxes_with_a_model_that_computes(tmp_path: object) -> None:
    """A convolution over every pixel: the engines agree on the arithmetic, not only the decoding."""
    path = f"{tmp_path}/conv.onnx"
    onnx.save(conv_model(), path)
    frames = [Scene(width=640, height=480).render(i) for i in (3, 50, 90)]
    found = {}
    for engine in ("onnxruntime", "opencv"):
        predictor = load(f"onnx:{path}", options=Options(input_size=SIZE, engine=engine, confidence=0.5))
        found[engine] = [clip(r, 640, 480) for r in predictor.batch(frames)]  # type: ignore[attr-defined]
    assert sum(len(r) for r in found["onnxruntime"]) >= 3
    for ours, theirs in zip(found["onnxruntime"], found["opencv"], strict=True):
        assert [d.label for d in ours] == [d.label for d in theirs]
        for a, b in zip(ours, theirs, strict=True):
            assert a.confidence == pytest.approx(b.confidence, abs=1e-3)
            assert a.box == pytest.approx(b.box, abs=0.05)
