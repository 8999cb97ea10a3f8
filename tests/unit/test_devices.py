"""``--device`` and ``--engine``: execution providers chosen, missing ones named, the OpenCV fallback.

Real onnxruntime (the CPU build the producer extra installs) loads real ONNX files built in the
test; the machines have no GPU, so GPU devices are checked for what they ask onnxruntime and for
the error a machine without them gives.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from producer.detectors import Options, load
from producer.detectors.engines import open_engine
from producer.devices import Device, DeviceError, installed, parse_device
from tests.support.onnx_models import SIZE, conv_model, v8_table, write_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_model(tmp_path / "v8.onnx", [v8_table(3)], size=SIZE)


def test_device_names_parse_with_an_index_or_a_target() -> None:
    assert parse_device("auto") == Device("auto")
    assert parse_device(" CUDA:1 ") == Device("cuda", "1")
    assert parse_device("openvino:gpu") == Device("openvino", "GPU")
    assert str(parse_device("tensorrt:0")) == "tensorrt:0"
    for bad, reason in (
        ("gpu", "expected auto, cpu, cuda"),
        ("cuda:x", "takes a device number"),
        ("openvino:TPU", "takes one of"),
        ("cpu:1", "takes no ':' suffix"),
        ("auto:1", "expected auto"),
    ):
        with pytest.raises(ValueError, match=reason):
            parse_device(bad)


def test_each_device_asks_onnxruntime_for_its_provider_chain_cpu_last() -> None:
    assert Device("cpu").providers() == [("CPUExecutionProvider", {})]
    assert Device("cuda", "1").providers() == [
        ("CUDAExecutionProvider", {"device_id": 1}),
        ("CPUExecutionProvider", {}),
    ]
    chain = [name for name, _ in Device("tensorrt").providers()]
    assert chain == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt_options = Device("tensorrt").providers()[0][1]
    assert trt_options["trt_engine_cache_enable"] is True  # minutes of engine build, kept for restarts
    assert Device("openvino", "GPU").providers()[0] == ("OpenVINOExecutionProvider", {"device_type": "GPU"})
    # Every provider named here is one onnxruntime knows.
    known = set(onnxruntime.get_all_providers())
    for name in ("cuda", "tensorrt", "openvino", "migraphx", "coreml", "directml", "cpu"):
        assert {p for p, _ in Device(name).providers()} <= known, name


def test_installed_lists_device_names_cpu_last() -> None:
    assert installed(["CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"]) == [
        "cuda",
        "tensorrt",
        "cpu",
    ]
    assert installed(onnxruntime.get_available_providers())[-1] == "cpu"


def test_auto_and_cpu_run_on_the_cpu_provider_here(model: Path) -> None:
    for device in ("auto", "cpu"):
        engine = open_engine(str(model), device=device)
        assert (engine.name, engine.provider) == ("onnxruntime", "CPUExecutionProvider")


@pytest.mark.parametrize("device", ["cuda", "tensorrt:0", "openvino", "directml", "coreml"])
def test_a_device_whose_provider_is_missing_is_one_line_naming_what_is_installed(
    model: Path, device: str
) -> None:
    assert "CUDAExecutionProvider" not in onnxruntime.get_available_providers()  # no GPU build here
    with pytest.raises(DeviceError) as caught:
        load(f"onnx:{model}", options=Options(input_size=SIZE, device=device))
    message = str(caught.value)
    assert "\n" not in message
    assert f"onnxruntime {onnxruntime.__version__} here has no " in message
    assert "devices installed: cpu" in message and "in place of onnxruntime" in message


def test_opencv_runs_on_the_cpu_only(model: Path) -> None:
    engine = open_engine(str(model), engine="opencv", device="cpu")
    assert (engine.name, engine.provider, engine.batch) == ("opencv", "opencv", 1)
    with pytest.raises(
        DeviceError, match="--engine opencv OpenCV DNN runs on the CPU only; for cuda install"
    ):
        open_engine(str(model), engine="opencv", device="cuda")


def test_a_dynamic_batch_runs_in_one_call_and_a_fixed_one_frame_by_frame(tmp_path: Path, model: Path) -> None:
    dynamic = tmp_path / "conv.onnx"
    onnx.save(conv_model(), str(dynamic))
    blob = np.random.default_rng(0).random((3, 3, SIZE, SIZE), np.float32)
    batched = open_engine(str(dynamic), device="cpu")
    assert batched.batch is None
    outputs = batched.run(blob)[0]
    assert outputs.shape[0] == 3
    # The same frames one at a time give the same outputs (the batch axis really is the frames).
    for index in range(3):
        np.testing.assert_allclose(
            batched.run(blob[index : index + 1])[0][0], outputs[index], rtol=1e-5, atol=1e-5
        )
    fixed = open_engine(str(model), device="cpu")
    assert fixed.batch == 1
    assert fixed.run(blob)[0].shape == (3, 7, 30)  # chunked by the model's batch of 1


def test_without_onnxruntime_onnx_models_fall_back_to_opencv(model: Path) -> None:
    """In a process where onnxruntime cannot be imported (as where it is not installed)."""
    code = f"""
import sys
sys.modules["onnxruntime"] = None  # import onnxruntime -> ImportError
from producer.detectors import Options, load
from producer.devices import DeviceError
predictor = load("onnx:{model}", options=Options(input_size={SIZE}))
print(predictor.engine.name, [d.label for d in predictor(__import__("numpy").zeros((480, 640, 3), "uint8"))])
try:
    load("onnx:{model}", options=Options(input_size={SIZE}, device="cuda"))
except DeviceError as exc:
    print(exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    engine_line, error_line = done.stdout.strip().splitlines()
    assert engine_line == "opencv ['class 1']"
    assert error_line.startswith("onnxruntime is not installed and OpenCV DNN runs on the CPU only")
    assert "onnxruntime-gpu" in error_line
