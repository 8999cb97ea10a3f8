"""``--detector onnx:PATH`` end to end: a real producer process runs ONNX files of each YOLO layout.

The models (built in the test, no weights downloaded) answer constant tables, so every result's
labels, boxes (scaled back to the synthetic scene's 640x480 pixels), confidences and NMS are known.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from framecast.local.embedded import free_port
from tests.support.onnx_models import EXPECTED, SIZE, v5_table, v8_table, write_model
from tests.support.producer import Listener, run_producer, running_producer

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer

_ARGS = ["--no-demand", "--max-fps", "10", "--input-size", str(SIZE)]


@pytest.mark.parametrize(
    ("layout", "outputs", "metadata", "labels"),
    [
        # YOLOv8/v11 [1, 84, N], no --classes: COCO's names; the duplicate is merged, the 0.2 box dropped.
        ("v8-coco", [v8_table(80, candidates=100)], None, [("bicycle", 0.9, EXPECTED)]),
        # YOLOv5 [1, N, 85], no --classes: objectness is not a class; scores are objectness x class.
        (
            "v5-coco",
            [v5_table(80)],
            None,
            [("bicycle", 0.72, EXPECTED), ("person", 0.6, (480.0, 270.0, 640.0, 370.0))],
        ),
        # An Ultralytics-style export naming its 3 classes in its metadata.
        (
            "v8-metadata",
            [v8_table(3)],
            {"names": str({0: "cat", 1: "dog", 2: "fox"})},
            [("dog", 0.9, EXPECTED)],
        ),
    ],
)
def test_each_yolo_layout_runs_end_to_end(
    layout: str,
    outputs: list[np.ndarray],
    metadata: dict[str, str] | None,
    labels: list[tuple[str, float, tuple[float, float, float, float]]],
    tmp_path: Path,
    redis_server: RedisServer,
    child_env: dict[str, str],
) -> None:
    model = write_model(tmp_path / f"{layout}.onnx", outputs, size=SIZE, metadata=metadata)
    with (
        Listener(redis_server.url) as heard,
        running_producer(
            redis_server.url, ["--detector", f"onnx:{model}", *_ARGS], env=child_env
        ) as producer,
    ):
        heard.wait_for(lambda: len(heard.results) >= 3, what="3 results")
    assert producer.process.returncode == 0, producer.logs
    assert "predictor failed" not in producer.logs  # every frame decoded: nothing raised
    for result in heard.results:
        assert (result.width, result.height) == (640, 480)
        got = [(d.label, d.confidence, d.box) for d in result.detections]
        assert [g[0] for g in got] == [e[0] for e in labels]
        for (_, confidence, box), (_, want_confidence, want_box) in zip(got, labels, strict=True):
            assert confidence == pytest.approx(want_confidence, abs=1e-3)
            assert box == pytest.approx(want_box, abs=0.01)


def test_a_model_matching_no_layout_is_one_error_at_start_naming_its_shapes(
    tmp_path: Path, child_env: dict[str, str]
) -> None:
    model = write_model(
        tmp_path / "seg.onnx", [np.zeros((1, 116, 100)), np.zeros((1, 32, 16, 16))], size=SIZE
    )
    redis = ["--redis-url", f"redis://127.0.0.1:{free_port()}/0"]  # never reached
    code, stderr = run_producer(
        [*redis, "--detector", f"onnx:{model}", "--input-size", str(SIZE)], env=child_env
    )
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"python -m producer: error: --detector=onnx:{model}: ")
    assert "[1, 116, 100], [1, 32, 16, 16]" in lines[0]
