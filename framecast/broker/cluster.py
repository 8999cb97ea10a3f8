"""The cluster backend: a Redis Cluster, commands routed by slot, sharded pub/sub on every primary."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio.cluster import ClusterNode, ClusterPubSub, RedisCluster

from framecast import wire
from framecast.broker._redis import RedisBroker, count_of, event_of, retry_once, translated
from framecast.broker.base import Event, Subscription

__all__ = ["ClusterBroker", "canaries"]

log = logging.getLogger(__name__)

_CANARY_TRIES = 10_000  # hash tags tried per primary; a shard owning 1/100 of the slots needs ~100


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


class ClusterBroker(RedisBroker):
    """A Redis Cluster seeded with one node's URL; pub/sub is always sharded.

    Args:
        url: Redis URL of any node.
        timeout: Connect and read timeout of every command, seconds.
    """

    def __init__(self, url: str, *, timeout: float) -> None:
        self.sharded = True
        self._client: RedisCluster = RedisCluster.from_url(
            url,
            retry=retry_once(),
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            socket_keepalive=True,
        )

    def _publish(self, target: Any, channel: str, data: bytes | str) -> Any:
        return target.spublish(channel, data)

    async def _count(self, channel: str) -> int:
        # Asked of the primary owning the channel's slot: redis-py would otherwise ask every node
        # and not add their answers up. The slot map is needed before the first command learns it.
        await self._client.initialize()
        node = self._client.get_node_from_key(channel)
        return count_of(await self._client.pubsub_shardnumsub(channel, target_nodes=node))

    async def scan_values(self, pattern: str, *, keep: Callable[[str], bool], limit: int) -> list[bytes]:
        # scan_iter walks every primary; the keys live in many slots, so MGET per slot.
        keys: list[bytes] = []
        with translated():
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
        with translated():
            await self._client.initialize()
            found = tuple(canaries(self._client, gateway_id).values())
        return _ClusterSubscription(self._client, found)


class _ClusterSubscription(Subscription):
    def __init__(self, client: RedisCluster, canaries: tuple[str, ...]) -> None:
        self._client = client
        self._pubsub: ClusterPubSub = client.pubsub()
        self.canaries = canaries

    async def subscribe(self, channels: Sequence[str]) -> None:
        with translated():
            for channel in channels:  # each to the shard owning its slot
                await self._pubsub.ssubscribe(channel)

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        with translated():
            for channel in channels:
                await self._pubsub.sunsubscribe(channel)

    async def pump(
        self,
        handle: Callable[[Event], None],
        *,
        before: Callable[[], Awaitable[None]],
        after: Callable[[], None],
        poll_interval: float,
        running: Callable[[], bool],
    ) -> None:
        """Read every shard at once: one reader task per primary connection, errors re-raised here."""
        pubsub = self._pubsub
        readers: dict[str, asyncio.Task[None]] = {}
        try:
            with translated():
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
        self,
        node: ClusterNode,
        handle: Callable[[Event], None],
        poll_interval: float,
        running: Callable[[], bool],
    ) -> None:
        """Hand on one shard's events until its connection is dropped from the pub/sub."""
        pubsub = self._pubsub
        while running() and node.name in pubsub.node_pubsub_mapping:
            message = await pubsub.get_sharded_message(target_node=node, timeout=poll_interval)
            if message is not None:
                event = event_of(message)
                if event is not None:
                    handle(event)
                await asyncio.sleep(0)  # as in the standalone pump: let the WebSocket side run

    async def aclose(self) -> None:
        with translated():
            await self._pubsub.aclose()
