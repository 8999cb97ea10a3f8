"""The canary: proof that the gateway's subscription still delivers.

Every ``interval`` a canary is published on a channel of this gateway's own (one per cluster
primary) and received on the same subscription. :class:`Canary` keeps the books: the gateway
is ready only while every canary came back within ``ready_timeout``; if canaries sent while the
link was up stay unanswered for twice that, the link is deaf (a failover, an output-buffer kill,
a stalled proxy) and :meth:`Canary.check` raises :class:`Deaf` so it is torn down and rebuilt.

A canary counts from the moment it is *sent*, not from Redis acknowledging the PUBLISH: a link
frozen in both directions (TCP up, no byte moving) acknowledges nothing, and is exactly the
deafness to catch. A canary that comes back after a silence longer than twice ``ready_timeout``
(the link thawed before the watchdog fired) is deafness too: what the link held arrived too late
to be delivered (older than ``--max-age``), so the link is rebuilt all the same and the clients
get their ``gap``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from framecast.broker import Broker
from framecast.exceptions import BrokerError, FramecastError

__all__ = ["Canary", "Deaf"]

log = logging.getLogger(__name__)

_OUTSTANDING = 64  # unanswered canaries remembered per channel: only the oldest matters


class Deaf(FramecastError):
    """The subscription stopped delivering although the connection looks fine."""


class Canary:
    """Send canaries through the broker and judge the subscription by their return.

    Args:
        broker: Where canaries are published.
        ready_timeout: Freshness a canary must have for readiness.
        interval: Seconds between canaries.
        clock: Monotonic clock.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        ready_timeout: float,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._broker = broker
        self.ready_timeout = ready_timeout
        self._interval = interval
        self._clock = clock
        self.channels: tuple[str, ...] = ()
        self._seq = 0
        self._sent: dict[str, dict[int, float]] = {}  # per canary: accepted, not yet back
        self._rx: dict[str, float] = {}  # per canary: last one back
        self._connected_at: float | None = None
        self._late: str | None = None  # a canary came back after a deaf silence: rebuild
        self.rtt: float | None = None
        """Round trip of the last canary, seconds."""

    def reset(self, channels: tuple[str, ...]) -> None:
        """A new link: watch these channels, forget every canary of the old one."""
        self.channels = channels
        self._sent.clear()
        self._rx.clear()
        self._connected_at = None
        self._late = None

    def link_up(self) -> None:
        """Every canary subscription is confirmed: deafness counts from now."""
        self._connected_at = self._clock()

    def stale_reason(self) -> str | None:
        """None while every canary is fresh; else why not, in a few words."""
        now = self._clock()
        for channel in sorted(self.channels):
            where = f" on {channel}" if len(self.channels) > 1 else ""
            received = self._rx.get(channel)
            if received is None:
                return f"waiting for the first canary round trip{where}"
            age = now - received
            if age > self.ready_timeout:
                return f"redis subscription deaf: no canary for {age:.1f} s{where}"
        return None

    def check(self) -> None:
        """Raise :class:`Deaf` when sent canaries stayed unanswered for ``2 * ready_timeout``.

        Also raises once after a canary came back from such a silence (see the module doc).
        """
        if self._connected_at is None:
            return
        if self._late is not None:
            late, self._late = self._late, None
            raise Deaf(late)
        now = self._clock()
        for channel, sent in self._sent.items():
            if not sent:
                continue
            oldest = min(sent.values())
            last_sign = max(self._rx.get(channel, 0.0), self._connected_at)
            if now - oldest > 2 * self.ready_timeout and now - last_sign > 2 * self.ready_timeout:
                where = f" on {channel}" if len(self.channels) > 1 else ""
                raise Deaf(f"no canary came back for {now - last_sign:.1f} s{where}")

    def back(self, channel: str, data: bytes) -> None:
        """A canary came back on ``channel``."""
        try:
            seq = int(data)
        except ValueError:
            return
        outstanding = self._sent.setdefault(channel, {})
        sent = outstanding.pop(seq, None)
        now = self._clock()
        if self._connected_at is not None:
            silence = now - max(self._rx.get(channel, 0.0), self._connected_at)
            if silence > 2 * self.ready_timeout:
                where = f" on {channel}" if len(self.channels) > 1 else ""
                self._late = f"a canary came back after {silence:.1f} s of silence{where}"
        if sent is not None:
            self.rtt = now - sent
        for old in [s for s in outstanding if s < seq]:
            del outstanding[old]
        self._rx[channel] = now

    async def run(self, connected: Callable[[], bool], stopping: Callable[[], bool]) -> None:
        """Publish a canary every ``interval`` while ``connected()``, until ``stopping()``."""
        while not stopping():
            if not connected():
                # Poll briefly so the first canary goes out as soon as the subscription is up.
                await asyncio.sleep(min(0.05, self._interval))
                continue
            self._seq += 1
            # Every shard's canary at once: a slow shard must not delay the others' proof of life.
            await asyncio.gather(*(self._send(name, self._seq, connected) for name in self.channels))
            await asyncio.sleep(self._interval)

    async def _send(self, name: str, seq: int, connected: Callable[[], bool]) -> None:
        if connected():
            # Counted before the PUBLISH is acknowledged: a frozen link never acknowledges it.
            outstanding = self._sent.setdefault(name, {})
            outstanding[seq] = self._clock()
            if len(outstanding) > _OUTSTANDING:
                outstanding.pop(min(outstanding))
        try:
            async with asyncio.timeout(self.ready_timeout):
                await self._broker.publish(name, str(seq))
        except (BrokerError, TimeoutError) as exc:
            log.debug("canary publish on %s failed: %s", name, exc)
