"""The detection models the predictor benchmarks run: a real YOLOv8n graph, or a stand-in.

**YOLOv8n** is built from Ultralytics' own model definition with random weights
(``YOLO("yolov8n.yaml").export(format="onnx")`` with ``YOLO_OFFLINE=1``): the real architecture
and compute, nothing downloaded. Ultralytics is AGPL-3.0 and pulls in PyTorch, so it is never a
dependency of framecast, not even of the bench extra: it lives in a separate virtual environment
made on request (``python -m bench.models``, or the first full bench run), with pip, from
``bench/export-requirements.txt`` (PyTorch's CPU build, which pip takes from these machines'
disk; uv would download a multi-GB CUDA build). That environment only writes the ``.onnx``
files, in a subprocess; everything measured runs in the project's own environment.

The **stand-in** (``--quick``, CI) is built with the ``onnx`` package: three strided
convolutions whose outputs have YOLOv8n's exact shape (``[N, 84, 8400]``, dynamic batch), a
fraction of its compute. It keeps the harness honest without PyTorch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.procs import ROOT, BenchError

__all__ = ["CACHE", "REQUIREMENTS", "VENV", "main", "standin", "yolov8n"]

CACHE = ROOT / "bench" / "results" / "models"
"""Where built models are kept between runs (ignored by git, like every result)."""
VENV = ROOT / ".venv-yolo-export"
"""The export environment (PyTorch CPU + Ultralytics), made only when a YOLOv8n is needed."""
REQUIREMENTS = ROOT / "bench" / "export-requirements.txt"

_EXPORT = """\
import shutil, sys
from ultralytics import YOLO
model = YOLO("yolov8n.yaml")
path = model.export(format="onnx", imgsz=640, opset=17, simplify=False, dynamic=sys.argv[2] == "dynamic")
shutil.move(path, sys.argv[1])
"""


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def make_venv(venv: Path = VENV, *, say: object = print) -> Path:
    """Create the export environment (once): ``python3.11 -m venv`` + pip install the requirements.

    Raises:
        BenchError: The environment cannot be made (the message says which step failed).
    """
    python = _venv_python(venv)
    if python.exists():
        return python
    say(f"models: making {venv} (PyTorch CPU + Ultralytics, AGPL-3.0) for the YOLOv8n export; once")  # type: ignore[operator]
    base = os.environ.get("FRAMECAST_EXPORT_PYTHON", "python3.11")
    for argv in (
        [base, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1800)
        if done.returncode != 0:
            raise BenchError(f"models: {' '.join(argv[:4])} failed: {done.stderr.strip()[-600:]}")
    return python


def yolov8n(*, dynamic: bool = False, cache: Path = CACHE, say: object = print) -> Path:
    """The YOLOv8n graph (random weights), building it if it is not cached.

    Args:
        dynamic: A dynamic batch axis (``[batch, 3, H, W]``) rather than Ultralytics' default
            fixed batch of 1.
    """
    path = cache / ("yolov8n-dynamic.onnx" if dynamic else "yolov8n.onnx")
    if path.exists():
        return path
    python = make_venv(say=say)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="framecast-yolo-") as work:
        env = {
            **os.environ,
            "YOLO_OFFLINE": "1",  # never reach for weights or fonts
            "YOLO_CONFIG_DIR": work,  # nothing written to the user's home
            "PYTHONPATH": "",
        }
        done = subprocess.run(
            [str(python), "-c", _EXPORT, str(path), "dynamic" if dynamic else "fixed"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
    if done.returncode != 0 or not path.exists():
        raise BenchError(f"models: the YOLOv8n export failed: {done.stderr.strip()[-600:]}")
    return path


def standin(cache: Path = CACHE) -> Path:
    """A cheap graph of YOLOv8n's output shape, ``[N, 84, 8400]`` for ``[N, 3, 640, 640]``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path = cache / "standin-yolov8n-shape.onnx"
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(8)
    nodes, initializers, heads = [], [], []
    # Strides 8, 16, 32 over 640: 6400 + 1600 + 400 = 8400 anchors, as YOLOv8's three heads.
    for stride in (8, 16, 32):
        w, b = f"w{stride}", f"b{stride}"
        initializers += [
            numpy_helper.from_array(rng.normal(0, 0.02, (84, 3, stride, stride)).astype(np.float32), w),
            numpy_helper.from_array(rng.normal(-4, 0.5, 84).astype(np.float32), b),
        ]
        nodes += [
            helper.make_node(
                "Conv", ["images", w, b], [f"c{stride}"], kernel_shape=[stride] * 2, strides=[stride] * 2
            ),
            helper.make_node("Reshape", [f"c{stride}", "to_flat"], [f"f{stride}"]),
        ]
        heads.append(f"f{stride}")
    initializers.append(numpy_helper.from_array(np.array([0, 84, -1], np.int64), "to_flat"))
    nodes += [
        helper.make_node("Concat", heads, ["raw"], axis=2),
        helper.make_node("Sigmoid", ["raw"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "standin-yolov8n-shape",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 640, 640])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 84, 8400])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def main() -> int:
    """``python -m bench.models``: build (or find) both YOLOv8n graphs and print their paths."""
    try:
        for dynamic in (False, True):
            print(yolov8n(dynamic=dynamic))
    except BenchError as exc:
        print(f"python -m bench.models: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
