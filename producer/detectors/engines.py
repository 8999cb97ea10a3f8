"""What runs an ONNX graph: onnxruntime (any execution provider) or, where it is absent, OpenCV DNN.

An :class:`Engine` takes a ready ``[N, 3, H, W]`` float blob and returns the graph's outputs with
the batch first. It hides how the model takes batches: a model exported with a fixed batch of 1
(Ultralytics' default) is run once per frame, one with a fixed batch of B in chunks of B (the
last padded), one with a dynamic batch axis in one call.

Measured on 2 cores with Ultralytics' YOLOv8n graph (random weights), see docs/performance.md:
onnxruntime's CPU provider is about 1.8x OpenCV DNN at 2 threads, which is why it is the default.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from producer.detectors import DetectorError
from producer.devices import (
    AUTO_ORDER,
    DEVICES,
    ENGINES,
    PACKAGES,
    Device,
    DeviceError,
    failed,
    missing,
    parse_device,
)

__all__ = ["CvEngine", "Engine", "OrtEngine", "onnxruntime_version", "open_engine"]

log = logging.getLogger(__name__)


class Engine(Protocol):
    """A loaded ONNX graph (see the module docstring)."""

    name: str
    """``onnxruntime`` or ``opencv``."""
    provider: str
    """What runs it: an onnxruntime execution provider (``CPUExecutionProvider``...) or ``opencv``."""
    batch: int | None
    """The model's fixed batch size, or None when its batch axis is dynamic."""

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        """The graph's outputs for ``blob`` (``[N, 3, H, W]``), each with N first."""
        ...


def onnxruntime_version() -> str | None:
    """The installed onnxruntime's version, or None when it cannot be imported."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return str(onnxruntime.__version__)


def open_engine(path: str, *, engine: str = "auto", device: str = "auto", threads: int = 0) -> Engine:
    """Load ``path`` on the engine and device asked for.

    Args:
        path: The ``.onnx`` file (checked to exist by the caller).
        engine: ``auto`` (onnxruntime if installed, else OpenCV DNN), ``onnxruntime`` or ``opencv``.
        device: A ``--device`` value (:func:`producer.devices.parse_device`).
        threads: Threads per inference (0: the engine's default, one per core).

    Raises:
        DeviceError: The device cannot be used here (one line naming what is installed).
        DetectorError: The file is not a model the engine can load.
    """
    try:
        wanted = parse_device(device)
    except ValueError as exc:
        raise DeviceError(str(exc)) from None
    if engine not in ENGINES:
        raise DeviceError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    version = onnxruntime_version()
    if engine == "opencv" or (engine == "auto" and version is None):
        if wanted.name not in ("auto", "cpu"):
            why = "--engine opencv" if engine == "opencv" else "onnxruntime is not installed and"
            raise DeviceError(
                f"{why} OpenCV DNN runs on the CPU only; for {wanted} install {PACKAGES[wanted.name]}"
            )
        return CvEngine(path, threads=threads)
    if version is None:
        raise DetectorError("--engine onnxruntime: onnxruntime is not installed (pip install onnxruntime)")
    return OrtEngine(path, device=wanted, threads=threads)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1].strip() if text else type(exc).__name__


class OrtEngine:
    """An onnxruntime session on the best provider :data:`AUTO_ORDER` finds, or the one named."""

    name = "onnxruntime"

    def __init__(self, path: str, *, device: Device, threads: int = 0) -> None:
        import onnxruntime as ort

        available = list(ort.get_available_providers())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Cameras leave gaps between frames: threads that spin-wait through them burn a core
        # for nothing (measured: see docs/performance.md, CPU per prediction).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # onnxruntime's own warnings (a provider that did not start) are turned into one line
        # of ours below; DEBUG logging lets them through.
        options.log_severity_level = 0 if log.isEnabledFor(logging.DEBUG) else 3
        if device.name == "auto":
            candidates = [Device(n) for n in AUTO_ORDER if DEVICES[n][0] in available]
        elif DEVICES[device.name][0] not in available:
            raise missing(device, available, version=ort.__version__)
        else:
            candidates = [device]
        self.session: Any = None
        for candidate in candidates:
            try:
                session = ort.InferenceSession(path, options, providers=candidate.providers())
            except Exception as exc:  # onnxruntime's own exception types (Fail, InvalidProtobuf...)
                if candidate.name == "cpu" or device.name != "auto":
                    if candidate.name != "cpu" and _loads_on_cpu(ort, path, options):
                        raise failed(device, available, got=[_first_line(exc)]) from None
                    raise DetectorError(f"cannot load {path} as an ONNX model: {_first_line(exc)}") from None
                log.debug("device %s did not start: %s", candidate, exc)
                continue
            got = list(session.get_providers())
            if got and got[0] == DEVICES[candidate.name][0]:
                self.session, self.device = session, candidate
                break
            if device.name != "auto":
                raise failed(device, available, got=got)
            log.debug("device %s fell back to %s", candidate, got)
        if self.session is None:  # pragma: no cover - CPU is always among the candidates
            raise DeviceError(f"no execution provider started (installed: {', '.join(available)})")
        self.provider: str = self.session.get_providers()[0]
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise DetectorError(
                f"{path}: the model takes {len(inputs)} inputs; an image detector takes one [N, 3, H, W]"
            )
        self._input = inputs[0].name
        self.input_shape: Sequence[int | str | None] = inputs[0].shape
        """The model's input shape; strings or None mark dynamic axes."""
        first = self.input_shape[0] if self.input_shape else None
        self.batch: int | None = first if isinstance(first, int) and first > 0 else None
        self._dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        self._outputs = [o.name for o in self.session.get_outputs()]

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        blob = blob.astype(self._dtype, copy=False)
        count = blob.shape[0]
        if self.batch is None or count == self.batch:
            return [np.asarray(o) for o in self.session.run(self._outputs, {self._input: blob})]
        chunks: list[list[np.ndarray]] = []
        for start in range(0, count, self.batch):
            part = blob[start : start + self.batch]
            short = self.batch - part.shape[0]
            if short:  # a fixed batch larger than what is left: pad, then drop the padding's outputs
                part = np.concatenate([part, np.zeros((short, *part.shape[1:]), part.dtype)])
            outs = self.session.run(self._outputs, {self._input: part})
            chunks.append([np.asarray(o)[: self.batch - short] for o in outs])
        return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]


def _loads_on_cpu(ort: Any, path: str, options: Any) -> bool:
    try:
        ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception:
        return False
    return True


class CvEngine:
    """OpenCV DNN on the CPU, one frame per forward pass (its batch support varies by model).

    ``threads`` sets OpenCV's thread count for the whole process (``cv2.setNumThreads``). A
    ``cv2.dnn.Net`` holds its input between ``setInput`` and ``forward``: calls from several
    threads (a shared worker's ``--concurrency``) take turns.
    """

    name = "opencv"
    provider = "opencv"
    device = "cpu"
    batch: int | None = 1

    def __init__(self, path: str, *, threads: int = 0) -> None:
        import cv2

        try:
            self._net = cv2.dnn.readNetFromONNX(path)
        except cv2.error as exc:
            raise DetectorError(f"cannot load {path} as an ONNX model: {_first_line(exc)}") from None
        if threads:
            cv2.setNumThreads(threads)
        self._names = list(self._net.getUnconnectedOutLayersNames())
        self._lock = threading.Lock()

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        import cv2

        per_frame: list[list[np.ndarray]] = []
        for index in range(blob.shape[0]):
            with self._lock:
                self._net.setInput(np.ascontiguousarray(blob[index : index + 1], dtype=np.float32))
                try:
                    outs = self._net.forward(self._names)
                except cv2.error as exc:
                    raise RuntimeError(_first_line(exc)) from None
            per_frame.append([np.asarray(o) for o in outs])
        return [np.concatenate(parts) for parts in zip(*per_frame, strict=True)]
