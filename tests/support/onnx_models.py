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

__all__ = [
    "EXPECTED",
    "SIZE",
    "brightness_model",
    "constant_model",
    "conv_model",
    "shifted_box",
    "v5_table",
    "v8_table",
    "write_model",
]

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


# brightness_model: the box of class 1 moves right by SHIFT model pixels per unit of the
# brightest input value (0..1), so each camera's result says which frame it was computed from.
SHIFT = 20.0


def brightness_model(*, size: int = SIZE, classes: int = 3, candidates: int = 30) -> onnx.ModelProto:
    """A YOLOv8-shaped ``[batch, 4 + classes, candidates]`` model with a dynamic batch axis.

    Frame ``n`` of a batch answers :func:`v8_table` with its first box's ``cx`` moved by
    ``SHIFT * max(images[n])``: a uniform grey frame of level ``g`` gives the box of
    :func:`shifted_box` ``(g)``. A batch of frames from different cameras gives each its own box,
    so a result routed to the wrong camera shows.
    """
    table = v8_table(classes, candidates)  # [1, 4 + C, N]
    shift = np.zeros_like(table)
    shift[0, 0, 0] = SHIFT
    nodes = [
        helper.make_node("ReduceMax", ["images"], ["peak"], axes=[1, 2, 3], keepdims=1),  # [B, 1, 1, 1]
        helper.make_node("Reshape", ["peak", "to_b11"], ["peak3"]),  # [B, 1, 1]
        helper.make_node("Mul", ["peak3", "shift"], ["moved"]),  # [B, 4 + C, N]
        helper.make_node("Add", ["moved", "table"], ["output0"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "to_b11"),
        numpy_helper.from_array(shift, "shift"),
        numpy_helper.from_array(table, "table"),
    ]
    graph = helper.make_graph(
        nodes,
        "brightness-yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + classes, candidates])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="framecast-tests", ir_version=7
    )
    helper.set_model_props(model, {"names": str({i: f"c{i}" for i in range(classes)})})
    onnx.checker.check_model(model)
    return model


def shifted_box(level: int, *, frame: tuple[int, int] = (640, 480)) -> tuple[float, float, float, float]:
    """The box :func:`brightness_model` finds in a uniform ``level`` frame (padding is 114)."""
    width, height = frame
    scale = min(SIZE / width, SIZE / height)
    pad_x, pad_y = (SIZE - round(width * scale)) // 2, (SIZE - round(height * scale)) // 2
    peak = max(level, 114 if (pad_x or pad_y) else 0) / 255
    cx, cy, w, h = 32 + SHIFT * peak, 32.0, 16.0, 16.0
    return (
        (cx - w / 2 - pad_x) / scale,
        (cy - h / 2 - pad_y) / scale,
        (cx + w / 2 - pad_x) / scale,
        (cy + h / 2 - pad_y) / scale,
    )


def conv_model(*, size: int = SIZE, classes: int = 3, seed: int = 7) -> onnx.ModelProto:
    """A YOLOv8-shaped model that computes: a random 8x8/8 convolution, boxes and scores from it.

    Its output depends on every pixel (unlike the constant tables), so two engines agreeing on
    its boxes agree on the arithmetic, not just on the decoding. Dynamic batch axis.
    """
    rng = np.random.default_rng(seed)
    channels = 4 + classes
    weights = rng.normal(0, 0.05, (channels, 3, 8, 8)).astype(np.float32)
    bias = rng.normal(0, 0.5, channels).astype(np.float32)
    scale = np.ones((1, channels, 1), np.float32)
    scale[0, :4, 0] = [size, size, size / 3, size / 3]
    nodes = [
        helper.make_node("Conv", ["images", "w", "b"], ["features"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Reshape", ["features", "to_bcn"], ["flat"]),  # [B, 4 + C, (size/8)^2]
        helper.make_node("Sigmoid", ["flat"], ["unit"]),
        helper.make_node("Mul", ["unit", "scale"], ["output0"]),
    ]
    initializers = [
        numpy_helper.from_array(weights, "w"),
        numpy_helper.from_array(bias, "b"),
        numpy_helper.from_array(np.array([0, channels, -1], np.int64), "to_bcn"),
        numpy_helper.from_array(scale, "scale"),
    ]
    candidates = (size // 8) ** 2
    graph = helper.make_graph(
        nodes,
        "conv-yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", channels, candidates])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="framecast-tests", ir_version=7
    )
    onnx.checker.check_model(model)
    return model
