"""Small ONNX models built in the test (with the ``onnx`` package): YOLO exports' shapes, no weights.

Each model takes ``[1, 3, size, size]`` images and answers constant tensors: the graph is
``output_i = ReduceMax(images) * 0 + C_i``, so it really reads its input (OpenCV cannot drop it)
yet its detections are known exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["EXPECTED", "SIZE", "constant_model", "v5_table", "v8_table", "write_model"]

# A 640x480 frame in a 64x64 input: scale 0.1, 8 pixels of padding above and below.
# Model box (cx 32, cy 32, w 16, h 16) -> frame box (240, 160, 400, 320).
SIZE = 64
EXPECTED = (240.0, 160.0, 400.0, 320.0)


def constant_model(
    outputs: Sequence[np.ndarray], *, size: int, metadata: Mapping[str, str] | None = None
) -> onnx.ModelProto:
    """A model whose outputs are ``outputs`` (float32), for any ``[1, 3, size, size]`` input.

    Args:
        outputs: One tensor per graph output, named ``output0``, ``output1``...
        size: The square input size.
        metadata: ``metadata_props`` to store (e.g. ``{"names": "{0: 'cat', 1: 'dog'}"}``).
    """
    nodes = [
        helper.make_node("ReduceMax", ["images"], ["peak"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Mul", ["peak", "zero"], ["nothing"]),
    ]
    initializers = [numpy_helper.from_array(np.zeros(1, np.float32), "zero")]
    graph_outputs = []
    for index, table in enumerate(outputs):
        values = np.asarray(table, np.float32)
        name = f"output{index}"
        initializers.append(numpy_helper.from_array(values, f"table{index}"))
        nodes.append(helper.make_node("Add", ["nothing", f"table{index}"], [name]))
        graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(values.shape)))
    graph = helper.make_graph(
        nodes,
        "constant-yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        graph_outputs,
        initializer=initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="framecast-tests", ir_version=7
    )
    if metadata:
        helper.set_model_props(model, dict(metadata))
    onnx.checker.check_model(model)
    return model


def write_model(
    path: Path, outputs: Sequence[np.ndarray], *, size: int, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write :func:`constant_model` to ``path`` and return it."""
    onnx.save(constant_model(outputs, size=size, metadata=metadata), str(path))
    return path


def v5_table(classes: int = 2) -> np.ndarray:
    """``[1, 20, 5 + classes]``: a dog (class 1), its weaker duplicate, an unsure box, a clipped cat."""
    rows = np.zeros((20, 5 + classes), np.float32)
    rows[0, :7] = [32, 32, 16, 16, 0.9, 0.1, 0.8]  # 0.9 * 0.8 = 0.72
    rows[1, :7] = [33, 32, 16, 16, 0.9, 0.1, 0.7]  # the same dog, weaker: suppressed by NMS
    rows[2, :7] = [10, 20, 6, 6, 0.9, 0.15, 0.1]  # too unsure: 0.9 * 0.15 = 0.135
    rows[3, :7] = [58, 40, 20, 10, 1.0, 0.6, 0.1]  # a cat cut by the right edge: clipped to the frame
    return rows[None]


def v8_table(classes: int = 80, candidates: int = 30) -> np.ndarray:
    """``[1, 4 + classes, N]``: class 1 at the centre, its weaker duplicate, one below threshold."""
    columns = np.zeros((4 + classes, candidates), np.float32)
    columns[:4, 0], columns[4 + 1, 0] = [32, 32, 16, 16], 0.9
    columns[:4, 1], columns[4 + 1, 1] = [33, 33, 16, 16], 0.8  # overlaps the first: NMS drops it
    columns[:4, 2], columns[4 + 2, 2] = [50, 50, 4, 4], 0.2  # below --confidence 0.25
    return columns[None]
