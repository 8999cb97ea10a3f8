"""The producer's Prometheus metrics (``--metrics-port``).

Each producer builds its own registry so that several can live in one process (tests) without
clashing; :meth:`Metrics.serve` exposes it over HTTP.
"""

from __future__ import annotations

import threading
from collections import deque
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

__all__ = ["Metrics", "Rates"]


class Metrics:
    """Counters and gauges of one producer."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        p = "framecast_producer_"
        self.info = Info(
            p[:-1],
            "The producer's stream, source, detector, epoch and the execution provider running its model.",
            registry=r,
        )
        self.captured = Counter(p + "frames_captured", "Frames read from the source.", registry=r)
        self.skipped = Counter(
            p + "frames_skipped", "Frames replaced by a newer one before the predictor took them.", registry=r
        )
        self.processed = Counter(p + "frames_processed", "Frames the predictor finished.", registry=r)
        self.published = Counter(p + "results_published", "Results written to Redis.", registry=r)
        self.previews = Counter(p + "previews_published", "Preview pictures published.", registry=r)
        self.predict_seconds = Histogram(
            p + "predict_seconds",
            "Time the predictor took per frame.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.capture_to_publish = Histogram(
            p + "capture_to_publish_seconds",
            "From a frame's capture to its result's write to Redis (parked results included).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.target_fps = Gauge(
            p + "target_fps",
            "The rate aimed at: --max-fps, or the measured capture rate when uncapped.",
            registry=r,
        )
        self.predict_errors = Counter(
            p + "predict_errors", "Frames on which the predictor raised.", registry=r
        )
        self.publish_errors = Counter(
            p + "publish_errors", "Redis calls that failed (unreachable or refused).", registry=r
        )
        self.publish_refused = Counter(
            p + "publish_refused",
            "Redis calls Redis answered with an error reply (a refused write, not a lost link).",
            registry=r,
        )
        self.reconnects = Counter(p + "source_reconnects", "Times the source was reopened.", registry=r)
        self.source_online = Gauge(p + "source_online", "1 while the source delivers frames.", registry=r)
        self.redis_connected = Gauge(p + "redis_connected", "1 while Redis answers.", registry=r)
        self.active = Gauge(
            p + "active", "1 while the predictor runs (0: paused, nobody watches).", registry=r
        )
        self.capture_fps = Gauge(p + "capture_fps", "Frames captured per second (recent).", registry=r)
        self.process_fps = Gauge(p + "process_fps", "Frames processed per second (recent).", registry=r)
        self._totals: dict[int, float] = {}
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def advance(self, counter: Counter, total: float) -> None:
        """Bring ``counter`` up to ``total``, a running count kept elsewhere (e.g. by the grabber)."""
        last = self._totals.get(id(counter), 0)
        if total > last:
            counter.inc(total - last)
            self._totals[id(counter)] = total

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``host:port`` from a background thread.

        Raises:
            OSError: The port cannot be bound.
        """
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class Rates:
    """Recent per-second rates of running counts, averaged over a sliding window.

    Args:
        window: Seconds averaged over.
    """

    def __init__(self, *, window: float = 5.0) -> None:
        self._window = window
        self._samples: deque[tuple[float, tuple[int, ...]]] = deque()

    def update(self, now: float, *counts: int) -> tuple[float, ...]:
        """Record ``counts`` at time ``now`` and return their rates over the window."""
        self._samples.append((now, counts))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window:
            self._samples.popleft()
        then, old = self._samples[0]
        elapsed = now - then
        if elapsed <= 0:
            return tuple(0.0 for _ in counts)
        return tuple(round((new - was) / elapsed, 2) for new, was in zip(counts, old, strict=True))
