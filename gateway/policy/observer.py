"""What the fan-out reports: one observer interface, and the plain counters that implement it.

Effects leave the policy two ways: writes to sinks and queued actions (see
:mod:`gateway.policy.facade`). Everything else it knows happened (a message in, a batch
written, a drop, a close, a probe) goes to one :class:`Observer`, given at construction.
The policy calls it once per message, slice, single write or rare event, never once per
client in the hot loop. :class:`Counters` is the default; the gateway's Prometheus metrics
(:class:`gateway.metrics.GatewayMetrics`) extend it with histograms.
"""

from __future__ import annotations

import collections
from typing import Protocol

__all__ = ["Counters", "Observer"]


class Observer(Protocol):
    """Receives what the fan-out did."""

    def received(self, kind: str) -> None:
        """A message of ``kind`` was handed to the fan-out (gateway-made notices included)."""

    def dropped(self, reason: str, count: int) -> None:
        """``count`` deliveries were not made, for ``reason`` (see :class:`Counters`)."""

    def written(self, kind: str, clients: int, nbytes: int, age: float | None) -> None:
        """One batch was written: ``clients`` clients, ``nbytes`` frame bytes in all.

        Once per slice of a fan-out and per single write (a flushed or joining client);
        ``age`` is the message's age since capture at write time (None: it has none).
        """

    def fanned_out(self, kind: str, seconds: float, age: float | None, clients: int) -> None:
        """A message's fan-out ended: ``seconds`` spent writing it, its ``age`` since capture when
        it arrived (None: it has none), ``clients`` written."""

    def slow_closed(self) -> None:
        """A client is being closed with 4008 (slow consumer)."""

    def probe_sent(self) -> None:
        """A lag probe (a ping behind the data) was written."""

    def probe_answered(self) -> None:
        """A lag probe was answered."""

    def probe_lagged(self) -> None:
        """A client started lagging because its probe went unanswered past ``lag_threshold``."""


class Counters:
    """The fan-out's counters, plain integers read when someone asks (an :class:`Observer`).

    Attributes:
        messages: Messages handed to the fan-out, by kind.
        deliveries: Messages written to client sockets.
        bytes_out: Bytes of WebSocket frames written to client sockets (payload
            bytes, before compression, for permessage-deflate connections).
        drops: Deliveries not made, by reason: ``stale`` (older than
            ``max_age``), ``conflated`` (replaced by a newer one while the client
            lagged), ``malformed`` (not a valid stream message: dropped for all),
            ``join-overflow`` (too many live messages while a replay ran),
            ``broken-chain`` (a video frame after a gap in its stream's chain: clients wait
            for the next keyframe),
            ``overload`` (the stream's messages arrived faster than they could be
            written to its audience: the oldest waiting ones were skipped).
        slow_closes: Clients closed with 4008.
        probes: Lag probes (pings behind the data) written.
        pongs: Lag probes answered.
        probe_lags: Clients that started lagging because a probe went unanswered
            for more than ``lag_threshold`` (the others started on their buffer level).
    """

    def __init__(self) -> None:
        self.messages: collections.defaultdict[str, int] = collections.defaultdict(int)
        self.deliveries = 0
        self.bytes_out = 0
        self.drops: collections.defaultdict[str, int] = collections.defaultdict(int)
        self.slow_closes = 0
        self.probes = 0
        self.pongs = 0
        self.probe_lags = 0

    def received(self, kind: str) -> None:
        self.messages[kind] += 1

    def dropped(self, reason: str, count: int) -> None:
        self.drops[reason] += count

    def written(self, kind: str, clients: int, nbytes: int, age: float | None) -> None:
        self.deliveries += clients
        self.bytes_out += nbytes

    def fanned_out(self, kind: str, seconds: float, age: float | None, clients: int) -> None:
        pass

    def slow_closed(self) -> None:
        self.slow_closes += 1

    def probe_sent(self) -> None:
        self.probes += 1

    def probe_answered(self) -> None:
        self.pongs += 1

    def probe_lagged(self) -> None:
        self.probe_lags += 1
