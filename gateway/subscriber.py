"""The gateway's one Redis subscription: subscribe on demand, survive drops, notice deafness.

One :class:`Subscriber` owns one pub/sub connection. It subscribes a stream's
channel only while the gateway has local clients for it (reference counted by
:meth:`Subscriber.acquire` / :meth:`Subscriber.release`), hands every message
to a callback, and yields to the event loop after each one so a backlog
cannot starve the WebSocket side.

Failure handling, beyond what redis-py does by itself:

* A dropped connection is reconnected with capped exponential backoff and
  jitter; every channel is subscribed again, and once that is confirmed the
  ``on_gap`` callback names every stream whose messages may have been missed.
* A **canary** is published every second on a channel of this gateway's own,
  received on the same connection. The gateway is ready only while a canary
  came back within ``ready_timeout``; if canaries that Redis accepted stay
  unanswered for twice that, the subscription is deaf (a failover, an
  output-buffer kill, a stalled proxy) and is torn down and rebuilt.

:class:`Heartbeats` tells a quiet stream (heartbeats, no detections) from a
dead one (no heartbeat for ``offline_after`` seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from framecast import wire
from framecast.retry import backoff

__all__ = ["Heartbeats", "Subscriber"]

log = logging.getLogger(__name__)


class _Deaf(Exception):
    """The subscription stopped delivering although the connection looks fine."""


def connect(url: str, *, timeout: float, health_check_interval: float = 0.0) -> aioredis.Redis:
    """A Redis client that fails fast instead of retrying inside redis-py (we retry ourselves)."""
    return aioredis.Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        socket_keepalive=True,
        health_check_interval=health_check_interval,
    )


class Subscriber:
    """One pub/sub connection shared by every stream this gateway serves.

    Args:
        url: Redis URL.
        gateway_id: Names the canary channel.
        on_message: Called synchronously with ``(stream, data)`` for each result
            or status message.
        on_preview: Called with ``(stream, data)`` for each binary preview.
        on_gap: Called with the streams subscribed when the connection came back
            after a drop (their clients may have missed messages).
        commands: Client used to publish the canary (a separate connection).
        sharded: SSUBSCRIBE/SPUBLISH instead of SUBSCRIBE/PUBLISH.
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
        url: str,
        gateway_id: str,
        on_message: Callable[[str, bytes], None],
        on_preview: Callable[[str, bytes], None] | None = None,
        on_gap: Callable[[list[str]], None] | None = None,
        commands: aioredis.Redis | None = None,
        sharded: bool = False,
        health_check_interval: float = 5.0,
        ready_timeout: float = 3.0,
        canary_interval: float = 1.0,
        poll_interval: float = 0.1,
        backoff_base: float = 0.2,
        backoff_cap: float = 5.0,
    ) -> None:
        self._url = url
        self._on_message = on_message
        self._on_preview = on_preview
        self._on_gap = on_gap
        self._sharded = sharded
        self._health_check_interval = health_check_interval
        self.ready_timeout = ready_timeout
        self._canary_interval = canary_interval
        self._poll_interval = poll_interval
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._canary = wire.canary_channel(gateway_id)
        self._canary_key = self._canary.encode()
        self._commands = commands or connect(url, timeout=ready_timeout)
        self._owns_commands = commands is None

        self._refs: dict[str, int] = {}  # channel -> local users
        self._routes: dict[bytes, tuple[str, bool]] = {}  # channel -> (stream, is_preview)
        self._requested: set[str] = set()  # SUBSCRIBE sent on the current connection
        self._active: set[bytes] = set()  # confirmed on the current connection
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._dirty = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self._kick: asyncio.Task[None] | None = None
        self._client: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._stopping = False
        self._gap_due = False

        # Canary bookkeeping (monotonic seconds).
        self._canary_seq = 0
        self._canary_sent: dict[int, float] = {}  # accepted by Redis, not yet back
        self._canary_rx: float | None = None
        self._connected_at: float | None = None
        self.canary_rtt: float | None = None
        """Round trip of the last canary, seconds."""
        self.reconnects = 0
        """Times the subscription was re-established after a drop."""
        self.last_error: str | None = None
        """Why the subscription is down, if it is."""

    # ------------------------------------------------------------------
    # Demand

    def acquire(self, stream: str, *, previews: bool = False) -> asyncio.Future[Any]:
        """Count one more local user of a stream; subscribe if it is the first.

        Returns:
            A future done once Redis confirmed the subscription (and the preview
            one, if asked); at once if it already had. It stays pending while
            Redis is down.
        """
        channels = [wire.channel(stream)] + ([wire.preview_channel(stream)] if previews else [])
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        for name in channels:
            self._refs[name] = self._refs.get(name, 0) + 1
            self._routes[name.encode()] = (stream, name != channels[0])
            future: asyncio.Future[None] = loop.create_future()
            if name.encode() in self._active:
                future.set_result(None)
            else:
                self._waiters.setdefault(name, []).append(future)
                self._request_sync()
            futures.append(future)
        return futures[0] if len(futures) == 1 else asyncio.gather(*futures)

    def release(self, stream: str, *, previews: bool = False) -> None:
        """Count one user less; unsubscribe when it was the last."""
        channels = [wire.channel(stream)] + ([wire.preview_channel(stream)] if previews else [])
        for name in channels:
            count = self._refs.get(name, 0) - 1
            if count > 0:
                self._refs[name] = count
            else:
                self._refs.pop(name, None)
                self._request_sync()

    def streams(self) -> list[str]:
        """Streams with at least one local user."""
        return sorted({self._routes[n.encode()][0] for n in self._refs if not self._routes[n.encode()][1]})

    @property
    def channels(self) -> int:
        """Channels confirmed on the current connection (the canary included)."""
        return len(self._active)

    # ------------------------------------------------------------------
    # Health

    @property
    def connected(self) -> bool:
        """Whether the subscription connection is up (canary subscription confirmed)."""
        return self._canary_key in self._active

    def not_ready_reason(self) -> str | None:
        """None when ready; else why not, in a few words."""
        if self._stopping:
            return "shutting down"
        if not self.connected:
            return f"redis subscription down: {self.last_error or 'connecting'}"
        if self._canary_rx is None:
            return "waiting for the first canary round trip"
        age = time.monotonic() - self._canary_rx
        if age > self.ready_timeout:
            return f"redis subscription deaf: no canary for {age:.1f} s"
        return None

    @property
    def ready(self) -> bool:
        """Connected, and a canary came back within ``ready_timeout``."""
        return self.not_ready_reason() is None

    # ------------------------------------------------------------------
    # Running

    async def run(self) -> None:
        """Keep the subscription up until :meth:`stop`; never raises for Redis trouble."""
        canary = asyncio.create_task(self._canary_loop(), name="framecast-canary")
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
                    if not isinstance(exc, RedisError | OSError | _Deaf):
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
        self._dirty.set()
        if self._owns_commands:
            with contextlib.suppress(Exception):
                await self._commands.aclose()

    async def _connect(self) -> None:
        self._client = connect(
            self._url, timeout=max(self.ready_timeout, 1.0), health_check_interval=self._health_check_interval
        )
        self._pubsub = self._client.pubsub()
        self._requested.clear()
        self._active.clear()
        self._canary_sent.clear()
        self._connected_at = None
        self._dirty.set()
        await self._sync()

    async def _disconnect(self) -> None:
        had = self.connected
        self._active.clear()
        self._requested.clear()
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        if had and not self._stopping:
            self._gap_due = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                if pubsub is not None:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                if client is not None:
                    await client.aclose()

    def _request_sync(self) -> None:
        """Apply a change of demand now, without waiting for the reader's next wake-up."""
        self._dirty.set()
        if self._pubsub is not None and (self._kick is None or self._kick.done()):
            self._kick = asyncio.get_running_loop().create_task(self._sync_soon())

    async def _sync_soon(self) -> None:
        # Runs beside the reader's pending read: a SUBSCRIBE is only a write on the
        # same connection, and its confirmation arrives through the reader.
        try:
            await self._sync()
        except (RedisError, OSError) as exc:
            log.debug("subscription change deferred: %s", _describe(exc))  # the reader reconnects

    async def _sync(self) -> None:
        """Bring the connection's subscriptions in line with local demand."""
        async with self._sync_lock:
            pubsub = self._pubsub
            if pubsub is None or not self._dirty.is_set():
                return
            self._dirty.clear()
            wanted = set(self._refs)
            wanted.add(self._canary)
            # The canary goes last: its confirmation then means every channel before it is live.
            add = sorted(wanted - self._requested, key=lambda n: n == self._canary)
            remove = sorted(self._requested - wanted)
            if add:
                if self._sharded:
                    # One channel per command: a cluster-enabled server refuses an SSUBSCRIBE
                    # whose channels hash to different slots (CROSSSLOT), even with one shard.
                    for name in add:
                        await pubsub.ssubscribe(name)
                else:
                    await pubsub.subscribe(*add)
                if pubsub is self._pubsub:
                    self._requested.update(add)
            if remove:
                if self._sharded:
                    for name in remove:
                        await pubsub.sunsubscribe(name)
                else:
                    await pubsub.unsubscribe(*remove)
                if pubsub is self._pubsub:
                    self._requested.difference_update(remove)
                for name in remove:
                    self._active.discard(name.encode())
                    if name not in self._refs:
                        self._routes.pop(name.encode(), None)
                        for future in self._waiters.pop(name, []):
                            future.cancel()

    async def _read(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        while not self._stopping:
            if self._dirty.is_set():
                await self._sync()
            message = await pubsub.get_message(timeout=self._poll_interval)
            if message is not None:
                self._handle(message)
                # A backlog comes back from the parser without a single await that yields:
                # give the WebSocket side its turn after every message.
                await asyncio.sleep(0)
            self._watchdog()

    def _handle(self, message: dict[str, object]) -> None:
        kind = message["type"]
        channel = message["channel"]
        if not isinstance(channel, bytes):
            return  # a pong
        if kind in ("message", "smessage"):
            data = message["data"]
            assert isinstance(data, bytes)
            if channel == self._canary_key:
                self._canary_back(data)
                return
            route = self._routes.get(channel)
            if route is None:
                return  # a channel being unsubscribed
            stream, preview = route
            try:
                if preview:
                    if self._on_preview is not None:
                        self._on_preview(stream, data)
                else:
                    self._on_message(stream, data)
            except Exception:
                log.exception("fan-out failed for a message on %s", stream)
        elif kind in ("subscribe", "ssubscribe"):
            self._active.add(channel)
            name = channel.decode()
            for future in self._waiters.pop(name, []):
                if not future.done():
                    future.set_result(None)
            if channel == self._canary_key:
                self._connected_at = time.monotonic()
                self.last_error = None
                if self._gap_due:
                    self._gap_due = False
                    self.reconnects += 1
                    streams = self.streams()
                    log.info("redis subscription back: %d stream(s) told about a possible gap", len(streams))
                    if self._on_gap is not None and streams:
                        self._on_gap(streams)

    def _watchdog(self) -> None:
        if not self._canary_sent or self._connected_at is None:
            return
        now = time.monotonic()
        oldest = min(self._canary_sent.values())
        last_sign = max(self._canary_rx or 0.0, self._connected_at)
        if now - oldest > 2 * self.ready_timeout and now - last_sign > 2 * self.ready_timeout:
            raise _Deaf(f"no canary came back for {now - last_sign:.1f} s")

    # ------------------------------------------------------------------
    # Canary

    async def _canary_loop(self) -> None:
        while not self._stopping:
            if not self.connected:
                # Poll briefly so the first canary goes out as soon as the subscription is up.
                await asyncio.sleep(min(0.05, self._canary_interval))
                continue
            await self._send_canary()
            await asyncio.sleep(self._canary_interval)

    async def _send_canary(self) -> None:
        self._canary_seq += 1
        seq = self._canary_seq
        sent = time.monotonic()
        try:
            async with asyncio.timeout(self.ready_timeout):
                if self._sharded:
                    await self._commands.spublish(self._canary, str(seq))
                else:
                    await self._commands.publish(self._canary, str(seq))
        except (RedisError, OSError, TimeoutError) as exc:
            log.debug("canary publish failed: %s", _describe(exc))
            return
        if self.connected:
            self._canary_sent[seq] = sent
            # Keep the outstanding set small: only the oldest unanswered one matters.
            if len(self._canary_sent) > 64:
                self._canary_sent.pop(min(self._canary_sent))

    def _canary_back(self, data: bytes) -> None:
        try:
            seq = int(data)
        except ValueError:
            return
        sent = self._canary_sent.pop(seq, None)
        now = time.monotonic()
        if sent is not None:
            self.canary_rtt = now - sent
        for old in [s for s in self._canary_sent if s < seq]:
            del self._canary_sent[old]
        self._canary_rx = now


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


# --------------------------------------------------------------------------
# Producer heartbeats


@dataclass
class _Beat:
    last_seen: float
    epoch: str = ""
    seq: int = 0
    offline: bool = False  # the gateway has announced it offline


class Heartbeats:
    """When each watched stream was last heard from, to announce dead producers once.

    Args:
        offline_after: Seconds of silence after which a stream is offline.
        clock: Monotonic clock.
    """

    def __init__(self, *, offline_after: float = 3.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.offline_after = offline_after
        self._clock = clock
        self._beats: dict[str, _Beat] = {}

    def watch(self, stream: str) -> None:
        """Start tracking a stream (its silence counts from now)."""
        if stream not in self._beats:
            self._beats[stream] = _Beat(self._clock())

    def unwatch(self, stream: str) -> None:
        """Stop tracking a stream."""
        self._beats.pop(stream, None)

    def seen(self, stream: str, message: wire.Peek) -> None:
        """Record a result or status from the stream's producer."""
        beat = self._beats.get(stream)
        if beat is None:
            return
        beat.last_seen = self._clock()
        beat.epoch = message.epoch
        beat.seq = message.seq
        beat.offline = False

    def mark_offline(self, stream: str) -> None:
        """Record that clients were told the stream is offline (e.g. at subscribe time)."""
        beat = self._beats.get(stream)
        if beat is not None:
            beat.offline = True

    def is_offline(self, stream: str) -> bool:
        """Whether the stream was announced offline and has not been heard from since."""
        beat = self._beats.get(stream)
        return beat is not None and beat.offline

    def last(self, stream: str) -> tuple[str, int]:
        """Last known ``(epoch, seq)`` of a stream (``("", 0)`` if never heard)."""
        beat = self._beats.get(stream)
        return (beat.epoch, beat.seq) if beat is not None else ("", 0)

    def due(self) -> list[tuple[str, str, int]]:
        """Streams that just went silent, as ``(stream, epoch, seq)``; each is returned once."""
        now = self._clock()
        out: list[tuple[str, str, int]] = []
        for stream, beat in self._beats.items():
            if not beat.offline and now - beat.last_seen > self.offline_after:
                beat.offline = True
                out.append((stream, beat.epoch, beat.seq))
        return out
