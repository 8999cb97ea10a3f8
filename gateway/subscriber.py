"""The gateway's one Redis subscription: subscribe on demand, survive drops, notice deafness.

One :class:`Subscriber` owns one pub/sub link. It holds a stream's channel only while the
gateway has local clients for it (reference counted by :meth:`Subscriber.acquire` /
:meth:`Subscriber.release`, booked in the sans-I/O :class:`~gateway.demand.Demand`), hands
every message to a callback, and yields to the event loop after each one so a backlog cannot
starve the WebSocket side.

Failure handling, beyond what redis-py does by itself:

* A dropped link is reconnected with capped exponential backoff and jitter; every channel is
  subscribed again, and once that is confirmed the ``on_gap`` callback names every stream whose
  messages may have been missed.
* A :class:`~gateway.canary.Canary` watches the link; when it turns deaf the link is torn down
  and rebuilt.

A stream's video channel lingers ``video_linger`` seconds after its last user left: frames keep
flowing to the fan-out, whose current group of pictures stays current, so a viewer who reloads
or resubscribes within it starts at once from that GOP rather than at the next keyframe. The
producer encodes while its video channel has subscribers, so it keeps encoding for as long.

How the link is made (one connection, or one per primary of a Redis Cluster with a canary
each) is the :class:`~framecast.broker.Broker`'s business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from framecast import wire
from framecast.broker import Broker, Confirmation, Event, Subscription, open_broker
from framecast.exceptions import BrokerError
from framecast.retry import backoff
from gateway.canary import Canary, Deaf
from gateway.demand import Demand, Route

__all__ = ["MESSAGES", "PREVIEWS", "VIDEO", "Subscriber", "Wants"]

log = logging.getLogger(__name__)

MESSAGES = "messages"
"""The kind of a stream's channel: results and statuses."""
PREVIEWS = "previews"
"""The kind of a stream's preview channel: binary previews."""
VIDEO = "video"
"""The kind of a stream's video channel: binary video frames."""


@dataclass(frozen=True, slots=True)
class Wants:
    """What a client takes of a stream besides its results and statuses (each its own channel)."""

    previews: bool = False
    video: bool = False


class Subscriber:
    """One pub/sub link shared by every stream this gateway serves.

    Args:
        gateway_id: Names the canary channel.
        on_message: Called synchronously with ``(stream, data)`` for each result
            or status message.
        broker: The gateway's Redis; if None, one is opened for ``url`` (and closed by :meth:`stop`).
        url: Redis URL, when no ``broker`` is given.
        on_preview: Called with ``(stream, data)`` for each binary preview.
        on_video: Called with ``(stream, data)`` for each binary video frame.
        on_gap: Called with the streams subscribed when the connection came back
            after a drop (their clients may have missed messages).
        on_video_end: Called with a stream once its video channel is given up (its last
            video user left, and ``video_linger`` passed): the frames stop coming.
        video_linger: Seconds a stream's video channel stays subscribed after its last user
            left (0: given up at once).
        sharded: With ``url``: SSUBSCRIBE/SPUBLISH instead of SUBSCRIBE/PUBLISH.
        cluster: With ``url``: it is a Redis Cluster node.
        health_check_interval: Seconds between PINGs on an idle connection.
        ready_timeout: Freshness a canary must have for :attr:`ready`.
        canary_interval: Seconds between canaries.
        poll_interval: Longest wait for a message before subscription changes
            and the watchdog are looked at.
        backoff_base: First reconnect delay, doubled per failure...
        backoff_cap: ...up to this many seconds.
    """

    def __init__(
        self,
        *,
        gateway_id: str,
        on_message: Callable[[str, bytes], None],
        broker: Broker | None = None,
        url: str | None = None,
        on_preview: Callable[[str, bytes], None] | None = None,
        on_video: Callable[[str, bytes], None] | None = None,
        on_gap: Callable[[list[str]], None] | None = None,
        on_video_end: Callable[[str], None] | None = None,
        video_linger: float = 0.0,
        sharded: bool = False,
        cluster: bool = False,
        health_check_interval: float = 5.0,
        ready_timeout: float = 3.0,
        canary_interval: float = 1.0,
        poll_interval: float = 0.1,
        backoff_base: float = 0.2,
        backoff_cap: float = 5.0,
    ) -> None:
        if broker is None:
            if url is None:
                raise ValueError("Subscriber needs a broker or a url")
            broker = open_broker(url, timeout=ready_timeout, cluster=cluster, sharded=sharded)
            self._owns_broker = True
        else:
            self._owns_broker = False
        self._broker = broker
        self._deliver: dict[str, Callable[[str, bytes], None] | None] = {
            MESSAGES: on_message,
            PREVIEWS: on_preview,
            VIDEO: on_video,
        }
        self._on_gap = on_gap
        self._on_video_end = on_video_end
        self._gateway_id = gateway_id
        self._health_check_interval = health_check_interval
        self.ready_timeout = ready_timeout
        self._poll_interval = poll_interval
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._canary = Canary(broker, ready_timeout=ready_timeout, interval=canary_interval)
        self._canary.reset((wire.canary_channel(gateway_id),))
        self._demand: Demand[asyncio.Future[None]] = Demand(linger={VIDEO: video_linger})
        self._expiry: asyncio.TimerHandle | None = None  # the next lingering channel's end
        self._sync_lock = asyncio.Lock()
        self._kick: asyncio.Task[None] | None = None
        self._link: Subscription | None = None
        self._stopping = False
        self.last_error: str | None = None
        """Why the subscription is down, if it is."""

    @property
    def reconnects(self) -> int:
        """Times the subscription was re-established after a drop."""
        return self._demand.reconnects

    @property
    def canary_rtt(self) -> float | None:
        """Round trip of the last canary, seconds."""
        return self._canary.rtt

    # ------------------------------------------------------------------
    # Demand

    def acquire(self, stream: str, wants: Wants = Wants()) -> asyncio.Future[Any]:
        """Count one more local user of a stream (and of its preview and video channels, as it
        ``wants``); subscribe to each channel it is the first user of.

        Returns:
            A future done once Redis confirmed the subscriptions; at once if it already had.
            It stays pending while Redis is down, and is cancelled if the stream is released
            first.
        """
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        for channel, kind in _channels(stream, wants):
            future: asyncio.Future[None] = loop.create_future()
            if self._demand.acquire(channel, Route(stream, kind), future):
                future.set_result(None)
            futures.append(future)
        self._request_sync()
        return futures[0] if len(futures) == 1 else asyncio.gather(*futures)

    def release(self, stream: str, wants: Wants = Wants()) -> None:
        """Count one user less (of each channel it ``wants``); unsubscribe when it was the last
        (a video channel ``video_linger`` seconds later)."""
        loop = asyncio.get_running_loop()
        for channel, kind in _channels(stream, wants):
            for future in self._demand.release(channel, loop.time()):
                future.cancel()
            if kind == VIDEO and self._demand.route(channel) is None:
                self._video_ended(stream)
        self._arm()
        self._request_sync()

    def _arm(self) -> None:
        """Wake up when the next lingering channel is to be given up."""
        when = self._demand.next_expiry()
        if self._expiry is not None:
            if when is not None and self._expiry.when() == when:
                return
            self._expiry.cancel()
            self._expiry = None
        if when is not None and not self._stopping:
            self._expiry = asyncio.get_running_loop().call_at(when, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        for route in self._demand.expire(asyncio.get_running_loop().time()):
            if route.kind == VIDEO:
                self._video_ended(route.stream)
        self._arm()
        self._request_sync()

    def _video_ended(self, stream: str) -> None:
        if self._on_video_end is not None:
            try:
                self._on_video_end(stream)
            except Exception:
                log.exception("video end of %s failed", stream)

    def streams(self) -> list[str]:
        """Streams with at least one local user."""
        return self._demand.streams()

    @property
    def channels(self) -> int:
        """Channels confirmed on the current connection (the canary included)."""
        return self._demand.held

    # ------------------------------------------------------------------
    # Health

    @property
    def connected(self) -> bool:
        """Whether the subscription connection is up (every canary subscription confirmed)."""
        return self._demand.connected

    def not_ready_reason(self) -> str | None:
        """None when ready; else why not, in a few words."""
        if self._stopping:
            return "shutting down"
        if not self.connected:
            return f"redis subscription down: {self.last_error or 'connecting'}"
        return self._canary.stale_reason()

    @property
    def ready(self) -> bool:
        """Connected, and a canary came back within ``ready_timeout``."""
        return self.not_ready_reason() is None

    # ------------------------------------------------------------------
    # Running

    async def run(self) -> None:
        """Keep the subscription up until :meth:`stop`; never raises for Redis trouble."""
        canary = asyncio.create_task(
            self._canary.run(lambda: self.connected, lambda: self._stopping), name="framecast-canary"
        )
        failures = 0
        delays = backoff(initial=self._backoff_base, maximum=self._backoff_cap)
        try:
            while not self._stopping:
                try:
                    await self._connect()
                    if failures:
                        log.info("redis subscription restored after %d failed attempt(s)", failures)
                    failures = 0
                    delays = backoff(initial=self._backoff_base, maximum=self._backoff_cap)
                    await self._read()
                except Exception as exc:  # never die: anything unexpected is one more failed attempt
                    if not isinstance(exc, (BrokerError, Deaf)):
                        log.exception("redis subscription failed unexpectedly")
                    text = _describe(exc)
                    if self.connected or failures == 0:
                        log.warning("redis subscription lost: %s; reconnecting with backoff", text)
                    self.last_error = text
                    failures += 1
                finally:
                    await self._disconnect()
                if self._stopping:
                    break
                await asyncio.sleep(next(delays))
        finally:
            canary.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await canary

    async def stop(self) -> None:
        """Stop :meth:`run` (it returns soon after) and close the connections."""
        self._stopping = True
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._owns_broker:
            with contextlib.suppress(Exception):
                await self._broker.aclose()

    async def _connect(self) -> None:
        link = self._link = await self._broker.open_subscription(
            gateway_id=self._gateway_id, health_check_interval=self._health_check_interval
        )
        self._canary.reset(link.canaries)
        self._demand.opened(link.canaries)
        await self._sync()

    async def _disconnect(self) -> None:
        self._demand.closed(stopping=self._stopping)
        link, self._link = self._link, None
        if link is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await link.aclose()

    def _request_sync(self) -> None:
        """Apply a change of demand now, without waiting for the reader's next wake-up."""
        if self._demand.dirty and (self._kick is None or self._kick.done()):
            self._kick = asyncio.get_running_loop().create_task(self._sync_soon())

    async def _sync_soon(self) -> None:
        # Runs beside the reader's pending read: a SUBSCRIBE is only a write on the
        # same connection, and its confirmation arrives through the reader.
        try:
            await self._sync()
        except BrokerError as exc:
            log.debug("subscription change deferred: %s", _describe(exc))  # the reader reconnects

    async def _sync_if_dirty(self) -> None:
        if self._demand.dirty:
            await self._sync()

    async def _sync(self) -> None:
        """Send what brings the link in line with local demand, in the order it was decided."""
        async with self._sync_lock:
            # Demand that changes while a command is on its way is sent on the next turn.
            while (link := self._link) is not None and self._demand.dirty:
                changes = self._demand.changes()
                if changes.subscribe:
                    await link.subscribe(changes.subscribe)
                if changes.unsubscribe:
                    await link.unsubscribe(changes.unsubscribe)

    async def _read(self) -> None:
        link = self._link
        assert link is not None
        await link.pump(
            self._handle,
            before=self._sync_if_dirty,
            after=self._canary.check,
            poll_interval=self._poll_interval,
            running=lambda: not self._stopping,
        )

    def _handle(self, event: Event) -> None:
        if isinstance(event, Confirmation):
            self._confirmed(event)
            return
        channel, data = event.channel, event.data
        if channel in self._canary.channels:
            self._canary.back(channel, data)
            return
        route = self._demand.route(channel)
        if route is None:
            return  # a channel being unsubscribed
        deliver = self._deliver.get(route.kind)
        if deliver is None:
            return
        try:
            deliver(route.stream, data)
        except Exception:
            log.exception("fan-out failed for a message on %s", route.stream)

    def _confirmed(self, event: Confirmation) -> None:
        settled = self._demand.confirmed(event.channel, event.subscribed)
        for future in settled.ready:
            if not future.done():
                future.set_result(None)
        if settled.up:
            self._canary.link_up()
            self.last_error = None
        if settled.gap is not None:
            log.info("redis subscription back: %d stream(s) told about a possible gap", len(settled.gap))
            if self._on_gap is not None and settled.gap:
                self._on_gap(settled.gap)


def _channels(stream: str, wants: Wants) -> list[tuple[str, str]]:
    """The channels of ``stream`` a user needs, each with its kind."""
    wanted = [(wire.channel(stream), MESSAGES)]
    if wants.previews:
        wanted.append((wire.preview_channel(stream), PREVIEWS))
    if wants.video:
        wanted.append((wire.video_channel(stream), VIDEO))
    return wanted


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
