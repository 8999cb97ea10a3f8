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

On a Redis Cluster (``cluster=True``, sharded pub/sub) the one subscription is one connection
per primary: each stream's SSUBSCRIBE goes to the shard owning its slot, a reader task per shard
feeds the same callbacks, and there is one canary per primary (a channel whose hash tag lands
on it), so readiness proves every shard connection delivers.

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
from redis.asyncio.cluster import ClusterNode, ClusterPubSub, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from framecast import wire
from framecast.retry import backoff

__all__ = ["Client", "Heartbeats", "Subscriber", "canaries", "connect"]

log = logging.getLogger(__name__)


class _Deaf(Exception):
    """The subscription stopped delivering although the connection looks fine."""


Client = aioredis.Redis | RedisCluster
"""A client of a standalone Redis or of a Redis Cluster: the gateway's commands go through either."""

_CANARY_TRIES = 10_000  # hash tags tried per primary; a shard owning 1/100 of the slots needs ~100


def connect(url: str, *, timeout: float, health_check_interval: float = 0.0, cluster: bool = False) -> Client:
    """A Redis client that fails fast instead of retrying inside redis-py (we retry ourselves).

    With ``cluster``, a Redis Cluster client seeded with ``url``: it discovers the other nodes
    and routes each command to the shard owning its key.
    """
    if cluster:
        return RedisCluster.from_url(
            url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            socket_keepalive=True,
        )
    return _standalone(url, timeout=timeout, health_check_interval=health_check_interval)


def _standalone(url: str, *, timeout: float, health_check_interval: float) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        socket_keepalive=True,
        health_check_interval=health_check_interval,
    )


def canaries(client: RedisCluster, gateway_id: str) -> dict[str, str]:
    """One canary channel per primary of a cluster, as ``{node name: channel}``.

    A primary owning too few slots for :data:`_CANARY_TRIES` hash tags to land on it gets none
    (it is then not watched: logged once per connection).
    """
    primaries = {node.name for node in client.get_primaries()}
    found: dict[str, str] = {}
    for shard in range(_CANARY_TRIES):
        if len(found) == len(primaries):
            break
        name = wire.canary_channel(gateway_id, shard)
        node = client.get_node_from_key(name)
        if node is not None and node.name in primaries and node.name not in found:
            found[node.name] = name
    for missing in sorted(primaries - set(found)):
        log.warning("no canary channel found for cluster node %s: its subscriptions are not watched", missing)
    return found


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
        commands: Client used to publish the canary (a separate connection); with ``cluster``
            a :class:`~redis.asyncio.cluster.RedisCluster`, which the subscription shares.
        sharded: SSUBSCRIBE/SPUBLISH instead of SUBSCRIBE/PUBLISH.
        cluster: ``url`` is a Redis Cluster node: subscribe on every shard (implies ``sharded``).
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
        commands: Client | None = None,
        sharded: bool = False,
        cluster: bool = False,
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
        self._sharded = sharded or cluster
        self._cluster = cluster
        self._gateway_id = gateway_id
        self._health_check_interval = health_check_interval
        self.ready_timeout = ready_timeout
        self._canary_interval = canary_interval
        self._poll_interval = poll_interval
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        # Canary channels of the current connection: one, or one per cluster primary.
        self._canaries: list[str] = [wire.canary_channel(gateway_id)]
        self._canary_keys: set[bytes] = {self._canaries[0].encode()}
        self._commands: Client = commands or connect(url, timeout=ready_timeout, cluster=cluster)
        self._owns_commands = commands is None

        self._refs: dict[str, int] = {}  # channel -> local users
        self._routes: dict[bytes, tuple[str, bool]] = {}  # channel -> (stream, is_preview)
        self._requested: set[str] = set()  # SUBSCRIBE sent on the current connection
        self._active: set[bytes] = set()  # confirmed on the current connection
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._dirty = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self._kick: asyncio.Task[None] | None = None
        self._client: aioredis.Redis | None = None  # standalone only: a cluster shares _commands
        self._pubsub: PubSub | None = None
        self._stopping = False
        self._gap_due = False

        # Canary bookkeeping (monotonic seconds).
        self._canary_seq = 0
        self._canary_sent: dict[bytes, dict[int, float]] = {}  # per canary: accepted, not yet back
        self._canary_rx: dict[bytes, float] = {}  # per canary: last one back
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
        """Whether the subscription connection is up (every canary subscription confirmed)."""
        return self._canary_keys <= self._active

    def not_ready_reason(self) -> str | None:
        """None when ready; else why not, in a few words."""
        if self._stopping:
            return "shutting down"
        if not self.connected:
            return f"redis subscription down: {self.last_error or 'connecting'}"
        now = time.monotonic()
        for key in sorted(self._canary_keys):
            where = f" on {key.decode()}" if len(self._canary_keys) > 1 else ""
            received = self._canary_rx.get(key)
            if received is None:
                return f"waiting for the first canary round trip{where}"
            age = now - received
            if age > self.ready_timeout:
                return f"redis subscription deaf: no canary for {age:.1f} s{where}"
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
                    if not isinstance(exc, RedisError | RedisClusterException | OSError | _Deaf):
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
        if isinstance(self._commands, RedisCluster) and self._cluster:
            # The long-lived cluster client knows the current topology (redis-py refreshes it on
            # MOVED and connection errors); its pub/sub takes one connection per primary.
            await self._commands.initialize()
            self._canaries = list(canaries(self._commands, self._gateway_id).values())
            self._pubsub = self._commands.pubsub()
        else:
            self._client = _standalone(
                self._url,
                timeout=max(self.ready_timeout, 1.0),
                health_check_interval=self._health_check_interval,
            )
            self._pubsub = self._client.pubsub()
        self._canary_keys = {name.encode() for name in self._canaries}
        self._requested.clear()
        self._active.clear()
        self._canary_sent.clear()
        self._canary_rx.clear()
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
        except (RedisError, RedisClusterException, OSError) as exc:
            log.debug("subscription change deferred: %s", _describe(exc))  # the reader reconnects

    async def _sync(self) -> None:
        """Bring the connection's subscriptions in line with local demand."""
        async with self._sync_lock:
            pubsub = self._pubsub
            if pubsub is None or not self._dirty.is_set():
                return
            self._dirty.clear()
            wanted = set(self._refs)
            wanted.update(self._canaries)
            # The canaries go last: their confirmation then means every channel before them is live.
            add = sorted(wanted - self._requested, key=lambda n: n in self._canaries)
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
        if isinstance(pubsub, ClusterPubSub):
            await self._read_cluster(pubsub)
            return
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

    async def _read_cluster(self, pubsub: ClusterPubSub) -> None:
        """Read every shard at once: one reader task per primary connection, errors re-raised here."""
        assert isinstance(self._commands, RedisCluster)
        readers: dict[str, asyncio.Task[None]] = {}
        try:
            while not self._stopping:
                if self._dirty.is_set():
                    await self._sync()
                for name in list(pubsub.node_pubsub_mapping):
                    node = self._commands.get_node(node_name=name)
                    if node is not None and (name not in readers or readers[name].done()):
                        readers[name] = asyncio.create_task(
                            self._read_shard(pubsub, node), name=f"framecast-shard-{name}"
                        )
                done, _ = await asyncio.wait(list(readers.values()), timeout=self._poll_interval)
                for task in done:
                    task.result()  # a shard connection failed: reconnect everything
                self._watchdog()
        finally:
            for task in readers.values():
                task.cancel()
            await asyncio.gather(*readers.values(), return_exceptions=True)

    async def _read_shard(self, pubsub: ClusterPubSub, node: ClusterNode) -> None:
        """Hand on one shard's messages until its connection is dropped from the pub/sub."""
        while not self._stopping and node.name in pubsub.node_pubsub_mapping:
            message = await pubsub.get_sharded_message(target_node=node, timeout=self._poll_interval)
            if message is not None:
                self._handle(message)
                await asyncio.sleep(0)  # as in _read: let the WebSocket side run

    def _handle(self, message: dict[str, object]) -> None:
        kind = message["type"]
        channel = message["channel"]
        if not isinstance(channel, bytes):
            return  # a pong
        if kind in ("message", "smessage"):
            data = message["data"]
            assert isinstance(data, bytes)
            if channel in self._canary_keys:
                self._canary_back(channel, data)
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
            if channel in self._canary_keys and self.connected:
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
        if self._connected_at is None:
            return
        now = time.monotonic()
        for key, sent in self._canary_sent.items():
            if not sent:
                continue
            oldest = min(sent.values())
            last_sign = max(self._canary_rx.get(key, 0.0), self._connected_at)
            if now - oldest > 2 * self.ready_timeout and now - last_sign > 2 * self.ready_timeout:
                where = f" on {key.decode()}" if len(self._canary_keys) > 1 else ""
                raise _Deaf(f"no canary came back for {now - last_sign:.1f} s{where}")

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
        # Every shard's canary at once: a slow shard must not delay the others' proof of life.
        await asyncio.gather(*(self._send_one_canary(name, self._canary_seq) for name in self._canaries))

    async def _send_one_canary(self, name: str, seq: int) -> None:
        sent = time.monotonic()
        try:
            async with asyncio.timeout(self.ready_timeout):
                if self._sharded:
                    await self._commands.spublish(name, str(seq))
                else:
                    await self._commands.publish(name, str(seq))
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
            log.debug("canary publish on %s failed: %s", name, _describe(exc))
            return
        if self.connected:
            outstanding = self._canary_sent.setdefault(name.encode(), {})
            outstanding[seq] = sent
            # Keep the outstanding set small: only the oldest unanswered one matters.
            if len(outstanding) > 64:
                outstanding.pop(min(outstanding))

    def _canary_back(self, channel: bytes, data: bytes) -> None:
        try:
            seq = int(data)
        except ValueError:
            return
        outstanding = self._canary_sent.setdefault(channel, {})
        sent = outstanding.pop(seq, None)
        now = time.monotonic()
        if sent is not None:
            self.canary_rtt = now - sent
        for old in [s for s in outstanding if s < seq]:
            del outstanding[old]
        self._canary_rx[channel] = now


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
