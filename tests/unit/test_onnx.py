"""``onnx:PATH``: real ONNX files of YOLO exports' shapes (built with ``onnx``), run by onnxruntime and
by OpenCV DNN (the fallback where onnxruntime is absent): both engines must give the same boxes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from framecast.wire import Detection
from producer.detectors import DetectorError, Options, clip, load
from producer.detectors.onnx_meta import names_from_metadata
from producer.detectors.yolo import COCO, Layout, Letterbox, decode, layout, letterbox
from tests.support.onnx_models import EXPECTED, SIZE, v5_table, v8_table, write_model

FRAME = np.zeros((480, 640, 3), np.uint8)
ENGINES = ("onnxruntime", "opencv")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs once per engine, with the same expectations."""
    name: str = request.param
    return name


def _detect(spec: str, engine: str = "auto", **options: object) -> tuple[Detection, ...]:
    predictor = load(spec, options=Options(input_size=SIZE, engine=engine, **options))  # type: ignore[arg-type]
    assert predictor.engine.name == (engine if engine != "auto" else "onnxruntime")
    return clip(predictor(FRAME), 640, 480)


def check_v5(found: Sequence[Detection], names: Sequence[str]) -> None:
    """The detections :func:`v5_table` must give: dog then cat, boxes in frame pixels."""
    assert [d.label for d in found] == [names[1], names[0]]
    dog, cat = found
    assert dog.confidence == pytest.approx(0.72, abs=1e-3)
    assert dog.box == pytest.approx(EXPECTED, abs=0.01)
    assert cat.confidence == pytest.approx(0.6, abs=1e-3)
    assert cat.box == pytest.approx((480.0, 270.0, 640.0, 370.0), abs=0.01)


def test_a_yolov5_export_with_a_classes_file(tmp_path: Path, engine: str) -> None:
    model = write_model(tmp_path / "v5.onnx", [v5_table()], size=SIZE)
    names = tmp_path / "classes.txt"
    names.write_text("# pets\ncat\ndog\n")
    check_v5(_detect(f"onnx:{model}", engine, classes=str(names)), ["cat", "dog"])


def test_an_80_class_yolov5_export_gets_the_80_coco_names_not_objectness_as_a_label(
    tmp_path: Path, engine: str
) -> None:
    model = write_model(tmp_path / "v5.onnx", [v5_table(80)], size=SIZE)  # [1, 20, 85]
    check_v5(_detect(f"onnx:{model}", engine), COCO)  # class 1 is "bicycle", class 0 "person"
    assert COCO[:2] == ("person", "bicycle") and len(COCO) == 80


def test_an_80_class_yolov8_export_gets_coco_names_threshold_and_nms(tmp_path: Path, engine: str) -> None:
    model = write_model(tmp_path / "v8.onnx", [v8_table(80)], size=SIZE)  # [1, 84, 30]
    found = _detect(f"onnx:{model}", engine, confidence=0.25, nms=0.45)
    assert [d.label for d in found] == ["bicycle"]
    assert found[0].confidence == pytest.approx(0.9, abs=1e-3)
    assert found[0].box == pytest.approx(EXPECTED, abs=0.01)
    # A looser NMS keeps the duplicate; a lower threshold keeps the unsure box ("car", class 2).
    assert [d.label for d in _detect(f"onnx:{model}", engine, nms=0.99, confidence=0.1)] == [
        "bicycle",
        "bicycle",
        "car",
    ]


def test_a_yolov8_export_with_other_class_counts_is_labelled_by_index(tmp_path: Path, engine: str) -> None:
    model = write_model(tmp_path / "v8.onnx", [v8_table(3)], size=SIZE)  # [1, 7, 30]
    found = _detect(f"onnx:{model}", engine)
    assert [d.label for d in found] == ["class 1"]
    assert found[0].box == pytest.approx(EXPECTED, abs=0.01)


def test_class_names_are_read_from_the_models_metadata(tmp_path: Path, engine: str) -> None:
    ultralytics = {"names": str({0: "cat", 1: "dog", 2: "fox"}), "stride": "32", "task": "detect"}
    model = write_model(tmp_path / "v8.onnx", [v8_table(3)], size=SIZE, metadata=ultralytics)
    assert names_from_metadata(model) == ["cat", "dog", "fox"]
    assert [d.label for d in _detect(f"onnx:{model}", engine)] == ["dog"]
    listed = write_model(tmp_path / "v5.onnx", [v5_table()], size=SIZE, metadata={"names": '["cat", "dog"]'})
    check_v5(_detect(f"onnx:{listed}", engine), ["cat", "dog"])
    # A --classes file wins over the metadata.
    override = tmp_path / "classes.txt"
    override.write_text("ant\nbee\ncow\n")
    assert [d.label for d in _detect(f"onnx:{model}", engine, classes=str(override))] == ["bee"]


def test_metadata_without_usable_names_is_ignored(tmp_path: Path, engine: str) -> None:
    for value in ("{0: 'cat', 2: 'fox'}", "not python", "[1, 2]"):
        model = write_model(tmp_path / "m.onnx", [v8_table(3)], size=SIZE, metadata={"names": value})
        assert names_from_metadata(model) is None
        assert [d.label for d in _detect(f"onnx:{model}", engine)] == ["class 1"]
    bare = write_model(tmp_path / "bare.onnx", [v8_table(3)], size=SIZE)
    assert names_from_metadata(bare) is None


@pytest.mark.parametrize(
    ("outputs", "shown"),
    [
        ([np.zeros((1, 3, 20, 20), np.float32)], "[1, 3, 20, 20]"),  # a classifier's feature map
        ([np.zeros((1, 116, 30)), np.zeros((1, 32, 16, 16))], "[1, 116, 30], [1, 32, 16, 16]"),  # seg
        ([np.zeros((1, 30, 4))], "[1, 30, 4]"),  # boxes only, no scores
    ],
)
def test_a_model_matching_no_layout_fails_at_load_naming_its_shapes(
    tmp_path: Path, outputs: list[np.ndarray], shown: str
) -> None:
    model = write_model(tmp_path / "odd.onnx", outputs, size=SIZE)
    with pytest.raises(DetectorError) as caught:
        load(f"onnx:{model}", options=Options(input_size=SIZE))
    message = str(caught.value)
    assert shown in message and "YOLOv8" in message and "\n" not in message


def test_class_names_that_match_no_layout_fail_at_load(tmp_path: Path) -> None:
    model = write_model(tmp_path / "v8.onnx", [v8_table(3)], size=SIZE)
    names = tmp_path / "classes.txt"
    names.write_text("one\ntwo\nthree\nfour\n")
    with pytest.raises(DetectorError, match=r"\[1, 7, 30\] has 7 values per box; 4 class names need 8"):
        load(f"onnx:{model}", options=Options(input_size=SIZE, classes=str(names)))


def test_layouts_are_told_apart_by_shape_and_names() -> None:
    assert layout((1, 84, 8400)) == Layout(objectness=False, channel_first=True, classes=80)
    assert layout((1, 25200, 85)) == Layout(objectness=True, channel_first=False, classes=80)
    assert layout((1, 8400, 84)) == Layout(objectness=False, channel_first=False, classes=80)
    assert layout((1, 6, 8400)) == Layout(objectness=False, channel_first=True, classes=2)
    assert layout((1, 8400, 7)) == Layout(objectness=True, channel_first=False, classes=2)
    assert layout((1, 85, 8400), ["x"] * 81) == Layout(objectness=False, channel_first=True, classes=81)
    # Few candidates (fewer than values per box): the class count still finds the axis.
    assert layout((1, 20, 85)) == Layout(objectness=True, channel_first=False, classes=80)
    assert layout((1, 7, 3), ["a", "b", "c"]) == Layout(objectness=False, channel_first=True, classes=3)
    with pytest.raises(ValueError, match="not a detection table"):
        layout((2, 84, 8400))


def test_letterbox_keeps_the_aspect_and_centres_the_frame() -> None:
    square, box = letterbox(np.full((480, 640, 3), 255, np.uint8), SIZE)
    assert square.shape == (SIZE, SIZE, 3)
    assert box == Letterbox(0.1, 0.0, 8.0, 640, 480)
    assert (square[:8] == 114).all() and (square[-8:] == 114).all() and (square[8:56] == 255).all()


def test_decode_reads_either_orientation_the_same_way() -> None:
    box = Letterbox(0.1, 0.0, 8.0, 640, 480)
    names = ["cat", "dog"]
    check_v5(decode(v5_table(), box, names=names), names)
    check_v5(decode(np.transpose(v5_table(), (0, 2, 1)), box, names=names), names)  # channel-first v5
    with pytest.raises(ValueError, match="values per box"):
        decode(v5_table(), box, names=["one", "two", "three", "four"])


def test_onnx_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="no such ONNX model"):
        load(f"onnx:{tmp_path / 'missing.onnx'}")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(DetectorError, match="cannot load") as caught:
        load(f"onnx:{garbage}")
    assert "\n" not in str(caught.value)
