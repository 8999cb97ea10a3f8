"""The broker's contract, the same on every backend: a real valkey, sharded or not, and a real cluster.

What the producer and the gateway rely on: an atomic append-and-publish, a heartbeat's pipeline
with its subscriber count, history reads, typed deliveries and confirmations in order, and one
error class that tells a refusal from a lost link.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest
import redis

from framecast import wire
from framecast.broker import (
    Append,
    Broker,
    BrokerError,
    Confirmation,
    Count,
    Delete,
    Delivery,
    Event,
    Publish,
    Put,
    Subscription,
    open_broker,
)
from framecast.exceptions import FramecastError
from framecast.local.ports import free_port
from tests.support.cluster import running_cluster

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer

STREAM = "cam"


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    with running_cluster() as cluster:
        yield cluster.url


@pytest.fixture(params=["standalone", "sharded", "cluster"])
async def broker(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[Broker]:
    kind = request.param
    if kind == "cluster":
        url = request.getfixturevalue("cluster_url")
        with redis.RedisCluster.from_url(url) as admin:  # a clean slate for every test
            admin.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    else:
        url = redis_server.url
    opened = open_broker(url, timeout=5.0, cluster=kind == "cluster", sharded=kind == "sharded")
    try:
        yield opened
    finally:
        await opened.aclose()


class _Pump:
    """A subscription pumped in the background; its events in arrival order."""

    def __init__(self, link: Subscription) -> None:
        self.link = link
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        self._running = True
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Pump (redis-py reads only once something was subscribed)."""
        self._task = asyncio.create_task(
            self.link.pump(self._handle, before=_nothing, after=_none, poll_interval=0.05, running=self._on)
        )

    def _on(self) -> bool:
        return self._running

    def _handle(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, wanted: Event, times: int = 1) -> None:
        async with asyncio.timeout(20):
            while self.events.count(wanted) < times:
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        self._running = False
        if self._task is not None:
            await self._task
        await self.link.aclose()


async def _nothing() -> None:
    return None


def _none() -> None:
    return None


@contextlib.asynccontextmanager
async def _subscribed(broker: Broker, *channels: str) -> AsyncIterator[_Pump]:
    pump = _Pump(await broker.open_subscription(gateway_id="test", health_check_interval=5.0))
    try:
        await pump.link.subscribe(channels)
        pump.start()
        for channel in channels:
            await pump.wait_for(Confirmation(channel, True))
        yield pump
    finally:
        await pump.close()


async def test_an_atomic_append_and_publish_reaches_history_and_subscribers(broker: Broker) -> None:
    channel, key = wire.channel(STREAM), wire.history_key(STREAM)
    async with _subscribed(broker, channel) as pump:
        assert await broker.latest(key) is None
        for seq in (1, 2, 3):
            ops = [Append(key, f"1000-{seq}", b"r%d" % seq, 100), Publish(channel, b"r%d" % seq)]
            assert await broker.write(ops, atomic=True) == []
        await pump.wait_for(Delivery(channel, b"r3"))
        deliveries = [e for e in pump.events if isinstance(e, Delivery)]
        assert deliveries == [Delivery(channel, b"r%d" % s) for s in (1, 2, 3)], "in order, typed"
    latest = await broker.latest(key)
    assert latest is not None and (latest.id, latest.data, latest.ms, latest.seq) == (
        "1000-3",
        b"r3",
        1000,
        3,
    )
    after = await broker.entries_after(key, "1000-1", count=10)
    assert [(e.id, e.data) for e in after] == [("1000-2", b"r2"), ("1000-3", b"r3")]
    assert [e.seq for e in await broker.entries_after(key, "1000-0", count=2)] == [1, 2]


async def test_a_heartbeat_pipeline_stores_publishes_and_counts_subscribers(broker: Broker) -> None:
    channel, previews, key = wire.channel(STREAM), wire.preview_channel(STREAM), wire.status_key(STREAM)
    async with _subscribed(broker, channel, previews) as pump:
        counts = await broker.write(
            [Publish(channel, b"status"), Put(key, b"status", 5000), Count(previews), Count("nobody")]
        )
        assert counts == [1, 0]
        assert await broker.subscribers(channel) == 1
        await pump.wait_for(Delivery(channel, b"status"))
        assert await broker.get(key) == b"status"
        values = await broker.scan_values(
            wire.STATUS_KEY_PATTERN, keep=lambda k: bool(wire.stream_of_status_key(k)), limit=10
        )
        assert values == [b"status"]
        await pump.link.unsubscribe([previews])
        await pump.wait_for(Confirmation(previews, False))
        assert await broker.subscribers(previews) == 0
    await broker.write([Delete(key)])
    assert await broker.get(key) is None


async def test_an_unsubscribe_and_subscribe_back_to_back_are_confirmed_in_order(broker: Broker) -> None:
    channel = wire.channel(STREAM)
    async with _subscribed(broker, channel) as pump:
        await pump.link.unsubscribe([channel])
        await pump.link.subscribe([channel])
        await pump.wait_for(Confirmation(channel, False))
        await pump.wait_for(Confirmation(channel, True), times=2)
        confirmations = [e for e in pump.events if isinstance(e, Confirmation) and e.channel == channel]
        assert [c.subscribed for c in confirmations] == [True, False, True]
        await broker.publish(channel, b"still here")
        await pump.wait_for(Delivery(channel, b"still here"))


async def test_refusals_are_told_from_lost_links_and_all_are_framecast_errors(broker: Broker) -> None:
    key = wire.history_key(STREAM)
    await broker.write([Put(key, b"not a stream", 60_000)])
    with pytest.raises(BrokerError) as refused:
        await broker.write([Append(key, "1000-1", b"r", 10)], atomic=True)
    assert refused.value.refused and not refused.value.stale_id
    assert "WRONGTYPE" in (refused.value.reply or "")
    await broker.write([Delete(key)])
    await broker.write([Append(key, "1000-5", b"r", 10)], atomic=True)
    with pytest.raises(BrokerError) as stale:
        await broker.write([Append(key, "1000-5", b"again", 10)], atomic=True)
    assert stale.value.refused and stale.value.stale_id
    assert isinstance(stale.value, FramecastError)


async def test_an_unreachable_redis_is_a_broker_error_that_is_not_a_refusal() -> None:
    broker = open_broker(f"redis://127.0.0.1:{free_port()}/0", timeout=1.0)  # nothing listens there
    try:
        for call in (broker.ping(), broker.publish("x", b"y"), broker.write([Publish("x", b"y")])):
            with pytest.raises(BrokerError) as lost:
                await call
            assert not lost.value.refused and lost.value.reply is None
        with pytest.raises(BrokerError):
            link = await broker.open_subscription(gateway_id="test", health_check_interval=1.0)
            await link.subscribe(["x"])
    finally:
        await broker.aclose()
