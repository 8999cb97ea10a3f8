"""Replay planning and the subscription's reference counting, against a real valkey (in-process)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from websockets.asyncio.client import connect

from framecast import wire
from framecast.broker import open_broker
from gateway.history import replay
from gateway.subscriber import Subscriber
from tests.support.feed import Feed
from tests.support.gateway import FakeProducer, running_gateway

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer


def seqs(messages: list[bytes]) -> list[int]:
    return [wire.peek(m).seq for m in messages]


async def test_replay_plans(redis_server: RedisServer) -> None:
    producer = FakeProducer(redis_server.url, "cam", maxlen=1000)
    client = aioredis.Redis.from_url(redis_server.url)
    broker = open_broker(redis_server.url, timeout=5.0)
    try:
        empty = await replay(broker, "cam", since=None)
        assert (empty.messages, empty.reset) == ([], None)
        assert (await replay(broker, "cam", since=4, epoch="x")).reset == "no-history"

        for _ in range(10):
            producer.result()
        latest = await replay(broker, "cam")
        assert seqs(latest.messages) == [10] and latest.reset is None and latest.seq == 10

        resumed = await replay(broker, "cam", since=4, epoch=producer.epoch)
        assert seqs(resumed.messages) == [5, 6, 7, 8, 9, 10] and resumed.reset is None
        assert (resumed.epoch, resumed.seq) == (producer.epoch, 10)

        up_to_date = await replay(broker, "cam", since=10, epoch=producer.epoch)
        assert up_to_date.messages == [] and up_to_date.seq == 10 and up_to_date.reset is None

        # Known defect (issue 20): a position beyond the newest result of the epoch was taken as
        # up to date; the client then dropped every result up to it, silently.
        ahead = await replay(broker, "cam", since=11, epoch=producer.epoch)
        assert ahead.reset == "position-ahead" and seqs(ahead.messages) == [10] and ahead.seq == 10

        assert (await replay(broker, "cam", since=4, epoch="old")).reset == "epoch-changed"
        limited = await replay(broker, "cam", since=0, epoch=producer.epoch, limit=5)
        assert limited.reset == "history-expired" and seqs(limited.messages) == [10]

        await client.xtrim(wire.history_key("cam"), maxlen=3, approximate=False)  # 8..10 left
        trimmed = await replay(broker, "cam", since=5, epoch=producer.epoch)
        assert trimmed.reset == "history-expired" and seqs(trimmed.messages) == [10]
        assert seqs((await replay(broker, "cam", since=7, epoch=producer.epoch)).messages) == [8, 9, 10]

        # A new producer run: entries of the new epoch sort after the old ones.
        old_epoch = producer.epoch
        producer.restart()
        producer.result()
        moved_on = await replay(broker, "cam", since=10, epoch=old_epoch)
        assert moved_on.reset == "epoch-changed" and seqs(moved_on.messages) == [1]
        assert moved_on.epoch == producer.epoch
        fresh = await replay(broker, "cam", since=0, epoch=producer.epoch)
        assert seqs(fresh.messages) == [1] and fresh.reset is None
    finally:
        await broker.aclose()
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


async def test_unsubscribe_then_subscribe_with_since_back_to_back_keeps_the_stream_flowing(
    redis_server: RedisServer,
) -> None:
    """Known defect: on one connection, ``unsubscribe`` followed at once by ``subscribe`` with
    ``since`` for the same stream left the gateway sending nothing more for it in 2 of 8 trials:
    the subscribe took the channel for held while its UNSUBSCRIBE was on its way to Redis
    (tests/unit/test_demand.py has the exact interleaving). Sixteen rounds on one connection;
    each must be followed by live results from after its resume position."""
    feed = Feed(redis_server.url, "cam")
    feed.publish(3)
    feed.start(rate=20)
    try:
        with running_gateway(redis_url=redis_server.url, wait="ready") as gateway:
            async with connect(gateway.ws_url + "/ws", open_timeout=30) as ws:

                async def next_result(after: int) -> wire.Result:
                    """The first live result past ``after`` (bounded: 400 messages, 30 s)."""
                    async with asyncio.timeout(30):
                        for _ in range(400):
                            message = wire.decode(await ws.recv())
                            if isinstance(message, wire.Result) and message.seq > after:
                                return message
                    raise AssertionError(f"no result past seq {after} in 400 messages")

                await ws.send(wire.encode(wire.Subscribe(stream="cam")), text=True)
                last = await next_result(0)
                for round_ in range(16):
                    await ws.send(wire.encode(wire.Unsubscribe(stream="cam")), text=True)
                    resume = wire.Subscribe(stream="cam", since=last.seq, epoch=last.epoch)
                    await ws.send(wire.encode(resume), text=True)
                    # Past anything published before the resubscription could have been held.
                    beyond = feed.seq + 2
                    try:
                        last = await next_result(beyond)
                    except TimeoutError:
                        raise AssertionError(f"round {round_}: the stream went silent") from None
    finally:
        feed.stop()
