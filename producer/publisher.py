"""Publishing to Redis: results into history then the channel, heartbeats, subscriber counts.

Every result is one round trip: ``MULTI; XADD history <epoch_ms>-<seq> m <bytes>; PUBLISH channel
<bytes>; EXEC``, so a result a gateway sees live is already in the history it replays from, and
the history entry id encodes the result's epoch start and ``seq``. With ``sharded=True`` every
PUBLISH is an SPUBLISH (accepted inside MULTI by a standalone server) and subscribers are counted
with PUBSUB SHARDNUMSUB. Given a Redis Cluster client, the MULTI goes to the shard owning the
stream (all of its names share one hash tag, so one slot) and SHARDNUMSUB asks that shard.

When Redis cannot be reached the publisher keeps only the newest result (older ones would be
stale by the time Redis is back), retries with capped exponential backoff and jitter, and logs
once when the link is lost and once when it is back, never per result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from framecast import wire
from framecast.retry import backoff

__all__ = ["Draft", "Publisher"]

log = logging.getLogger(__name__)

_LinkState = Literal["unknown", "up", "down"]


@dataclass(frozen=True, slots=True)
class Draft:
    """A result before publishing: the publisher adds stream, epoch, seq and publish time."""

    frame: int
    captured_at: float
    width: int
    height: int
    detections: tuple[wire.Detection, ...] = ()


def _is_id_conflict(exc: ResponseError) -> bool:
    return "equal or smaller than the target stream top item" in str(exc)


class Publisher:
    """Writes one stream's results, heartbeats and previews; survives Redis outages.

    Args:
        redis: Client to publish with (its socket timeouts bound every call); a
            :class:`~redis.asyncio.cluster.RedisCluster` for a Redis Cluster (use ``sharded``).
        stream: Stream name.
        history: Approximate length the history is trimmed to.
        status_ttl: Seconds the status key outlives the last heartbeat.
        epoch: Run id; a random one when None.
        where: How Redis is named in logs (no password).
        backoff_base: First retry delay in seconds, doubled per failure, with jitter.
        backoff_cap: Largest retry delay in seconds.
        on_link: Called with True/False when the link comes up or goes down.
        sharded: Sharded pub/sub: SPUBLISH instead of PUBLISH and PUBSUB SHARDNUMSUB instead
            of PUBSUB NUMSUB (the gateways must SSUBSCRIBE, ``--sharded``).
        on_publish: Called with the seconds from capture to the write, once per result written.
    """

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        stream: str,
        history: int = 1000,
        status_ttl: float = 5.0,
        epoch: str | None = None,
        where: str = "Redis",
        backoff_base: float = 0.25,
        backoff_cap: float = 5.0,
        on_link: Callable[[bool], None] | None = None,
        sharded: bool = False,
        on_publish: Callable[[float], None] | None = None,
    ) -> None:
        self._on_publish = on_publish
        self._redis = redis
        self._sharded = sharded
        self.stream = wire.check_stream_name(stream)
        self._channel = wire.channel(stream)
        self._preview_channel = wire.preview_channel(stream)
        self._video_channel = wire.video_channel(stream)
        self._history_key = wire.history_key(stream)
        self._status_key = wire.status_key(stream)
        self._history = history
        self._status_ttl_ms = max(1000, round(status_ttl * 1000))
        self.epoch = epoch or secrets.token_hex(4)
        """Run id carried by every message."""
        self.seq = 0
        """``seq`` of the last result written."""
        self.errors = 0
        """Failed Redis calls so far."""
        self.published = 0
        """Results written so far (all epochs)."""
        self.parked: Draft | None = None
        """The newest result waiting for Redis to come back."""
        self.dropped = 0
        """Results never published: replaced by a newer one while Redis was unreachable, or
        still parked at :meth:`close`."""
        self._epoch_ms: int | None = None
        self._attempted: tuple[int, Draft] | None = None
        self._where = where
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._on_link = on_link
        self._state: _LinkState = "unknown"
        self._reconnecting: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """Whether the last Redis call succeeded."""
        return self._state == "up"

    @property
    def epoch_ms(self) -> int | None:
        """Millisecond part of this epoch's history ids (known after the first write)."""
        return self._epoch_ms

    # ----------------------------------------------------------------- results

    async def publish(self, draft: Draft) -> wire.Result | None:
        """Write a result to history and channel.

        Returns:
            The published result, or None when Redis is unreachable: the draft is then parked
            (replacing an older parked one) and published once the link is back.
        """
        if self._state == "down":
            self._park(draft)
            return None
        try:
            result = await self._write(draft)
        except (RedisError, RedisClusterException, OSError) as exc:
            self._park(draft)
            self._lost(exc)
            return None
        self._up()
        return result

    def _park(self, draft: Draft) -> None:
        if self.parked is not None and self.parked is not draft:
            self.dropped += 1
        self.parked = draft

    async def flush(self) -> None:
        """Return once nothing is parked and the link is up (cancel it to give up)."""
        while self.parked is not None or self._state == "down":
            await asyncio.sleep(0.05)

    async def _write(self, draft: Draft) -> wire.Result:
        if self._epoch_ms is None:
            self._epoch_ms = await self._epoch_start()
        seq = self.seq + 1
        result = wire.Result(
            stream=self.stream,
            epoch=self.epoch,
            seq=seq,
            frame=draft.frame,
            captured_at=draft.captured_at,
            published_at=time.time(),
            width=draft.width,
            height=draft.height,
            detections=draft.detections,
        )
        data = wire.encode(result)
        self._attempted = (seq, draft)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xadd(
                    self._history_key,
                    {wire.HISTORY_FIELD: data},
                    id=f"{self._epoch_ms}-{seq}",
                    maxlen=self._history,
                    approximate=True,
                )
                self._publish(pipe, self._channel, data)
                await pipe.execute()
        except ResponseError as exc:
            if not _is_id_conflict(exc):
                self._attempted = None
                raise
            if await self._landed(seq):
                # The client retried a transaction whose first try was applied but whose reply
                # was lost with its connection: the result is in history and on the channel.
                self._attempted = None
                self.seq = seq
                self._count(draft)
                return result
            self._attempted = None
            # Someone wrote newer ids into our history (a second producer on this stream?):
            # start a new epoch rather than publish results that replay can never find.
            old = self.epoch
            self.epoch, self.seq, self._epoch_ms = secrets.token_hex(4), 0, None
            log.error(
                "stream %s: the history has entries newer than epoch %s (is another producer "
                "publishing this stream?); starting epoch %s",
                self.stream,
                old,
                self.epoch,
            )
            return await self._write(draft)
        self._attempted = None
        self.seq = seq
        self._count(draft)
        return result

    def _count(self, draft: Draft) -> None:
        self.published += 1
        if self._on_publish is not None:
            self._on_publish(max(time.time() - draft.captured_at, 0.0))

    async def _epoch_start(self) -> int:
        """max(now, newest history id's ms + 1): ids keep increasing across producer restarts."""
        newest: Any = await self._redis.xrevrange(self._history_key, count=1)
        now_ms = int(time.time() * 1000)
        if not newest:
            return now_ms
        entry_id = newest[0][0]
        text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        return max(now_ms, int(text.split("-", 1)[0]) + 1)

    async def _landed(self, seq: int) -> bool:
        """Whether the newest history entry is this epoch's ``seq`` (our own write)."""
        newest: Any = await self._redis.xrevrange(self._history_key, count=1)
        if not newest:
            return False
        entry_id = newest[0][0]
        text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        return text == f"{self._epoch_ms}-{seq}"

    async def _reconcile(self) -> None:
        """After a failed write whose outcome is unknown, learn whether Redis applied it."""
        if self._attempted is None or self._epoch_ms is None:
            return
        seq, draft = self._attempted
        landed = await self._landed(seq)
        self._attempted = None
        if landed:
            self.seq = seq
            self._count(draft)
            if self.parked is draft:
                self.parked = None

    # ----------------------------------------------------------------- heartbeats and demand

    async def heartbeat(self, status: wire.Status, *, previews: bool = False) -> int | None:
        """Publish a status, refresh the status key and optionally count preview subscribers.

        Returns:
            Preview subscribers when asked for, 0 when not; None when Redis is unreachable.
        """
        if self._state == "down":
            return None
        data = wire.encode(status)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                self._publish(pipe, self._channel, data)
                pipe.set(self._status_key, data, px=self._status_ttl_ms)
                if previews and not isinstance(pipe, ClusterPipeline):
                    self._numsub(pipe, self._preview_channel)
                replies = await pipe.execute()
            if previews and isinstance(self._redis, RedisCluster):
                # A cluster pipeline would ask every node: ask the shard owning the channel.
                replies.append(await self._numsub(self._redis, self._preview_channel))
        except (RedisError, RedisClusterException, OSError) as exc:
            self._lost(exc)
            return None
        self._up()
        return _count(replies[2]) if previews else 0

    async def subscribers(self) -> int | None:
        """Subscribers of the stream's channel (on this Redis node), or None when unreachable."""
        count = await self._subscribers(self._channel)
        if count is not None:
            self._up()
        return count

    async def video_viewers(self) -> int | None:
        """Subscribers of the stream's video channel (gateways with video clients), None if unreachable."""
        return await self._subscribers(self._video_channel)

    async def preview(self, data: bytes) -> bool:
        """Publish an encoded preview; False when Redis is unreachable (previews are not kept)."""
        return await self._publish_one(self._preview_channel, data)

    async def video(self, data: bytes) -> bool:
        """Publish an encoded video frame; False when Redis did not take it (frames are not kept)."""
        return await self._publish_one(self._video_channel, data)

    async def _subscribers(self, channel: str) -> int | None:
        if self._state == "down":
            return None
        try:
            reply = await self._numsub(self._redis, channel)
        except (RedisError, RedisClusterException, OSError) as exc:
            self._lost(exc)
            return None
        return _count(reply)

    async def _publish_one(self, channel: str, data: bytes) -> bool:
        """One PUBLISH outside the results' transaction: what is not taken is not kept."""
        if self._state == "down":
            return False
        try:
            await self._publish(self._redis, channel, data)
        except (RedisError, RedisClusterException, OSError) as exc:
            self._lost(exc)
            return False
        return True

    async def close(self, final: wire.Status | None = None, *, timeout: float = 2.0) -> None:
        """Send a last status (if reachable), remove the status key and close the client."""
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        if self.parked is not None:
            self.dropped += 1
            log.warning(
                "closing with %s unreachable: the last result (frame %d) was not published; "
                "%d result%s in all never reached Redis",
                self._where,
                self.parked.frame,
                self.dropped,
                "" if self.dropped == 1 else "s",
            )
            self.parked = None
        elif self.dropped:
            log.info("%d results were dropped during Redis outages (only the newest is kept)", self.dropped)
        if final is not None and self._state != "down":
            with contextlib.suppress(RedisError, RedisClusterException, OSError, TimeoutError):
                async with asyncio.timeout(timeout), self._redis.pipeline(transaction=False) as pipe:
                    self._publish(pipe, self._channel, wire.encode(final))
                    pipe.delete(self._status_key)
                    await pipe.execute()
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    def _publish(
        self, target: Redis | Pipeline | RedisCluster | ClusterPipeline, channel: str, data: bytes
    ) -> Any:
        """PUBLISH, or SPUBLISH when sharded, on a client (awaitable) or a pipeline (queued)."""
        if self._sharded:
            return target.spublish(channel, data)
        return target.publish(channel, data)

    def _numsub(self, target: Redis | Pipeline | RedisCluster, channel: str) -> Any:
        """PUBSUB NUMSUB, or PUBSUB SHARDNUMSUB when sharded (same reply shape).

        On a cluster, SHARDNUMSUB is asked of the primary owning the channel's slot: redis-py would
        otherwise ask every node and not add up their answers.
        """
        if isinstance(target, RedisCluster):
            return _shard_numsub(target, channel)
        if self._sharded:
            return target.pubsub_shardnumsub(channel)
        return target.pubsub_numsub(channel)

    # ----------------------------------------------------------------- link state

    def _up(self) -> None:
        if self._state == "up":
            return
        if self._state == "unknown":
            log.info("publishing stream %s to %s (epoch %s)", self.stream, self._where, self.epoch)
        self._state = "up"
        if self._on_link is not None:
            self._on_link(True)

    def _lost(self, exc: BaseException) -> None:
        self.errors += 1
        if self._state == "down":
            return
        log.warning(
            "%s unreachable (%s); retrying with backoff, keeping only the newest result",
            self._where,
            str(exc).strip() or type(exc).__name__,
        )
        self._state = "down"
        if self._on_link is not None:
            self._on_link(False)
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(
                self._reconnect(), name="redis-reconnect"
            )

    async def _reconnect(self) -> None:
        delays = backoff(initial=self._backoff_base, maximum=self._backoff_cap)
        started = time.monotonic()
        while True:
            await asyncio.sleep(next(delays))
            try:
                await self._redis.ping()
                await self._reconcile()
                while self.parked is not None:
                    draft = self.parked
                    self.parked = None
                    try:
                        await self._write(draft)
                    except BaseException:
                        if self.parked is None:
                            self.parked = draft
                        raise
            except (RedisError, RedisClusterException, OSError) as exc:
                self.errors += 1
                log.debug("%s still unreachable: %s", self._where, exc)
                continue
            log.info("%s reachable again after %.1f s", self._where, time.monotonic() - started)
            self._state = "up"
            if self._on_link is not None:
                self._on_link(True)
            return


async def _shard_numsub(cluster: RedisCluster, channel: str) -> Any:
    await cluster.initialize()  # the slot map is needed before the first command learns it
    return await cluster.pubsub_shardnumsub(channel, target_nodes=cluster.get_node_from_key(channel))


def _count(reply: Any) -> int:
    """The count in a PUBSUB NUMSUB reply for one channel (``[(channel, n)]``)."""
    try:
        return int(reply[0][1])
    except (IndexError, TypeError, ValueError):
        return 0
