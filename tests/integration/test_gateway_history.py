"""Replay planning and the subscription's reference counting, against a real valkey (in-process)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from websockets.asyncio.client import connect

from framecast import wire
from gateway.history import replay
from gateway.store import open_store
from gateway.subscriber import Subscriber
from tests.support.gateway import FakeProducer, running_gateway

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer


def seqs(messages: list[bytes]) -> list[int]:
    return [wire.peek(m).seq for m in messages]


async def test_replay_plans(redis_server: RedisServer) -> None:
    producer = FakeProducer(redis_server.url, "cam", maxlen=1000)
    client = aioredis.Redis.from_url(redis_server.url)
    store = open_store(redis_server.url, timeout=5.0)
    try:
        empty = await replay(store, "cam", since=None)
        assert (empty.messages, empty.reset) == ([], None)
        assert (await replay(store, "cam", since=4, epoch="x")).reset == "no-history"

        for _ in range(10):
            producer.result()
        latest = await replay(store, "cam")
        assert seqs(latest.messages) == [10] and latest.reset is None and latest.seq == 10

        resumed = await replay(store, "cam", since=4, epoch=producer.epoch)
        assert seqs(resumed.messages) == [5, 6, 7, 8, 9, 10] and resumed.reset is None
        assert (resumed.epoch, resumed.seq) == (producer.epoch, 10)

        up_to_date = await replay(store, "cam", since=10, epoch=producer.epoch)
        assert up_to_date.messages == [] and up_to_date.seq == 10 and up_to_date.reset is None

        # Known defect (issue 20): a position beyond the newest result of the epoch was taken as
        # up to date; the client then dropped every result up to it, silently.
        ahead = await replay(store, "cam", since=11, epoch=producer.epoch)
        assert ahead.reset == "position-ahead" and seqs(ahead.messages) == [10] and ahead.seq == 10

        assert (await replay(store, "cam", since=4, epoch="old")).reset == "epoch-changed"
        limited = await replay(store, "cam", since=0, epoch=producer.epoch, limit=5)
        assert limited.reset == "history-expired" and seqs(limited.messages) == [10]

        await client.xtrim(wire.history_key("cam"), maxlen=3, approximate=False)  # 8..10 left
        trimmed = await replay(store, "cam", since=5, epoch=producer.epoch)
        assert trimmed.reset == "history-expired" and seqs(trimmed.messages) == [10]
        assert seqs((await replay(store, "cam", since=7, epoch=producer.epoch)).messages) == [8, 9, 10]

        # A new producer run: entries of the new epoch sort after the old ones.
        old_epoch = producer.epoch
        producer.restart()
        producer.result()
        moved_on = await replay(store, "cam", since=10, epoch=old_epoch)
        assert moved_on.reset == "epoch-changed" and seqs(moved_on.messages) == [1]
        assert moved_on.epoch == producer.epoch
        fresh = await replay(store, "cam", since=0, epoch=producer.epoch)
        assert seqs(fresh.messages) == [1] and fresh.reset is None
    finally:
        await store.aclose()
        await client.aclose()
        producer.close()


async def numsub(client: aioredis.Redis, channel: str) -> int:
    result = await client.pubsub_numsub(channel)
    return int(result[0][1])


async def test_subscriber_subscribes_only_while_needed_and_delivers(redis_server: RedisServer) -> None:
    received: list[tuple[str, bytes]] = []
    subscriber = Subscriber(
        url=redis_server.url,
        gateway_id="unit",
        on_message=lambda stream, data: received.append((stream, data)),
        ready_timeout=1.0,
    )
    client = aioredis.Redis.from_url(redis_server.url)
    runner = asyncio.create_task(subscriber.run())
    try:
        deadline = time.monotonic() + 10
        while not subscriber.ready:
            assert time.monotonic() < deadline, subscriber.not_ready_reason()
            await asyncio.sleep(0.02)
        channel = wire.channel("cam")
        first = subscriber.acquire("cam")
        second = subscriber.acquire("cam")
        await asyncio.wait_for(asyncio.gather(first, second), 10)
        assert await numsub(client, channel) == 1, "one Redis subscription for two local users"
        producer = FakeProducer(redis_server.url, "cam")
        producer.result()
        while not received:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert received[0][0] == "cam" and wire.peek(received[0][1]).seq == 1
        subscriber.release("cam")
        await asyncio.sleep(0.2)
        assert await numsub(client, channel) == 1, "still one user"
        subscriber.release("cam")
        for _ in range(200):
            if await numsub(client, channel) == 0:
                break
            await asyncio.sleep(0.02)
        assert await numsub(client, channel) == 0, "unsubscribed after the last user left"
        producer.close()
    finally:
        await subscriber.stop()
        await asyncio.wait_for(runner, 10)
        await client.aclose()


async def _subscribe_and_read_first(url: str) -> list[wire.TextMessage]:
    """Open ``url``; return what arrives up to both the latest result and the status."""
    async with connect(url, open_timeout=60, max_queue=None) as ws:
        got: list[wire.TextMessage] = []
        for _ in range(10):
            got.append(wire.decode(await asyncio.wait_for(ws.recv(), 60)))
            kinds = {type(m) for m in got}
            if wire.Result in kinds and wire.Status in kinds:
                break
        return got


async def test_a_connection_storm_queues_history_reads_and_every_subscriber_gets_latest_and_status(
    redis_server: RedisServer,
) -> None:
    clients, slots = 400, 2
    producer = FakeProducer(redis_server.url, "storm")
    producer.result()
    producer.status(ttl=120)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        with running_gateway(
            redis_url=redis_server.url,
            args=["--history-reads", str(slots), "--max-connections", str(clients + 10)],
            wait="ready",
        ) as gw:
            url = f"{gw.ws_url}/ws/storm"
            answers = await asyncio.gather(*(_subscribe_and_read_first(url) for _ in range(clients)))
            for got in answers:
                assert not any(isinstance(m, wire.Reset) for m in got), got
                assert [type(m) for m in got if isinstance(m, wire.Result | wire.Status)] == [
                    wire.Result,
                    wire.Status,
                ], got
            assert "history unavailable" not in gw.logs, gw.logs
            # The command pool never grew past the read slots: the gateway holds at most those,
            # one for a canary in flight, and its subscription link (+ this test's two clients).
            info = await client.info("clients")
            assert int(info["connected_clients"]) <= slots + 2 + 2, info
            reads = gw.metric("framecast_gateway_history_reads_total")
            assert 1 <= reads < clients, "subscribers of one stream share queued reads"
    finally:
        await client.aclose()
        producer.close()
