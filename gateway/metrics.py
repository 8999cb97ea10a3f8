"""Prometheus metrics of one gateway process, on a registry of its own.

:class:`GatewayMetrics` is the fan-out's observer (:class:`gateway.policy.Observer`):
its hot-path counters are the plain integers of :class:`gateway.policy.Counters`,
read only when ``/metrics`` is scraped; histograms are observed once per
message or once per write batch (a slice of clients, a flushed lagging client),
never per client. :class:`LiveGauges` reads the gateway's state at scrape time.

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
from gateway.policy import Counters
from gateway.subscriber import Subscriber

__all__ = ["CONTENT_TYPE", "GatewayMetrics", "LiveGauges"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0, 5.0)
_FANOUT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class LiveGauges(Collector):
    """Reads the fan-out's and subscriber's state at scrape time.

    Args:
        counts: The fan-out's counters (the gateway's :class:`GatewayMetrics`).
        fanout: The fan-out.
        subscriber: The Redis subscription.
        connections: Returns the number of open WebSocket connections.
        ready: Returns whether the gateway is ready.
        loop_lag: Returns the worst event-loop lag lately.
        history_reads: Returns how many subscriber reads went to Redis.
    """

    def __init__(
        self,
        *,
        counts: Counters,
        fanout: Fanout,
        subscriber: Subscriber,
        connections: Callable[[], int],
        ready: Callable[[], bool],
        loop_lag: Callable[[], float],
        history_reads: Callable[[], int] = lambda: 0,
    ) -> None:
        self._counts = counts
        self._fanout = fanout
        self._subscriber = subscriber
        self._connections = connections
        self._ready = ready
        self._loop_lag = loop_lag
        self._history_reads = history_reads

    def collect(self) -> Iterator[Metric]:
        fanout, subscriber, stats = self._fanout, self._subscriber, self._counts
        yield _gauge("framecast_gateway_connections", "Open WebSocket connections.", self._connections())
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
        yield _gauge("framecast_gateway_ready", "1 while /readyz answers 200.", 1 if self._ready() else 0)
        yield _gauge("framecast_gateway_redis_channels", "Redis channels subscribed.", subscriber.channels)
        yield _gauge(
            "framecast_gateway_canary_rtt_seconds",
            "Round trip of the last Redis canary.",
            subscriber.canary_rtt if subscriber.canary_rtt is not None else float("nan"),
        )
        yield _gauge(
            "framecast_gateway_loop_lag_max_seconds",
            "Worst event-loop lag over the last 10 s.",
            self._loop_lag(),
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
        for reason in ("stale", "conflated", "overload", "malformed", "join-overflow", "broken-chain"):
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
            self._history_reads(),
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


class GatewayMetrics(Counters):
    """Every metric of a gateway, on a registry of its own; the fan-out's observer.

    The fan-out's counters are inherited (:class:`gateway.policy.Counters`); the gateway's own
    events (handshakes, closes, refused operations) come through :meth:`handshake`,
    :meth:`closed` and :meth:`client_error`. Register a :class:`LiveGauges` for the state read
    at scrape time.
    """

    def __init__(self) -> None:
        super().__init__()
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
        self._closes: dict[str, Counter] = {}

    # The fan-out's observer (beyond the counters) --------------------------

    def fanned_out(self, kind: str, seconds: float, age: float | None, clients: int) -> None:
        """A message's fan-out ended: its duration, and how late it reached the fan-out."""
        if clients:
            self.fanout_seconds.observe(seconds)
            if age is not None:
                self.entry_latency.observe(max(age, 0.0))

    def written(self, kind: str, clients: int, nbytes: int, age: float | None) -> None:
        """A batch written: counted, and ``age`` seconds since capture at write time observed."""
        super().written(kind, clients, nbytes, age)
        if age is None or clients <= 0:
            return
        child = self._write_kinds.get(kind)
        if child is None:  # labels() is a locked lookup; the hot path keeps its own dict
            child = self._write_kinds[kind] = self.write_latency.labels(kind)
        child.observe(max(age, 0.0))

    # The gateway's own events -----------------------------------------------

    def handshake(self, outcome: str) -> None:
        """A WebSocket handshake ended: ``accepted`` or the HTTP status it was refused with."""
        self.handshakes.labels(outcome).inc()

    def closed(self, reason: str) -> None:
        """The gateway closed a connection, for ``reason``.

        ``slow-consumer`` (4008) also counts in ``slow_closes``, whoever closed it: the fan-out
        (which reports it itself) or a session whose replay did not get through in time.
        """
        child = self._closes.get(reason)
        if child is None:
            child = self._closes[reason] = self.closes.labels(reason)
        child.inc()
        if reason == "slow-consumer":
            self.slow_closes += 1

    def client_error(self, code: str) -> None:
        """A client operation was refused with ``code``."""
        self.client_errors.labels(code).inc()

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
