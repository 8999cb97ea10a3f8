"""The standalone backend: one Redis server (or a proxy in front of one), classic or sharded pub/sub."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from framecast import wire
from framecast.broker._redis import (
    RedisBroker,
    count_of,
    event_of,
    no_retry,
    retry_once,
    standalone_client,
    translated,
)
from framecast.broker.base import Event, Subscription

__all__ = ["StandaloneBroker"]


class StandaloneBroker(RedisBroker):
    """One Redis server.

    Args:
        url: Redis URL.
        timeout: Connect and read timeout of every command, seconds.
        sharded: Sharded pub/sub (SPUBLISH/SSUBSCRIBE), as a cluster's gateways and producers use it.
    """

    _counts_inline = True

    def __init__(self, url: str, *, timeout: float, sharded: bool = False) -> None:
        self._url = url
        self._timeout = timeout
        self.sharded = sharded
        self._client: Redis = standalone_client(
            url, timeout=timeout, health_check_interval=0.0, retry=retry_once()
        )

    def _publish(self, target: Any, channel: str, data: bytes | str) -> Any:
        if self.sharded:
            return target.spublish(channel, data)
        return target.publish(channel, data)

    async def _count(self, channel: str) -> int:
        return count_of(await self._numsub(self._client, channel))

    async def scan_values(self, pattern: str, *, keep: Callable[[str], bool], limit: int) -> list[bytes]:
        keys: list[bytes] = []
        cursor = 0
        with translated():
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
        client = standalone_client(
            self._url,
            timeout=max(self._timeout, 1.0),
            health_check_interval=health_check_interval,
            retry=no_retry(),
        )
        return _StandaloneSubscription(client, (wire.canary_channel(gateway_id),), sharded=self.sharded)


class _StandaloneSubscription(Subscription):
    def __init__(self, client: Redis, canaries: tuple[str, ...], *, sharded: bool) -> None:
        self._client = client
        self._pubsub: PubSub = client.pubsub()
        self._sharded = sharded
        self.canaries = canaries

    async def subscribe(self, channels: Sequence[str]) -> None:
        with translated():
            if self._sharded:
                # One channel per command: a cluster-enabled server refuses an SSUBSCRIBE
                # whose channels hash to different slots (CROSSSLOT), even with one shard.
                for channel in channels:
                    await self._pubsub.ssubscribe(channel)
            else:
                await self._pubsub.subscribe(*channels)

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        with translated():
            if self._sharded:
                for channel in channels:
                    await self._pubsub.sunsubscribe(channel)
            else:
                await self._pubsub.unsubscribe(*channels)

    async def pump(
        self,
        handle: Callable[[Event], None],
        *,
        before: Callable[[], Awaitable[None]],
        after: Callable[[], None],
        poll_interval: float,
        running: Callable[[], bool],
    ) -> None:
        pubsub = self._pubsub
        with translated():
            while running():
                await before()
                message = await pubsub.get_message(timeout=poll_interval)
                if message is not None:
                    event = event_of(message)
                    if event is not None:
                        handle(event)
                    # A backlog comes back from the parser without a single await that yields:
                    # give the WebSocket side its turn after every message.
                    await asyncio.sleep(0)
                after()

    async def aclose(self) -> None:
        with translated():
            await self._pubsub.aclose()
            await self._client.aclose()
