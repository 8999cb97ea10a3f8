"""Predictors on generated and real pictures: each must find what is there and nothing else."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from framecast.wire import Detection
from producer import detectors
from producer.detectors import DetectorError, Options, clip, load
from producer.detectors.yolo import Letterbox, decode, letterbox
from producer.synthetic import QR_TEXT, Scene, draw_figure

GRACE_HOPPER = Path(cv2.__file__).parents[1] / "matplotlib" / "mpl-data" / "sample_data" / "grace_hopper.jpg"


def _inside(point: tuple[float, float], box: tuple[float, float, float, float]) -> bool:
    x, y = point
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def _in_frame(detection: Detection, width: int, height: int) -> bool:
    x1, y1, x2, y2 = detection.box
    return 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height and 0 <= detection.confidence <= 1


def _detect(predictor: detectors.Predictor, frame: np.ndarray) -> tuple[Detection, ...]:
    """Run a predictor and check its output the way the producer does (boxes inside the frame)."""
    height, width = frame.shape[:2]
    return clip(predictor(frame), width, height)


def _plain(width: int = 640, height: int = 480) -> np.ndarray:
    ramp = np.linspace(120, 200, width, dtype=np.uint8)[None, :, None]
    return np.ascontiguousarray(np.broadcast_to(ramp, (height, width, 3)))


# --------------------------------------------------------------------------
# motion


def _square_clip(count: int, *, moving: bool, enters: int = 10) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """A textured still background; from frame ``enters`` on, a square (moving or not) is in view."""
    rng = np.random.default_rng(3)
    background = np.clip(_plain().astype(np.int16) + rng.normal(0, 5, (480, 640, 1)), 0, 255).astype(np.uint8)
    clip_frames = []
    for i in range(count):
        frame = background.copy()
        x = 100 + ((i - enters) * 12 if moving else 0)
        if i >= enters:
            cv2.rectangle(frame, (x, 200), (x + 60, 260), (30, 30, 200), -1)
        clip_frames.append((frame, (x + 30, 230)))
    return clip_frames


def test_motion_finds_a_moving_square() -> None:
    motion = load("motion")
    for i, (frame, centre) in enumerate(_square_clip(30, moving=True)):
        found = _detect(motion, frame)
        assert all(_in_frame(d, 640, 480) and d.label == "motion" for d in found)
        if i < 10:
            assert found == (), f"frame {i}: nothing moves yet"
        else:
            assert len(found) == 1, f"frame {i}: {found}"
            assert _inside(centre, found[0].box), f"frame {i}: {found}"
            x1, y1, x2, y2 = found[0].box
            assert (x2 - x1) * (y2 - y1) < 4 * 60 * 60  # about the square, not the whole frame


def test_motion_finds_nothing_in_a_still_scene() -> None:
    motion = load("motion")
    for frame, _ in _square_clip(20, moving=False, enters=0):
        assert _detect(motion, frame) == ()
    still = Scene(still=True)
    motion = load("motion")
    for i in range(20):
        assert _detect(motion, still.render(i)) == ()


def test_motion_ignores_regions_smaller_than_min_area() -> None:
    big_only = load("motion", options=Options(min_area=5000))  # the square is 60x60 = 3600 px
    small_too = load("motion", options=Options(min_area=3000))
    clip_frames = _square_clip(20, moving=True)
    assert all(_detect(big_only, frame) == () for frame, _ in clip_frames)
    counts = [len(_detect(small_too, frame)) for frame, _ in clip_frames]
    assert counts == [0] * 10 + [1] * 10


# --------------------------------------------------------------------------
# faces


def test_faces_finds_grace_hoppers_face() -> None:
    image = cv2.imread(str(GRACE_HOPPER))
    assert image is not None, f"missing sample picture {GRACE_HOPPER}"
    found = _detect(load("faces"), image)
    assert len(found) == 1
    face = found[0]
    assert face.label == "face"
    assert 0 < face.confidence <= 1
    # Her face is in the upper middle of the portrait.
    assert _inside((image.shape[1] * 0.5, image.shape[0] * 0.4), face.box)
    assert _in_frame(face, image.shape[1], image.shape[0])


def test_faces_finds_no_face_where_there_is_none() -> None:
    faces = load("faces")
    assert _detect(faces, _plain()) == ()
    assert _detect(faces, Scene().render(0)) == ()


# --------------------------------------------------------------------------
# people


def test_people_finds_a_standing_figure() -> None:
    frame = _plain()
    draw_figure(frame, x=320, top=100, height=300, color=(40, 40, 60))
    found = _detect(load("people"), frame)
    assert len(found) == 1
    person = found[0]
    assert person.label == "person"
    assert _inside((320, 250), person.box)
    assert _in_frame(person, 640, 480)


def test_people_finds_nobody_in_an_empty_scene_or_a_portrait() -> None:
    people = load("people")
    assert _detect(people, _plain()) == ()
    portrait = cv2.imread(str(GRACE_HOPPER))
    assert portrait is not None
    assert _detect(people, np.asarray(portrait)) == ()


# --------------------------------------------------------------------------
# qr


def _qr_frame(text: str) -> np.ndarray:
    code = cv2.QRCodeEncoder.create().encode(text)
    big = cv2.resize(code, None, fx=6, fy=6, interpolation=cv2.INTER_NEAREST)
    frame = _plain()
    h, w = big.shape
    frame[150 : 150 + h, 250 : 250 + w] = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
    return frame


def test_qr_decodes_the_text_and_boxes_the_code() -> None:
    frame = _qr_frame("https://example.org/door-3")
    found = _detect(load("qr"), frame)
    assert len(found) == 1
    assert found[0].label == "https://example.org/door-3"
    assert found[0].confidence == 1.0
    assert _inside((250 + 75, 150 + 75), found[0].box)
    assert [d.label for d in _detect(load("qr"), Scene().render(0))] == [QR_TEXT]


def test_qr_finds_nothing_without_a_code() -> None:
    assert _detect(load("qr"), _plain()) == ()


# --------------------------------------------------------------------------
# onnx: a real ONNX file, hand-encoded, run by OpenCV DNN


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | str | int) -> bytes:
    """One protobuf field: varint for ints, length-delimited for bytes and strings."""
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _tensor(name: str, array: np.ndarray) -> bytes:  # onnx.TensorProto, FLOAT, raw_data
    values = np.asarray(array, np.float32)
    return (
        b"".join(_field(1, d) for d in values.shape)
        + _field(2, 1)
        + _field(8, name)
        + _field(9, values.tobytes())
    )


def _value_info(name: str, shape: tuple[int, ...]) -> bytes:  # onnx.ValueInfoProto of a float tensor
    dims = b"".join(_field(1, _field(1, d)) for d in shape)
    return _field(1, name) + _field(2, _field(1, _field(1, 1) + _field(2, dims)))


def _node(op: str, inputs: list[str], outputs: list[str], attributes: bytes = b"") -> bytes:
    return (
        b"".join(_field(1, i) for i in inputs)
        + b"".join(_field(2, o) for o in outputs)
        + _field(4, op)
        + attributes
    )


def onnx_model(output: np.ndarray, size: int) -> bytes:
    """An ONNX model taking ``[1, 3, size, size]`` images whose output is the constant ``output``.

    The graph is ``output = ReduceMax(images) * 0 + C``: it really reads its input (so OpenCV
    cannot drop it) yet always answers ``output``, so the expected boxes are known exactly.
    """
    axes = _field(5, _field(1, "axes") + b"".join(_field(8, a) for a in (1, 2, 3)) + _field(20, 7))
    keepdims = _field(5, _field(1, "keepdims") + _field(3, 0) + _field(20, 2))
    graph = b"".join(
        _field(1, node)
        for node in (
            _node("ReduceMax", ["images"], ["peak"], axes + keepdims),
            _node("Mul", ["peak", "zero"], ["nothing"]),
            _node("Add", ["nothing", "table"], ["output0"]),
        )
    )
    graph += _field(2, "constant-yolo")
    graph += _field(5, _tensor("zero", np.zeros(1))) + _field(5, _tensor("table", output))
    graph += _field(11, _value_info("images", (1, 3, size, size)))
    graph += _field(12, _value_info("output0", tuple(output.shape)))
    opset = _field(8, _field(1, "") + _field(2, 13))
    return _field(1, 7) + opset + _field(2, "framecast-tests") + _field(7, graph)


# A 640x480 frame in a 64x64 input: scale 0.1, 8 pixels of padding above and below.
# Model box (cx 32, cy 32, w 16, h 16) -> frame box (240, 160, 400, 320).
_EXPECTED = (240.0, 160.0, 400.0, 320.0)


def _v5_table() -> np.ndarray:
    rows = np.zeros((20, 5 + 2), np.float32)  # 20 candidates, 2 classes: cat, dog
    rows[0] = [32, 32, 16, 16, 0.9, 0.1, 0.8]  # a dog: 0.9 * 0.8 = 0.72
    rows[1] = [33, 32, 16, 16, 0.9, 0.1, 0.7]  # the same dog, a bit weaker: suppressed by NMS
    rows[2] = [10, 20, 6, 6, 0.9, 0.15, 0.1]  # too unsure: 0.9 * 0.15 = 0.135
    rows[3] = [58, 40, 20, 10, 1.0, 0.6, 0.1]  # a cat cut by the right edge: clipped to the frame
    return rows[None]


def _check_v5(found: Sequence[Detection]) -> None:
    assert [d.label for d in found] == ["dog", "cat"]
    dog, cat = found
    assert dog.confidence == pytest.approx(0.72, abs=1e-3)
    assert dog.box == pytest.approx(_EXPECTED, abs=0.01)
    assert cat.confidence == pytest.approx(0.6, abs=1e-3)
    assert cat.box == pytest.approx((480.0, 270.0, 640.0, 370.0), abs=0.01)


def test_onnx_model_with_yolov5_output(tmp_path: Path) -> None:
    model = tmp_path / "v5.onnx"
    model.write_bytes(onnx_model(_v5_table(), 64))
    names = tmp_path / "classes.txt"
    names.write_text("# pets\ncat\ndog\n")
    predictor = load(f"onnx:{model}", options=Options(input_size=64, classes=str(names)))
    _check_v5(_detect(predictor, np.zeros((480, 640, 3), np.uint8)))


def test_onnx_model_with_yolov8_output(tmp_path: Path) -> None:
    columns = np.zeros((4 + 3, 30), np.float32)  # [4 + classes, candidates]: channel-first
    columns[:, 0] = [32, 32, 16, 16, 0.05, 0.9, 0.0]
    columns[:, 1] = [50, 50, 4, 4, 0.1, 0.1, 0.2]  # below --confidence
    model = tmp_path / "v8.onnx"
    model.write_bytes(onnx_model(columns[None], 64))
    predictor = load(f"onnx:{model}", options=Options(input_size=64, confidence=0.25))
    found = _detect(predictor, np.zeros((480, 640, 3), np.uint8))
    assert len(found) == 1
    assert found[0].label == "class 1"  # no names file, not an 80-class model
    assert found[0].confidence == pytest.approx(0.9, abs=1e-3)
    assert found[0].box == pytest.approx(_EXPECTED, abs=0.01)


def test_letterbox_keeps_the_aspect_and_centres_the_frame() -> None:
    square, box = letterbox(np.full((480, 640, 3), 255, np.uint8), 64)
    assert square.shape == (64, 64, 3)
    assert box == Letterbox(0.1, 0.0, 8.0, 640, 480)
    assert (square[:8] == 114).all() and (square[-8:] == 114).all() and (square[8:56] == 255).all()


def test_decode_reads_either_layout_the_same_way() -> None:
    box = Letterbox(0.1, 0.0, 8.0, 640, 480)
    names = ["cat", "dog"]
    _check_v5(decode(_v5_table(), box, names=names))
    _check_v5(decode(np.transpose(_v5_table(), (0, 2, 1)), box, names=names))  # channel-first v5
    with pytest.raises(ValueError, match="values per box"):
        decode(_v5_table(), box, names=["one", "two", "three", "four"])


def test_onnx_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="no such ONNX model"):
        load(f"onnx:{tmp_path / 'missing.onnx'}")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(DetectorError, match="cannot load") as caught:
        load(f"onnx:{garbage}")
    assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------
# loading and checking predictors


def test_unknown_detector_lists_the_choices() -> None:
    with pytest.raises(DetectorError) as caught:
        load("yolo9000")
    message = str(caught.value)
    assert "unknown detector 'yolo9000'" in message
    for choice in ("motion", "faces", "people", "qr", "onnx:PATH", "module:callable"):
        assert choice in message


def _plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_module_callable_plugins_functions_and_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plugin(
        tmp_path,
        monkeypatch,
        "my_predictors",
        """
        from framecast.wire import Detection

        def whole(frame):
            h, w = frame.shape[:2]
            return [("everything", 1.0, (0, 0, w, h))]

        class Counting:
            def __init__(self):
                self.calls = 0

            def __call__(self, frame):
                self.calls += 1
                return [Detection(label=f"call {self.calls}", confidence=0.5, box=(1, 1, 2, 2))]
        """,
    )
    whole = load("my_predictors:whole")
    assert clip(whole(np.zeros((10, 20, 3), np.uint8)), 20, 10) == (
        Detection(label="everything", confidence=1.0, box=(0, 0, 20, 10)),
    )
    counting = load("my_predictors:Counting")
    counting(np.zeros((4, 4, 3), np.uint8))
    assert [d.label for d in _detect(counting, np.zeros((4, 4, 3), np.uint8))] == ["call 2"]  # one instance
    with pytest.raises(DetectorError, match="no attribute"):
        load("my_predictors:missing")
    with pytest.raises(DetectorError, match="cannot import"):
        load("no_such_module_here:thing")


def test_entry_point_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _plugin(tmp_path, monkeypatch, "door_plugin", "def door(frame):\n    return []\n")
    dist = tmp_path / "door_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: door-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[framecast.detectors]\ndoor = door_plugin:door\n")
    assert "door" in detectors.choices()
    assert _detect(load("door"), np.zeros((4, 4, 3), np.uint8)) == ()


def test_clip_keeps_boxes_inside_the_frame_and_rejects_garbage() -> None:
    kept = clip(
        [
            Detection(label="a", confidence=1.5, box=(-5, -5, 50, 50)),
            ("b", 0.5, (90, 40, 120, 70)),
            {"label": "c", "confidence": 0.2, "box": (30, 30, 10, 10)},  # corners swapped
            ("outside", 0.9, (200, 200, 300, 300)),
        ],
        100,
        60,
    )
    assert kept == (
        Detection(label="a", confidence=1.0, box=(0.0, 0.0, 50.0, 50.0)),
        Detection(label="b", confidence=0.5, box=(90.0, 40.0, 100.0, 60.0)),
        Detection(label="c", confidence=0.2, box=(10.0, 10.0, 30.0, 30.0)),
    )
    assert clip(None, 10, 10) == ()  # a predictor returning None found nothing
    with pytest.raises(TypeError):
        clip(["not a detection"], 10, 10)
    with pytest.raises(TypeError):
        clip([(3, 0.5, (0, 0, 1, 1))], 10, 10)
    with pytest.raises(TypeError):
        clip([("nan", float("nan"), (0, 0, 1, 1))], 10, 10)
