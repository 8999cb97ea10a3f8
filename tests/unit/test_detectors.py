"""Predictors on generated and real pictures: each must find what is there and nothing else."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from framecast.wire import Detection
from producer import detectors
from producer.detectors import DetectorError, Options, clip, load
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
