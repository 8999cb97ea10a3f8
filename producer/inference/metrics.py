"""The shared inference worker's Prometheus metrics (``framecast inference --metrics-port``)."""

from __future__ import annotations

from collections.abc import Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

__all__ = ["WorkerMetrics"]

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class WorkerMetrics:
    """Batches, their sizes and times, and the connected producers of one worker."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        p = "framecast_inference_"
        self.info = Info(
            p[:-1], "The worker's name, model, engine, execution provider and device.", registry=r
        )
        self.batch_size = Histogram(
            p + "batch_size",
            "Frames per inference.",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256),
            registry=r,
        )
        self.batch_seconds = Histogram(
            p + "batch_seconds", "Time one inference took (the whole batch).", buckets=_SECONDS, registry=r
        )
        self.wait_seconds = Histogram(
            p + "wait_seconds",
            "Time a frame waited in the worker before its inference began (batching and a busy model).",
            buckets=_SECONDS,
            registry=r,
        )
        self.frames = Counter(p + "frames", "Frames predicted.", registry=r)
        self.errors = Counter(
            p + "errors", "Inferences that failed (every frame in them is lost).", registry=r
        )
        self.clients = Gauge(p + "clients", "Producers connected.", registry=r)
        self._server: WSGIServer | None = None

    def observe(self, size: int, seconds: float, waits: Sequence[float], *, failed: bool) -> None:
        """Count one inference of ``size`` frames that took ``seconds``."""
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        for wait in waits:
            self.wait_seconds.observe(wait)
        if failed:
            self.errors.inc()
        else:
            self.frames.inc(size)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` from a background thread.

        Raises:
            OSError: The port cannot be bound.
        """
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
