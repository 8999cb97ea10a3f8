"""``--device``: where an ``onnx:`` model runs, as onnxruntime execution providers.

A device is a name, optionally with a device index or target: ``cuda:1``, ``openvino:GPU``.
Each maps to the provider chain onnxruntime is given, CPU last so that operators the device
cannot run still run::

    cpu        CPUExecutionProvider
    cuda[:N]   CUDAExecutionProvider                       onnxruntime-gpu
    tensorrt[:N]  TensorrtExecutionProvider, then CUDA      onnxruntime-gpu + TensorRT 10
    openvino[:TARGET]  OpenVINOExecutionProvider            onnxruntime-openvino (TARGET: CPU, GPU, NPU)
    rocm[:N], migraphx[:N]                                  onnxruntime-rocm / -migraphx
    coreml                                                  macOS wheels of onnxruntime
    directml[:N]                                            onnxruntime-directml (Windows)

``auto`` takes the first of :data:`AUTO_ORDER` whose provider this onnxruntime has *and* that
starts (onnxruntime-gpu lists CUDA even where no GPU or CUDA library is present; a session then
quietly falls back to the CPU, so the session's own provider list is what counts). TensorRT is
never picked by ``auto``: it compiles an engine for minutes at a model's first start; name it.

Pure lookups here, importing neither numpy nor onnxruntime (the settings check uses them);
:mod:`producer.detectors.engines` creates the sessions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from framecast.exceptions import FramecastError

__all__ = [
    "AUTO_ORDER",
    "DEVICES",
    "ENGINES",
    "PACKAGES",
    "Device",
    "DeviceError",
    "check_device",
    "failed",
    "installed",
    "missing",
    "parse_device",
]

DEVICES: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider",),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider"),
    "openvino": ("OpenVINOExecutionProvider",),
    "rocm": ("ROCMExecutionProvider",),
    "migraphx": ("MIGraphXExecutionProvider",),
    "coreml": ("CoreMLExecutionProvider",),
    "directml": ("DmlExecutionProvider",),
}
"""Device name -> the providers it asks onnxruntime for, best first (CPU is added last)."""

AUTO_ORDER = ("cuda", "migraphx", "rocm", "openvino", "coreml", "directml", "cpu")
"""What ``--device auto`` tries, in order: the first installed one that starts wins."""

_INDEXED = {"cuda", "tensorrt", "rocm", "migraphx", "directml"}
_OPENVINO_TARGETS = {"CPU", "GPU", "NPU", "AUTO"}

PACKAGES = {
    "cuda": "onnxruntime-gpu",
    "tensorrt": "onnxruntime-gpu and TensorRT",
    "openvino": "onnxruntime-openvino",
    "rocm": "onnxruntime-rocm",
    "migraphx": "onnxruntime-migraphx",
    "coreml": "onnxruntime on macOS",
    "directml": "onnxruntime-directml",
}
"""What to install for each device, in place of the plain ``onnxruntime`` wheel."""


ENGINES = ("auto", "onnxruntime", "opencv")
"""``--engine`` values: ``auto`` is onnxruntime when installed, else OpenCV DNN."""


class DeviceError(FramecastError, ValueError):
    """A ``--device`` (or ``--engine``) that cannot be used here; the text names what is installed."""


@dataclass(frozen=True, slots=True)
class Device:
    """A parsed ``--device``.

    Attributes:
        name: ``auto`` or a key of :data:`DEVICES`.
        index: The GPU index (``cuda:1``), or the OpenVINO target (``openvino:GPU``); "" if none.
    """

    name: str
    index: str = ""

    def __str__(self) -> str:
        return f"{self.name}:{self.index}" if self.index else self.name

    def providers(self) -> list[tuple[str, dict[str, Any]]]:
        """The provider chain with its options, for ``InferenceSession(providers=...)``."""
        chain: list[tuple[str, dict[str, Any]]] = []
        for provider in DEVICES[self.name]:
            options: dict[str, Any] = {}
            if self.index and self.name in _INDEXED:
                options["device_id"] = int(self.index)
            if provider == "OpenVINOExecutionProvider" and self.index:
                options["device_type"] = self.index
            if provider == "TensorrtExecutionProvider":
                # The engine build takes minutes; keep it for the next start.
                options["trt_engine_cache_enable"] = True
                options["trt_engine_cache_path"] = os.environ.get(
                    "FRAMECAST_TENSORRT_CACHE", os.path.expanduser("~/.cache/framecast/tensorrt")
                )
            chain.append((provider, options))
        if self.name != "cpu":
            chain.append(("CPUExecutionProvider", {}))
        return chain


def parse_device(text: str) -> Device:
    """Parse ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``openvino:GPU``...

    Raises:
        ValueError: Not a device; the text lists the accepted forms.
    """
    name, _, index = text.strip().lower().partition(":")
    if name == "auto" and not index:
        return Device("auto")
    if name not in DEVICES:
        raise ValueError(
            "expected auto, cpu, cuda[:N], tensorrt[:N], openvino[:CPU|GPU|NPU], rocm[:N], "
            "migraphx[:N], coreml or directml[:N]"
        )
    if index:
        if name in _INDEXED:
            if not index.isdigit():
                raise ValueError(f"{name}:N takes a device number, e.g. {name}:0")
        elif name == "openvino":
            index = index.upper()
            if index not in _OPENVINO_TARGETS:
                raise ValueError(f"openvino:TARGET takes one of {', '.join(sorted(_OPENVINO_TARGETS))}")
        else:
            raise ValueError(f"{name} takes no ':' suffix")
    return Device(name, index)


def check_device(text: str) -> None:
    """A settings check for ``--device`` (raises ValueError)."""
    parse_device(text)


def installed(available: Sequence[str]) -> list[str]:
    """The device names onnxruntime's ``get_available_providers()`` offers, best first."""
    names = [name for name in (*AUTO_ORDER, "tensorrt") if DEVICES[name][0] in available]
    return sorted(names, key=lambda n: (n == "cpu", n))


def missing(device: Device, available: Sequence[str], *, version: str) -> DeviceError:
    """The one-line error for a device whose provider this onnxruntime lacks."""
    have = ", ".join(installed(available)) or "none"
    return DeviceError(
        f"onnxruntime {version} here has no {DEVICES[device.name][0]} (devices installed: {have}); "
        f"for {device.name}, install {PACKAGES[device.name]} in place of onnxruntime"
    )


def failed(device: Device, available: Sequence[str], *, got: Sequence[str]) -> DeviceError:
    """The one-line error for a provider that is installed but did not start."""
    have = ", ".join(installed(available)) or "none"
    return DeviceError(
        f"onnxruntime has {DEVICES[device.name][0]} but could not start it (the session got "
        f"{', '.join(got) or 'nothing'}): is the device there, with its libraries (CUDA 12 and cuDNN 9 "
        f"for cuda)? --log-level DEBUG shows onnxruntime's own reason; devices installed: {have}"
    )
