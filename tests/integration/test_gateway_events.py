"""Events through real gateways, valkey and nginx: replay from their own history, filters, slow readers.

The producer side of events is tests/integration/test_producer_events.py; here a FakeProducer writes
exactly what the producer writes (``XADD events <epoch_ms>-<event seq>`` then ``PUBLISH``, one MULTI).
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from websockets.asyncio.client import connect

from framecast import client, wire
from framecast.broker import open_broker
from gateway.history import event_replay
from tests.support.gateway import Collector, FakeProducer, raw_websocket, running_gateway
from tests.support.nginx import running_nginx
from tests.support.sockets import drain
from tests.support.wait import poll

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer

STREAM = "door"


def _seqs(messages: list[bytes]) -> list[tuple[str, int]]:
    return [(wire.peek(m).epoch, wire.peek(m).seq) for m in messages]


async def test_event_replay_plans_across_epochs(redis_server: RedisServer) -> None:
    producer = FakeProducer(redis_server.url, STREAM)
    broker = open_broker(redis_server.url, timeout=5.0)
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        assert (await event_replay(broker, STREAM, since=0, epoch="x")).reset == "no-history"
        for _ in range(5):
            producer.event()
        a = producer.epoch
        resumed = await event_replay(broker, STREAM, since=2, epoch=a)
        assert _seqs(resumed.messages) == [(a, 3), (a, 4), (a, 5)] and resumed.reset is None
        assert (resumed.epoch, resumed.seq) == (a, 5)
        up_to_date = await event_replay(broker, STREAM, since=5, epoch=a)
        assert (up_to_date.messages, up_to_date.reset, up_to_date.epoch, up_to_date.seq) == ([], None, a, 5)
        assert (await event_replay(broker, STREAM, since=6, epoch=a)).reset == "position-ahead"
        assert (await event_replay(broker, STREAM, since=0, epoch=a, limit=3)).reset == "history-expired"

        # A producer restart loses no event for a client that resumes: the rest of its epoch,
        # then every later epoch's, found by stepping back through the epochs.
        producer.restart()
        b = producer.epoch
        for _ in range(3):
            producer.event()
        producer.restart()
        c = producer.epoch
        producer.event()
        across = await event_replay(broker, STREAM, since=3, epoch=a)
        assert _seqs(across.messages) == [(a, 4), (a, 5), (b, 1), (b, 2), (b, 3), (c, 1)]
        assert across.reset is None and (across.epoch, across.seq) == (c, 1)
        end_of_epoch = await event_replay(broker, STREAM, since=5, epoch=a)
        assert _seqs(end_of_epoch.messages) == [(b, 1), (b, 2), (b, 3), (c, 1)]
        from_b = await event_replay(broker, STREAM, since=3, epoch=b)
        assert _seqs(from_b.messages) == [(c, 1)]

        # An epoch the history does not hold: the newest epoch from its seq 1, with a reset.
        unknown = await event_replay(broker, STREAM, since=9, epoch="gone")
        assert unknown.reset == "epoch-changed" and _seqs(unknown.messages) == [(c, 1)]

        # Trimmed past the position: no replay, a reset, and live from the subscription on.
        await raw.xtrim(wire.events_key(STREAM), maxlen=6, approximate=False)  # a4 to c1 left
        trimmed = await event_replay(broker, STREAM, since=2, epoch=a)
        assert trimmed.reset == "history-expired" and trimmed.messages == [] and trimmed.epoch is None
        kept = await event_replay(broker, STREAM, since=3, epoch=a)
        assert _seqs(kept.messages)[0] == (a, 4) and kept.reset is None
        await raw.xtrim(wire.events_key(STREAM), maxlen=3, approximate=False)  # b2, b3, c1 left
        assert _seqs((await event_replay(broker, STREAM, since=1, epoch=b)).messages) == [
            (b, 2),
            (b, 3),
            (c, 1),
        ]
        assert (await event_replay(broker, STREAM, since=0, epoch=b)).reset == "history-expired"
    finally:
        await broker.aclose()
        await raw.aclose()
        producer.close()


class _Racing:
    """A broker whose first ``entries_after`` comes after the producer published more events (the
    race between a replay's two reads while events flow)."""

    def __init__(self, broker: Any, producer: FakeProducer, events: int) -> None:
        self._broker = broker
        self._producer = producer
        self._events = events

    async def latest(self, key: str) -> Any:
        return await self._broker.latest(key)

    async def entry_before(self, key: str, before: str) -> Any:
        return await self._broker.entry_before(key, before)

    async def entries_after(self, key: str, after: str, *, count: int) -> Any:
        for _ in range(self._events):
            self._producer.event()
        self._events = 0
        return await self._broker.entries_after(key, after, count=count)


async def test_events_published_during_a_replay_never_make_it_a_reset(redis_server: RedisServer) -> None:
    """Known defect: an event published between the replay's read of the newest entry and its read
    of the entries after the position made the replay look cut short: a reset, and the events
    between the position and the subscription were lost (seen in the kill -9 test, 9 events)."""
    producer = FakeProducer(redis_server.url, STREAM)
    broker = open_broker(redis_server.url, timeout=5.0)
    try:
        for _ in range(5):
            producer.event()
        racing: Any = _Racing(broker, producer, 3)
        plan = await event_replay(racing, STREAM, since=2, epoch=producer.epoch)
        assert plan.reset is None
        assert [seq for _, seq in _seqs(plan.messages)] == [3, 4, 5, 6, 7, 8]
        producer.restart()
        producer.event()
        racing = _Racing(broker, producer, 2)
        gone = await event_replay(racing, STREAM, since=1, epoch="gone")
        assert gone.reset == "epoch-changed" and [seq for _, seq in _seqs(gone.messages)] == [1, 2, 3]
    finally:
        await broker.aclose()
        producer.close()


async def _until(ws: object, count: int, stop: object) -> list[wire.TextMessage]:
    """Messages (pings aside) until one for which ``stop`` is true (bounded)."""
    got: list[wire.TextMessage] = []
    async with asyncio.timeout(30):
        for _ in range(count):
            message = wire.decode(await ws.recv())  # type: ignore[attr-defined]
            got.append(message)
            if stop(message):  # type: ignore[operator]
                return got
    raise AssertionError(f"not found in {count} messages: {got}")


def _shape(messages: list[wire.TextMessage]) -> list[str]:
    out = []
    for m in messages:
        if isinstance(m, wire.Result | wire.Event):
            out.append(f"{m.type}{m.seq}")
        elif isinstance(m, wire.Reset):
            out.append(f"reset-{m.kind or 'result'}-{m.reason}")
        else:
            out.append(m.type)
    return out


async def test_a_resume_gets_events_then_results_then_status_then_live_and_kinds_filter(
    redis_server: RedisServer,
) -> None:
    producer = FakeProducer(redis_server.url, STREAM)
    for _ in range(5):
        producer.result()
        producer.event()
    producer.status(ttl=60)
    e = producer.epoch
    try:
        with running_gateway(redis_url=redis_server.url, wait="ready") as gw:
            url = f"{gw.ws_url}/ws/{STREAM}"
            async with (
                connect(f"{url}?since=3&epoch={e}&event_since=2&event_epoch={e}") as full,
                connect(f"{url}?kinds=event,status&event_since=0&event_epoch={e}") as counter,
                connect(f"{url}?kinds=result&event_since=0&event_epoch={e}") as viewer,
            ):
                first = await _until(full, 20, lambda m: isinstance(m, wire.Status))
                assert _shape(first) == [
                    "hello", "subscribed", "event3", "event4", "event5", "result4", "result5", "status",
                ]  # fmt: skip
                counted = await _until(counter, 20, lambda m: isinstance(m, wire.Status))
                assert _shape(counted) == [
                    "hello", "subscribed", "event1", "event2", "event3", "event4", "event5", "status",
                ]  # fmt: skip
                subscribed = counted[1]
                assert isinstance(subscribed, wire.Subscribed) and subscribed.kinds == ("event", "status")
                viewed = await _until(viewer, 20, lambda m: isinstance(m, wire.Result))
                assert _shape(viewed) == ["hello", "subscribed", "result5"], "no event, not even replayed"

                producer.result()
                producer.event()
                producer.status(ttl=60)
                live = await _until(full, 20, lambda m: isinstance(m, wire.Status))
                assert _shape(live) == ["result6", "event6", "status"]
                # The result came first: once the event and the status are here, it was not sent.
                live = await _until(counter, 20, lambda m: isinstance(m, wire.Status))
                assert _shape(live) == ["event6", "status"]
                producer.result()
                live = await _until(viewer, 20, lambda m: isinstance(m, wire.Result) and m.seq == 7)
                assert _shape(live) == ["result6", "result7"]
    finally:
        producer.close()


async def test_a_bad_choice_in_the_query_is_a_400(redis_server: RedisServer) -> None:
    with running_gateway(redis_url=redis_server.url, wait="ready") as gw:
        for query, needle in [
            ("kinds=event,bogus", b"unknown kind"),
            ("max_rate=0", b"max_rate"),
            ("max_rate=abc", b"max_rate"),
            ("event_since=5", b"event_since needs event_epoch"),
            ("event_since=-1&event_epoch=e", b"event_since: expected"),
        ]:
            sock, head = raw_websocket(gw.port, f"/ws/{STREAM}?{query}")
            body = sock.recv(4096)
            sock.close()
            assert head.startswith(b"HTTP/1.1 400") and needle in body, (query, head, body)


async def test_resuming_clients_get_every_event_exactly_once_across_a_gateway_kill_9(
    redis_server: RedisServer,
) -> None:
    producer = FakeProducer(redis_server.url, STREAM)
    producer.status(ttl=120)
    with (
        running_gateway(redis_url=redis_server.url, wait="ready") as gw1,
        running_gateway(redis_url=redis_server.url, wait="ready") as gw2,
        running_nginx([f"127.0.0.1:{gw1.port}", f"127.0.0.1:{gw2.port}"]) as lb,
    ):
        received: dict[int, list[tuple[str, int]]] = {i: [] for i in range(6)}
        reconnects = [0] * 6

        async def reader(index: int) -> None:
            def lost(reason: str, delay: float) -> None:
                reconnects[index] += 1

            subscription = client.subscribe(
                lb.url,
                [STREAM],
                kinds=["event", "status"],
                on_disconnect=lost,
                delays=lambda: iter([0.05] * 1000),
            )
            async with subscription as messages:
                async for message in messages:
                    if isinstance(message, wire.Event):
                        received[index].append((message.epoch, message.seq))

        readers = [asyncio.create_task(reader(i)) for i in range(6)]
        try:
            await poll(
                lambda: (
                    gw1.metric("framecast_gateway_subscriptions")
                    + gw2.metric("framecast_gateway_subscriptions")
                    == 6
                ),
                what="all subscribed",
            )
            for _ in range(40):
                producer.event()
                await asyncio.sleep(0.01)
            await poll(lambda: all(len(r) >= 1 for r in received.values()), what="events flowing")
            killed = gw1 if gw1.metric("framecast_gateway_subscriptions") else gw2
            killed.stop(signal.SIGKILL)
            for _ in range(200):  # events keep coming while the clients move to the other gateway
                producer.event()
                await asyncio.sleep(0.005)
            last = producer.event_seq
            await poll(
                lambda: all(r and r[-1][1] >= last for r in received.values()),
                timeout=60,
                what="every reader at the last event",
            )
        finally:
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            producer.close()
        assert sum(reconnects) >= 1, "the kill moved some readers"
        for index, events in received.items():
            first = events[0][1]
            assert events == [(producer.epoch, seq) for seq in range(first, last + 1)], (
                f"reader {index}: every event from its first on, once, in order"
            )


async def test_a_stalled_events_reader_behind_nginx_is_closed_4008_not_thinned_and_others_get_all(
    redis_server: RedisServer,
) -> None:
    with running_gateway(
        redis_url=redis_server.url,
        args=[
            "--client-buffer", str(256 << 10), "--lag-threshold", "1", "--lag-probe-interval", "0.2",
            "--max-lag", "4", "--send-deadline", "0.25", "--close-timeout", "1",
        ],
        wait="ready",
    ) as gw, running_nginx([f"127.0.0.1:{gw.port}"]) as lb:  # fmt: skip
        producer = FakeProducer(redis_server.url, STREAM)
        producer.status(ttl=120)
        url = f"{lb.ws_url}/ws/{STREAM}?kinds=event,status"
        readers = [
            Collector(await connect(url, open_timeout=20, max_queue=None, max_size=None)) for _ in range(4)
        ]
        stalled, head = raw_websocket(lb.port, f"/ws/{STREAM}?kinds=event", rcvbuf=4096)
        assert head.startswith(b"HTTP/1.1 101"), head
        await poll(lambda: gw.metric("framecast_gateway_subscriptions") == 5, what="all subscribed")
        deadline = time.monotonic() + 90
        while gw.metric("framecast_gateway_slow_consumer_closes_total") < 1:
            assert time.monotonic() < deadline, "the stalled reader was never closed"
            for _ in range(10):
                producer.event(pad=4000)
            floor = producer.event_seq
            await poll(lambda floor=floor: all(r.events[-1:] == [floor] for r in readers), what="readers")
        last = producer.event_seq
        drained = await asyncio.to_thread(drain, stalled, idle=10.0, limit=60.0)
        stalled.close()
        assert drained.close_code == wire.CLOSE_SLOW_CONSUMER, drained.describe()
        assert drained.events == list(range(1, len(drained.events) + 1)), "a prefix: never thinned"
        assert len(drained.events) < last
        assert gw.metric("framecast_gateway_dropped_total", {"reason": "conflated"}) == 0
        for reader in readers:
            assert reader.events == list(range(1, last + 1)) and reader.seqs == []
            assert reader.trouble == []
            await reader.ws.close()
        producer.close()


async def test_a_rate_capped_client_through_nginx_gets_at_most_its_cap_and_always_the_newest(
    redis_server: RedisServer,
) -> None:
    rate = 2.0
    with (
        running_gateway(redis_url=redis_server.url, wait="ready") as gw,
        running_nginx([f"127.0.0.1:{gw.port}"]) as lb,
    ):
        producer = FakeProducer(redis_server.url, STREAM)
        producer.result()
        async with (
            connect(f"{lb.ws_url}/ws/{STREAM}?max_rate={rate:g}") as capped,
            connect(f"{lb.ws_url}/ws/{STREAM}") as full,
        ):
            full_reader, capped_reader = Collector(full), Collector(capped)
            await poll(lambda: gw.metric("framecast_gateway_subscriptions") == 2, what="subscribed")
            await poll(lambda: capped_reader.seqs == [1], what="the latest at subscribe")
            started = time.monotonic()
            arrivals: list[float] = []
            seen = 1
            for _ in range(60):  # 20 results/s for 3 s
                producer.result()
                await asyncio.sleep(0.05)
                while len(capped_reader.seqs) > seen:
                    arrivals.append(time.monotonic())
                    seen += 1
            last = producer.seq
            await poll(lambda: capped_reader.seqs[-1:] == [last], what="the newest result")
            ended = time.monotonic()
            await poll(lambda: full_reader.seqs[-1:] == [last], what="the full reader")
            got = capped_reader.seqs
            # Each write is at least 1/rate after the one before, and all of them happened
            # between the subscribe and the last arrival: at most rate x that time + 1.
            assert len(got) - 1 <= rate * (ended - started) + 1, (got, ended - started)
            assert got == sorted(set(got))
            assert full_reader.seqs == list(range(1, last + 1))
            assert len(got) < last / 3, "capped: a fraction of the results"
            full_reader.task.cancel()
            capped_reader.task.cancel()
        producer.close()
