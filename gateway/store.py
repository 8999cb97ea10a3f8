"""Every Redis access of the gateway, behind one interface with a standalone and a cluster backend.

The rest of the gateway speaks to a :class:`Store` (commands: canary publish, history and
status reads, the status scan) and to the :class:`Subscription` it opens (one pub/sub
connection, or one per cluster primary). Which kind of Redis it is -- a single server or a
Redis Cluster with sharded pub/sub -- is known here and nowhere else, as encode/broadcaster
does with its backends.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, ClusterPubSub, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisClusterException, RedisError

from framecast import wire

__all__ = [
    "STORE_ERRORS",
    "ClusterStore",
    "Entry",
    "StandaloneStore",
    "Store",
    "Subscription",
    "open_store",
]

log = logging.getLogger(__name__)

Entry = tuple[bytes, dict[bytes, bytes]]
"""One Redis Stream entry as redis-py returns it: ``(id, {field: value})``."""

Handler = Callable[[dict[str, object]], None]

STORE_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)
"""What a store call raises when Redis is unreachable or misbehaves (an asyncio timeout included: OSError)."""

_CANARY_TRIES = 10_000  # hash tags tried per primary; a shard owning 1/100 of the slots needs ~100


def _no_retry() -> Retry:
    # The subscription retries itself (with backoff, resubscribing everything).
    return Retry(NoBackoff(), 0)


def _retry_once() -> Retry:
    # After a Redis restart every pooled command connection is dead, and the pool hands them
    # out one by one: redis-py drops the failed connection and retries on a fresh one. Once,
    # at once, and only for a broken connection (a timeout is a slow server, not a dead socket).
    return Retry(NoBackoff(), 1, supported_errors=(ConnectionError,))


class Subscription(abc.ABC):
    """One live pub/sub link: subscribe and unsubscribe channels, pump their messages.

    Attributes:
        canaries: The canary channels watching this link (one, or one per cluster primary).
    """

    canaries: list[str]

    @abc.abstractmethod
    async def subscribe(self, names: list[str]) -> None:
        """Send SUBSCRIBE (or SSUBSCRIBE) for ``names``; confirmations arrive through :meth:`pump`."""

    @abc.abstractmethod
    async def unsubscribe(self, names: list[str]) -> None:
        """Send UNSUBSCRIBE (or SUNSUBSCRIBE) for ``names``."""

    @abc.abstractmethod
    async def pump(
        self,
        *,
        handle: Handler,
        before: Callable[[], Awaitable[None]],
        after: Callable[[], None],
        poll_interval: float,
        running: Callable[[], bool],
    ) -> None:
        """Hand every message to ``handle`` while ``running()``; raises when the link fails.

        ``before`` runs before each wait (to apply subscription changes), ``after`` after it
        (the watchdog, which raises to tear the link down).
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the link's connections."""


class Store(abc.ABC):
    """The gateway's Redis: commands on a long-lived client, subscriptions opened per link.

    Attributes:
        sharded: Pub/sub is SSUBSCRIBE/SPUBLISH instead of SUBSCRIBE/PUBLISH.
    """

    sharded: bool

    @abc.abstractmethod
    async def publish(self, channel: str, data: str) -> None:
        """PUBLISH (or SPUBLISH) ``data`` on ``channel``."""

    async def latest(self, key: str) -> list[Entry]:
        """The newest entry of a Redis Stream (XREVRANGE + - COUNT 1), or none."""
        entries: Any = await self.commands.xrevrange(key, "+", "-", count=1)
        return list(entries)

    async def entries_after(self, key: str, after: str, *, count: int) -> list[Entry]:
        """Up to ``count`` entries with ids above ``after`` (XRANGE (after + COUNT count)."""
        entries: Any = await self.commands.xrange(key, min=f"({after}", max="+", count=count)
        return list(entries)

    async def get(self, key: str) -> bytes | None:
        """GET ``key``."""
        value: Any = await self.commands.get(key)
        return value if isinstance(value, bytes) else None

    @abc.abstractmethod
    async def scan_values(self, pattern: str, *, keep: Callable[[str], bool], limit: int) -> list[bytes]:
        """Values of up to ``limit`` keys matching ``pattern`` that ``keep`` accepts (every primary)."""

    @abc.abstractmethod
    async def open_subscription(self, *, gateway_id: str, health_check_interval: float) -> Subscription:
        """Open a fresh pub/sub link (the canary channels for it are chosen here)."""

    @property
    @abc.abstractmethod
    def commands(self) -> aioredis.Redis | RedisCluster:
        """The command client (for the few reads every backend issues alike)."""

    async def aclose(self) -> None:
        """Close the command connections."""
        await self.commands.aclose()


def open_store(url: str, *, timeout: float, cluster: bool = False, sharded: bool = False) -> Store:
    """A :class:`Store` for ``url``: a Redis Cluster seeded with it when ``cluster``.

    Args:
        url: Redis URL.
        timeout: Connect and read timeout of every command, seconds.
        cluster: ``url`` is a Redis Cluster node (implies ``sharded``).
        sharded: Sharded pub/sub on a standalone server.
    """
    if cluster:
        return ClusterStore(url, timeout=timeout)
    return StandaloneStore(url, timeout=timeout, sharded=sharded)


# --------------------------------------------------------------------------
# Standalone


def _standalone_client(
    url: str, *, timeout: float, health_check_interval: float, retry: Retry
) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        retry=retry,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        socket_keepalive=True,
        health_check_interval=health_check_interval,
    )


class StandaloneStore(Store):
    """One Redis server (or a proxy in front of one)."""

    def __init__(self, url: str, *, timeout: float, sharded: bool = False) -> None:
        self._url = url
        self._timeout = timeout
        self.sharded = sharded
        self._client = _standalone_client(
            url, timeout=timeout, health_check_interval=0.0, retry=_retry_once()
        )

    @property
    def commands(self) -> aioredis.Redis:
        return self._client

    async def publish(self, channel: str, data: str) -> None:
        if self.sharded:
            await self._client.spublish(channel, data)
        else:
            await self._client.publish(channel, data)

    async def scan_values(self, pattern: str, *, keep: Callable[[str], bool], limit: int) -> list[bytes]:
        keys: list[bytes] = []
        cursor = 0
        while len(keys) < limit:
            result: Any = await self._client.scan(cursor=cursor, match=pattern, count=500)
            cursor, batch = result
            keys.extend(batch)
            if cursor == 0:
                break
        keys = [k for k in keys if keep(k.decode(errors="replace"))]
        values: list[Any] = await self._client.mget(keys) if keys else []
        return [v for v in values if isinstance(v, bytes)]

    async def open_subscription(self, *, gateway_id: str, health_check_interval: float) -> Subscription:
        # A client of its own per link: closing it after a failure drops every dead socket.
        client = _standalone_client(
            self._url,
            timeout=max(self._timeout, 1.0),
            health_check_interval=health_check_interval,
            retry=_no_retry(),
        )
        return _StandaloneSubscription(client, [wire.canary_channel(gateway_id)], sharded=self.sharded)


class _StandaloneSubscription(Subscription):
    def __init__(self, client: aioredis.Redis, canaries: list[str], *, sharded: bool) -> None:
        self._client = client
        self._pubsub: PubSub = client.pubsub()
        self._sharded = sharded
        self.canaries = canaries

    async def subscribe(self, names: list[str]) -> None:
        if self._sharded:
            # One channel per command: a cluster-enabled server refuses an SSUBSCRIBE
            # whose channels hash to different slots (CROSSSLOT), even with one shard.
            for name in names:
                await self._pubsub.ssubscribe(name)
        else:
            await self._pubsub.subscribe(*names)

    async def unsubscribe(self, names: list[str]) -> None:
        if self._sharded:
            for name in names:
                await self._pubsub.sunsubscribe(name)
        else:
            await self._pubsub.unsubscribe(*names)

    async def pump(
        self,
        *,
        handle: Handler,
        before: Callable[[], Awaitable[None]],
        after: Callable[[], None],
        poll_interval: float,
        running: Callable[[], bool],
    ) -> None:
        while running():
            await before()
            message = await self._pubsub.get_message(timeout=poll_interval)
            if message is not None:
                handle(message)
                # A backlog comes back from the parser without a single await that yields:
                # give the WebSocket side its turn after every message.
                await asyncio.sleep(0)
            after()

    async def aclose(self) -> None:
        await self._pubsub.aclose()
        await self._client.aclose()


# --------------------------------------------------------------------------
# Cluster


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


class ClusterStore(Store):
    """A Redis Cluster: commands routed by slot, sharded pub/sub on every primary."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.sharded = True
        self._client = RedisCluster.from_url(
            url,
            retry=_retry_once(),
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            socket_keepalive=True,
        )

    @property
    def commands(self) -> RedisCluster:
        return self._client

    async def publish(self, channel: str, data: str) -> None:
        await self._client.spublish(channel, data)

    async def scan_values(self, pattern: str, *, keep: Callable[[str], bool], limit: int) -> list[bytes]:
        # scan_iter walks every primary; the keys live in many slots, so MGET per slot.
        keys: list[bytes] = []
        async for key in self._client.scan_iter(match=pattern, count=500):
            keys.append(key)
            if len(keys) >= limit:
                break
        keys = [k for k in keys if keep(k.decode(errors="replace"))]
        values: list[Any] = await self._client.mget_nonatomic(keys) if keys else []
        return [v for v in values if isinstance(v, bytes)]

    async def open_subscription(self, *, gateway_id: str, health_check_interval: float) -> Subscription:
        # The long-lived cluster client knows the current topology (redis-py refreshes it on
        # MOVED and connection errors); its pub/sub takes one connection per primary.
        await self._client.initialize()
        found = list(canaries(self._client, gateway_id).values())
        return _ClusterSubscription(self._client, found)


class _ClusterSubscription(Subscription):
    def __init__(self, client: RedisCluster, canaries: list[str]) -> None:
        self._client = client
        self._pubsub: ClusterPubSub = client.pubsub()
        self.canaries = canaries

    async def subscribe(self, names: list[str]) -> None:
        for name in names:  # each to the shard owning its slot
            await self._pubsub.ssubscribe(name)

    async def unsubscribe(self, names: list[str]) -> None:
        for name in names:
            await self._pubsub.sunsubscribe(name)

    async def pump(
        self,
        *,
        handle: Handler,
        before: Callable[[], Awaitable[None]],
        after: Callable[[], None],
        poll_interval: float,
        running: Callable[[], bool],
    ) -> None:
        """Read every shard at once: one reader task per primary connection, errors re-raised here."""
        pubsub = self._pubsub
        readers: dict[str, asyncio.Task[None]] = {}
        try:
            while running():
                await before()
                for name in list(pubsub.node_pubsub_mapping):
                    node = self._client.get_node(node_name=name)
                    if node is not None and (name not in readers or readers[name].done()):
                        readers[name] = asyncio.create_task(
                            self._read_shard(node, handle, poll_interval, running),
                            name=f"framecast-shard-{name}",
                        )
                done, _ = await asyncio.wait(list(readers.values()), timeout=poll_interval)
                for task in done:
                    task.result()  # a shard connection failed: reconnect everything
                after()
        finally:
            for task in readers.values():
                task.cancel()
            await asyncio.gather(*readers.values(), return_exceptions=True)

    async def _read_shard(
        self, node: ClusterNode, handle: Handler, poll_interval: float, running: Callable[[], bool]
    ) -> None:
        """Hand on one shard's messages until its connection is dropped from the pub/sub."""
        pubsub = self._pubsub
        while running() and node.name in pubsub.node_pubsub_mapping:
            message = await pubsub.get_sharded_message(target_node=node, timeout=poll_interval)
            if message is not None:
                handle(message)
                await asyncio.sleep(0)  # as in the standalone pump: let the WebSocket side run

    async def aclose(self) -> None:
        await self._pubsub.aclose()
