"""``framecast inference``: run the shared inference worker until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import stat
import sys
import threading
from collections.abc import Sequence
from typing import Any

from framecast import logs, settings
from framecast.exceptions import FramecastError
from producer import detectors
from producer.devices import DeviceError
from producer.inference.config import DESCRIPTION, EPILOG, Config
from producer.inference.metrics import WorkerMetrics
from producer.inference.server import BatchPredictor, Worker

__all__ = ["batch_predictor", "bind", "main"]

log = logging.getLogger("producer.inference")


class SocketInUse(FramecastError, OSError):
    """Another worker answers on the socket path."""


def batch_predictor(config: Config) -> tuple[BatchPredictor, dict[str, str]]:
    """Load the model once; returns its batch function and what producers are told about it.

    Raises:
        DetectorError: The detector cannot be loaded, or cannot batch.
        DeviceError: The device cannot be used here.
    """
    options = detectors.Options(
        confidence=config.confidence,
        nms=config.nms,
        classes=config.classes,
        input_size=config.input_size,
        engine=config.engine,
        device=config.device,
        threads=config.threads,
    )
    predictor: Any = detectors.load(config.detector, options=options)
    batch = getattr(predictor, "batch", None)
    if not callable(batch):
        raise detectors.DetectorError(
            "a shared predictor runs frames of many cameras in one call: use onnx:PATH, or a class whose "
            "objects have a batch(frames) -> list of detections method (motion keeps state per camera)"
        )
    engine = getattr(predictor, "engine", None)
    describe = {
        "detector": config.detector,
        "engine": str(getattr(engine, "name", "")),
        "provider": str(getattr(engine, "provider", "")),
        "device": str(getattr(engine, "device", config.device)),
    }
    return batch, describe


def bind(path: str) -> socket.socket:
    """Listen on the Unix socket ``path``, replacing a stale socket file left by a dead worker.

    Raises:
        SocketInUse: A live worker answers there.
        OSError: The path cannot be used (a directory, no permission, too long...).
    """
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # nobody listens: a crashed worker's leftover
            else:
                raise SocketInUse(f"another worker listens on {path}")
            finally:
                probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(128)
    except OSError:
        listener.close()
        raise
    return listener


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m producer.inference") -> int:
    """Run the worker.

    Returns:
        0 after SIGTERM/SIGINT; 1 when the socket or the metrics port cannot be used; 2 for a bad
        setting, a model that cannot be loaded or a device that is not installed.
    """
    config = settings.parse(Config, argv, prog=prog, description=DESCRIPTION, epilog=EPILOG)
    logs.setup(config.log_level, name="producer")
    try:
        predict, describe = batch_predictor(config)
    except DeviceError as exc:
        return settings.fail(prog, f"--device={config.device}: {exc}", 2)
    except detectors.DetectorError as exc:
        return settings.fail(prog, f"--detector={config.detector}: {exc}", 2)
    try:
        listener = bind(config.socket)
    except OSError as exc:
        return settings.fail(prog, f"--socket={config.socket}: cannot listen: {exc.strerror or exc}", 1)
    metrics = WorkerMetrics()
    metrics.info.info({"name": config.name, **describe})
    try:
        if config.metrics_port:
            metrics.serve(config.metrics_port, config.metrics_host)
    except OSError as exc:
        listener.close()
        return settings.fail(
            prog, f"--metrics-port={config.metrics_port}: cannot listen: {exc.strerror or exc}", 1
        )
    worker = Worker(
        predict,
        describe=describe,
        max_batch=config.max_batch,
        batch_wait=config.batch_wait,
        concurrency=config.concurrency,
        metrics=metrics,
    )
    log.info(
        "inference worker %s: %s on %s (%s), batches of up to %d within %g ms; listening on %s",
        config.name,
        config.detector,
        describe["provider"] or describe["engine"],
        describe["engine"],
        config.max_batch,
        config.batch_wait * 1e3,
        config.socket,
    )
    try:
        asyncio.run(_serve(worker, listener))
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(config.socket)
        metrics.close()
    log.info("stopped after %d inferences", worker.batches)
    if any(t.name.startswith("infer") and t.is_alive() for t in threading.enumerate()):
        # An inference still inside native code: finalising around it can hang or abort.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


async def _serve(worker: Worker, listener: socket.socket) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await worker.serve(listener, stop)


if __name__ == "__main__":
    sys.exit(main())
