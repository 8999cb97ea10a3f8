"""What both backends share: redis-py clients, the retry recipe, errors and the write pipeline.

The one place that says how a Redis connection is retried (:func:`retry_once`) and which of
redis-py's failures mean what (:func:`translated`).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)

from framecast import wire
from framecast.broker.base import (
    Append,
    Broker,
    Confirmation,
    Count,
    Delete,
    Delivery,
    Entry,
    Event,
    Op,
    Publish,
    Put,
)
from framecast.exceptions import BrokerError

__all__ = ["RedisBroker", "count_of", "event_of", "no_retry", "retry_once", "standalone_client", "translated"]

_FIELD = wire.HISTORY_FIELD.encode()  # redis-py returns field names as bytes

# Error replies that say "not here, not now" rather than "never": handled like a lost link.
_TRANSIENT_REPLIES = (ReadOnlyError, ClusterDownError, TryAgainError, MasterDownError, OutOfMemoryError)
_STALE_ID = "equal or smaller than the target stream top item"

_DELIVERED = frozenset({"message", "smessage"})
_SUBSCRIBED = frozenset({"subscribe", "ssubscribe"})
_UNSUBSCRIBED = frozenset({"unsubscribe", "sunsubscribe"})


def retry_once() -> Retry:
    """One immediate retry on a fresh connection, for a connection found dead.

    After a Redis restart every pooled connection is dead, and the pool hands them out one by
    one: each would otherwise fail a call (and count as an outage) the first time it is used.
    Timeouts are not retried: a slow or down Redis would cost twice the timeout per call.
    """
    return Retry(NoBackoff(), 1, supported_errors=(ConnectionError,))


def no_retry() -> Retry:
    """A subscription's connection is not retried by redis-py: it is rebuilt, and resubscribed, whole."""
    return Retry(NoBackoff(), 0)


def standalone_client(url: str, *, timeout: float, health_check_interval: float, retry: Retry) -> Redis:
    """A client of one Redis server; every connect and read bounded by ``timeout`` seconds."""
    return Redis.from_url(
        url,
        retry=retry,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        socket_keepalive=True,
        health_check_interval=health_check_interval,
    )


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Turn redis-py's failures (and the socket's) into :class:`BrokerError`."""
    try:
        yield
    except (RedisError, RedisClusterException, OSError) as exc:
        text = str(exc).strip() or type(exc).__name__
        if isinstance(exc, ResponseError) and not isinstance(exc, _TRANSIENT_REPLIES):
            raise BrokerError(text, reply=text, stale_id=_STALE_ID in text) from exc
        raise BrokerError(text) from exc


def event_of(message: dict[str, Any]) -> Event | None:
    """A redis-py pub/sub message as a typed event (None: a pong, a pattern message)."""
    channel = message["channel"]
    if not isinstance(channel, bytes):
        return None
    kind = message["type"]
    if kind in _DELIVERED:
        return Delivery(channel.decode(), message["data"])
    if kind in _SUBSCRIBED:
        return Confirmation(channel.decode(), True)
    if kind in _UNSUBSCRIBED:
        return Confirmation(channel.decode(), False)
    return None


def _entry(raw: Any) -> Entry:
    entry_id, fields = raw
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    data = fields.get(_FIELD)
    return Entry(text, data if isinstance(data, bytes) else None)


def count_of(reply: Any) -> int:
    """The count in a PUBSUB (SHARD)NUMSUB reply for one channel (``[(channel, n)]``)."""
    try:
        return int(reply[0][1])
    except (IndexError, TypeError, ValueError):
        return 0


class RedisBroker(Broker):
    """The commands every backend issues alike, on its long-lived command client."""

    _client: Redis | RedisCluster

    @abc.abstractmethod
    def _publish(self, target: Any, channel: str, data: bytes | str) -> Any:
        """Publish on a client (awaitable) or queue it on a pipeline."""

    @abc.abstractmethod
    async def _count(self, channel: str) -> int:
        """Subscribers of ``channel``, asked of the node that knows."""

    _counts_inline = False
    """Whether a :class:`Count` can ride in a write's pipeline (one server: yes; a cluster would
    ask every node and not add their answers up)."""

    def _queue(self, pipe: Any, op: Op) -> None:
        match op:
            case Append():
                pipe.xadd(op.key, {_FIELD: op.data}, id=op.id, maxlen=op.maxlen, approximate=True)
            case Publish():
                self._publish(pipe, op.channel, op.data)
            case Put():
                pipe.set(op.key, op.data, px=op.ttl_ms)
            case Delete():
                pipe.delete(op.key)
            case Count():
                self._numsub(pipe, op.channel)
            case _:
                raise TypeError(f"not a broker operation: {op!r}")

    def _numsub(self, target: Any, channel: str) -> Any:
        """PUBSUB NUMSUB (SHARDNUMSUB when sharded) on a client (awaitable) or a pipeline (queued)."""
        if self.sharded:
            return target.pubsub_shardnumsub(channel)
        return target.pubsub_numsub(channel)

    async def write(self, ops: Sequence[Op], *, atomic: bool = False) -> list[int]:
        counted = [op.channel for op in ops if isinstance(op, Count)]
        inline = self._counts_inline and not atomic
        with translated():
            async with self._client.pipeline(transaction=atomic) as pipe:
                for op in ops:
                    if inline or not isinstance(op, Count):
                        self._queue(pipe, op)
                replies: list[Any] = await pipe.execute()
            if inline:
                return [
                    count_of(reply) for reply, op in zip(replies, ops, strict=True) if isinstance(op, Count)
                ]
            return [await self._count(channel) for channel in counted]

    async def publish(self, channel: str, data: bytes | str) -> None:
        with translated():
            await self._publish(self._client, channel, data)

    async def subscribers(self, channel: str) -> int:
        with translated():
            return await self._count(channel)

    async def latest(self, key: str) -> Entry | None:
        with translated():
            entries: Any = await self._client.xrevrange(key, "+", "-", count=1)
        return _entry(entries[0]) if entries else None

    async def entries_after(self, key: str, after: str, *, count: int) -> list[Entry]:
        with translated():
            entries: Any = await self._client.xrange(key, min=f"({after}", max="+", count=count)
        return [_entry(e) for e in entries]

    async def get(self, key: str) -> bytes | None:
        with translated():
            value: Any = await self._client.get(key)
        return value if isinstance(value, bytes) else None

    async def ping(self) -> None:
        with translated():
            await self._client.ping()

    async def aclose(self) -> None:
        with translated():
            await self._client.aclose()
