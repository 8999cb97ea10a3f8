"""``[predictors.<name>]`` in the camera file: parsed, checked with the worker's own settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from framecast.local import cameras, predictors
from framecast.local.cameras import CameraError

FILE = """\
[predictors.yolo]
detector = "onnx:yolov8n.onnx"
device = "auto"
max-batch = 4
batch_wait = 0.005

[cameras.door]
source = "rtsp://10.0.0.7/stream1"
predictor = "yolo"
max_fps = 10

[cameras.yard]
source = "synthetic"
detector = "motion"
"""


def _resolve(
    tmp_path: Path, text: str, specs: tuple[str, ...] = ()
) -> tuple[tuple[cameras.Camera, ...], tuple[predictors.SharedPredictor, ...]]:
    path = tmp_path / "framecast.toml"
    path.write_text(text)
    from framecast import settings
    from producer.config import Config

    found = cameras.resolve(path, list(specs), check=lambda k, v: settings.check_value(Config, k, v))
    return found, predictors.resolve(path, found)


def test_a_camera_names_a_shared_predictor_and_the_worker_gets_its_settings(tmp_path: Path) -> None:
    found, shared = _resolve(tmp_path, FILE)
    door, yard = found
    assert (door.predictor, yard.predictor) == ("yolo", None)
    assert "--predictor" not in door.argv() and "--max-fps" in door.argv()  # up adds the socket itself
    (yolo,) = shared
    assert yolo.name == "yolo"
    spec = yolo.spec(tmp_path, index=1, log_level="INFO")
    socket = spec.socket
    assert socket == str(tmp_path / "predictor-1.sock")
    assert spec.argv()[1:] == [
        "-m", "producer.inference", "--socket", socket, "--name", "yolo", "--log-level", "INFO",
        "--detector", "onnx:yolov8n.onnx", "--device", "auto", "--max-batch", "4", "--batch-wait", "0.005",
    ]  # fmt: skip


def test_a_camera_of_the_command_line_may_use_a_predictor_of_the_file(tmp_path: Path) -> None:
    found, shared = _resolve(tmp_path, FILE, ("gate=http://10.0.0.9/mjpeg,predictor=yolo",))
    assert [c.predictor for c in found] == ["yolo", None, "yolo"]
    assert [p.name for p in shared] == ["yolo"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            FILE.replace('predictor = "yolo"', 'predictor = "ssd"'),
            ["camera 'door'", "'ssd' is not defined", "yolo"],
        ),
        (
            FILE.replace("max_fps = 10", 'device = "cuda"'),
            ["camera 'door'", "'device' belongs to predictor 'yolo'"],
        ),
        (FILE.replace("max_fps = 10", "workers = 2"), ["'workers' belongs to predictor"]),
        (
            FILE.replace('device = "auto"', 'device = "gpu"'),
            ["predictor 'yolo'", "device='gpu'", "expected auto"],
        ),
        (
            FILE.replace("max-batch = 4", "max-batch = 0"),
            ["predictor 'yolo'", "max_batch='0'", "between 1 and 256"],
        ),
        (
            FILE.replace('device = "auto"', 'colour = "red"'),
            ["predictor 'yolo'", "colour", "unknown setting"],
        ),
        (
            FILE.replace('device = "auto"', 'socket = "/tmp/x"'),
            ["predictor 'yolo'", "'socket' cannot be set"],
        ),
        (FILE.replace('detector = "onnx:yolov8n.onnx"\n', ""), ["predictor 'yolo'", "'detector' is missing"]),
        (FILE.replace('predictor = "yolo"\n', ""), ["predictor 'yolo' is used by no camera"]),
        (FILE.replace("[predictors.yolo]", "[predictors.'bad name']"), ["'bad name'", "invalid name"]),
    ],
)
def test_a_bad_predictor_or_reference_is_one_line_naming_it(
    tmp_path: Path, text: str, words: list[str]
) -> None:
    with pytest.raises(CameraError) as caught:
        _resolve(tmp_path, text)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_a_predictor_without_a_camera_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match=r"'yolo' is not defined \(known: none defined"):
        predictors.check(
            (), [cameras.parse_spec("door=synthetic,predictor=yolo")], check=lambda k, v: v, model_keys=()
        )
