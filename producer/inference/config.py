"""The shared inference worker's settings (``framecast inference``): one frozen object.

The model's settings (``--detector``, ``--device``, ``--threads``, ``--confidence``...) are the
producer's own declarations, reused field by field: a value a producer accepts, the worker
accepts, with the same reasons for refusing one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from framecast import settings
from framecast.settings import non_negative, option
from producer.config import Config as ProducerConfig

__all__ = ["DESCRIPTION", "EPILOG", "MODEL_KEYS", "Config"]

DESCRIPTION = """\
One model for many cameras: load an onnx: model once and serve the producers that connect to the
Unix socket (framecast producer --predictor-socket PATH). Frames from several cameras are run in
one batched inference; each result goes back to its camera with that camera's frame index and
capture time. Frames travel in shared memory; only a ~100-byte message crosses the socket."""

EPILOG = """\
batching:
  A batch goes when it holds --max-batch frames, when every connected camera has a frame waiting,
  or when its oldest frame has waited --batch-wait seconds, whichever comes first: a camera that
  stalls costs the others at most --batch-wait per batch.

failures:
  A producer that disconnects is forgotten (its frames in the batcher dropped). If this worker
  dies, its producers say predictor "down" in their heartbeats, skip frames, reconnect with backoff
  and say "ready" again (predictor_restarts + 1) once it is back: run it under a supervisor
  (framecast up does, as child predictor-NAME).

More in docs/producer.md, "One model for many cameras"."""

MODEL_KEYS = ("detector", "device", "engine", "threads", "confidence", "nms", "classes", "input_size")
"""Producer settings that belong to the shared worker when a camera uses one."""


def _producer_option(name: str, *, default: Any = dataclasses.MISSING, **changes: Any) -> Any:
    """The producer's declaration of setting ``name`` (help, default, check, variable), reused."""
    field = next(f for f in dataclasses.fields(ProducerConfig) if f.name == name)
    return dataclasses.field(
        default=field.default if default is dataclasses.MISSING else default,
        metadata={**field.metadata, "group": "model", **changes},
    )


def _batch(value: int) -> None:
    if not 1 <= value <= 256:
        raise ValueError("must be between 1 and 256")


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything the shared inference worker reads from its command line and environment."""

    socket: str = option(
        "",
        help="Unix socket to listen on (required); producers give the same path as --predictor-socket.",
        env="FRAMECAST_INFERENCE_SOCKET",
        metavar="PATH",
        group="serving",
    )
    name: str = option(
        "shared",
        help="A name for logs and metrics (framecast up passes the [predictors.NAME]).",
        env="FRAMECAST_INFERENCE_NAME",
        metavar="NAME",
        group="serving",
    )
    max_batch: int = option(
        8,
        help="Most frames in one inference (1-256).",
        metavar="N",
        check=_batch,
        group="batching",
    )
    batch_wait: float = option(
        0.010,
        help="Seconds a frame may wait for others to join its batch (the latency budget).",
        metavar="SECONDS",
        check=non_negative,
        group="batching",
    )
    concurrency: int = option(
        1,
        help="Inferences at once, on one copy of the model (2: the next batch is letterboxed and "
        "decoded while one computes). On a CPU 2 measured no faster and split the cameras unevenly.",
        metavar="N",
        check=_batch,
        group="batching",
    )
    detector: str = _producer_option(
        "detector",
        default="",
        help="The model (required): onnx:PATH, or module:callable whose objects have a batch(frames) method.",
    )
    device: str = _producer_option("device")
    engine: str = _producer_option("engine")
    threads: int = _producer_option("threads", help="onnx: threads per inference (0: one per core).")
    confidence: float = _producer_option("confidence")
    nms: float = _producer_option("nms")
    classes: str | None = _producer_option("classes")
    input_size: int = _producer_option("input_size")
    metrics_port: int = _producer_option(
        "metrics_port", env="FRAMECAST_INFERENCE_METRICS_PORT", group="operations"
    )
    metrics_host: str = _producer_option(
        "metrics_host", env="FRAMECAST_INFERENCE_METRICS_HOST", group="operations"
    )
    log_level: str = _producer_option("log_level", group="operations")

    def __post_init__(self) -> None:
        if not self.socket:
            raise settings.ConfigError("--socket is required (or FRAMECAST_INFERENCE_SOCKET)")
        if not self.detector:
            raise settings.ConfigError(
                "--detector is required (or FRAMECAST_DETECTOR), e.g. onnx:yolov8n.onnx"
            )
