"""Prometheus metrics of one gateway process, on a registry of its own.

Hot-path counters are plain integers in :class:`gateway.fanout.FanoutStats`,
read only when ``/metrics`` is scraped; histograms are observed once per
message or once per write batch (a slice of clients, a flushed lagging client),
never per client.

Two capture-age figures: ``framecast_gateway_write_latency_seconds`` is taken
where the bytes are written to client sockets (so a lagging client's late
flush shows), ``framecast_gateway_capture_to_fanout_seconds`` when a message
enters the fan-out (how late it reached this gateway; blind to slow clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.fanout import Fanout
from gateway.subscriber import Subscriber

__all__ = ["CONTENT_TYPE", "GatewayMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0, 5.0)
_FANOUT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class _Live(Collector):
    """Reads the fan-out's and subscriber's state at scrape time."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        fanout, subscriber, stats = self._m.fanout, self._m.subscriber, self._m.fanout.stats
        yield _gauge("framecast_gateway_connections", "Open WebSocket connections.", self._m.connections())
        yield _gauge(
            "framecast_gateway_subscriptions", "Client-stream subscriptions.", fanout.subscriptions()
        )
        yield _gauge("framecast_gateway_streams", "Streams with local clients.", len(fanout.streams()))
        yield _gauge(
            "framecast_gateway_lagging_clients",
            "Clients lagging (over --client-buffer, or a lag probe unanswered past --lag-threshold).",
            fanout.lagging,
        )
        yield _gauge(
            "framecast_gateway_client_lag_max_seconds",
            "Age of the oldest unanswered lag probe over every client (0: none out).",
            fanout.policy.max_probe_age(),
        )
        yield _gauge(
            "framecast_gateway_client_buffer_max_bytes",
            "Largest unsent byte count of any client socket.",
            fanout.max_buffered(),
        )
        yield _gauge("framecast_gateway_ready", "1 while /readyz answers 200.", 1 if self._m.ready() else 0)
        yield _gauge("framecast_gateway_redis_channels", "Redis channels subscribed.", subscriber.channels)
        yield _gauge(
            "framecast_gateway_canary_rtt_seconds",
            "Round trip of the last Redis canary.",
            subscriber.canary_rtt if subscriber.canary_rtt is not None else float("nan"),
        )
        yield _gauge(
            "framecast_gateway_loop_lag_max_seconds",
            "Worst event-loop lag over the last 10 s.",
            self._m.loop_lag_max(),
        )
        yield _gauge(
            "framecast_gateway_asyncio_tasks",
            "Asyncio tasks alive in the gateway's event loop (flat under churn, or something leaks).",
            _task_count(),
        )
        messages = CounterMetricFamily(
            "framecast_gateway_messages", "Messages received for fan-out, by kind.", labels=["kind"]
        )
        for kind, count in sorted(stats.messages.items()):
            messages.add_metric([kind], count)
        yield messages
        yield _counter(
            "framecast_gateway_deliveries", "Messages written to client sockets.", stats.deliveries
        )
        yield _counter(
            "framecast_gateway_sent_bytes", "WebSocket frame bytes written to clients.", stats.bytes_out
        )
        drops = CounterMetricFamily(
            "framecast_gateway_dropped", "Deliveries not made, by reason.", labels=["reason"]
        )
        for reason in ("stale", "conflated", "overload", "malformed", "join-overflow"):
            drops.add_metric([reason], stats.drops.get(reason, 0))
        yield drops
        yield _counter(
            "framecast_gateway_slow_consumer_closes", "Clients closed with 4008.", stats.slow_closes
        )
        yield _counter(
            "framecast_gateway_lag_probes", "Lag probes (pings behind the data) written.", stats.probes
        )
        yield _counter("framecast_gateway_lag_probe_answers", "Lag probes answered (pongs).", stats.pongs)
        yield _counter(
            "framecast_gateway_probe_lags",
            "Clients that started lagging because a lag probe went unanswered past --lag-threshold.",
            stats.probe_lags,
        )
        yield _counter(
            "framecast_gateway_redis_reconnects", "Redis subscription re-established.", subscriber.reconnects
        )
        yield _counter(
            "framecast_gateway_history_reads",
            "Subscribers' history+status reads sent to Redis (one per burst of a stream's subscribers).",
            self._m.history_reads(),
        )


def _task_count() -> float:
    # /metrics is rendered on the event loop's thread; anywhere else there is no loop to count.
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:
        return float("nan")


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class GatewayMetrics:
    """Every metric of a gateway.

    Args:
        fanout: The fan-out whose counters are exported.
        subscriber: The Redis subscription.
        connections: Returns the number of open WebSocket connections.
        ready: Returns whether the gateway is ready.
        history_reads: Returns how many subscriber reads went to Redis.
    """

    def __init__(
        self,
        *,
        fanout: Fanout,
        subscriber: Subscriber,
        connections: Callable[[], int],
        ready: Callable[[], bool],
        history_reads: Callable[[], int] = lambda: 0,
    ) -> None:
        self.history_reads = history_reads
        self.fanout = fanout
        self.subscriber = subscriber
        self.connections = connections
        self.ready = ready
        self.registry = CollectorRegistry()
        self.fanout_seconds = Histogram(
            "framecast_gateway_fanout_seconds",
            "Time to hand one message to every local client of its stream.",
            buckets=_FANOUT_BUCKETS,
            registry=self.registry,
        )
        self.entry_latency = Histogram(
            "framecast_gateway_capture_to_fanout_seconds",
            "From a message's captured_at to its arrival at the fan-out (clock offsets included).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.write_latency = Histogram(
            "framecast_gateway_write_latency_seconds",
            "From a message's captured_at to its write to client sockets, once per write batch "
            "(a slice of clients, or one flushed lagging client), by kind (clock offsets included).",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.loop_lag = Histogram(
            "framecast_gateway_loop_lag_seconds",
            "Event-loop lag sampled every 100 ms.",
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )
        self.handshakes = Counter(
            "framecast_gateway_handshakes",
            "WebSocket handshakes, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.closes = Counter(
            "framecast_gateway_closes",
            "Connections closed by the gateway, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.client_errors = Counter(
            "framecast_gateway_client_errors",
            "Refused client operations, by error code.",
            ["code"],
            registry=self.registry,
        )
        self._lags: list[tuple[float, float]] = []
        self._write_kinds: dict[str, Histogram] = {}
        self.registry.register(_Live(self))
        # Set here, not by the caller: the write-time figure must never be silently unwired.
        fanout.policy.on_write = self.on_write

    def on_message(self, kind: str, seconds: float, age: float | None, sent: int) -> None:
        """The fan-out's per-message hook."""
        if sent:
            self.fanout_seconds.observe(seconds)
            if age is not None:
                self.entry_latency.observe(max(age, 0.0))

    def on_write(self, kind: str, age: float, written: int) -> None:
        """The fan-out's write-time hook: ``age`` seconds since capture, ``written`` clients."""
        if written <= 0:
            return
        child = self._write_kinds.get(kind)
        if child is None:  # labels() is a locked lookup; the hot path keeps its own dict
            child = self._write_kinds[kind] = self.write_latency.labels(kind)
        child.observe(max(age, 0.0))

    def loop_lag_max(self) -> float:
        """Worst loop lag sampled in the last 10 s."""
        horizon = time.monotonic() - 10.0
        return max((lag for at, lag in self._lags if at >= horizon), default=0.0)

    async def watch_loop(self, *, interval: float = 0.1) -> None:
        """Sample event-loop lag until cancelled."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                start = loop.time()
                await asyncio.sleep(interval)
                lag = max(loop.time() - start - interval, 0.0)
                self.loop_lag.observe(lag)
                now = time.monotonic()
                self._lags.append((now, lag))
                if len(self._lags) > 200:
                    del self._lags[:100]

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)
