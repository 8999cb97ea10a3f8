"""Stalled clients behind the shipped nginx: found, conflated, closed with 4008, and bounded in the balancer.

nginx reads what a gateway writes as fast as it comes and holds it for the client, so a client
that stalls behind it never fills the gateway's own buffer. The gateway's lag probes (a ping
written behind the data, answered only once the client has read up to it) find it anyway; the
template's socket and proxy buffer sizes bound what nginx holds meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from websockets.asyncio.client import connect

from framecast import wire
from framecast.local import nginx
from tests.support.gateway import Collector, FakeProducer, raw_websocket, running_gateway
from tests.support.nginx import running_nginx
from tests.support.sockets import children, drain, queued_bytes, rss_bytes
from tests.support.wait import poll

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer

STREAM = "slow"


async def _readers(url: str, count: int) -> list[Collector]:
    return [
        Collector(await connect(url, open_timeout=20, max_queue=None, max_size=None)) for _ in range(count)
    ]


async def _publish_in_windows(
    producer: FakeProducer, readers: list[Collector], count: int, *, pad: int, window: int = 5
) -> None:
    """Publish ``count`` results, waiting for the readers every ``window``: only a stalled client lags."""
    for _ in range(count):
        producer.result(pad=pad)
        if producer.seq % window == 0:
            floor = producer.seq - window
            await poll(lambda floor=floor: all(r.seqs[-1:] >= [floor] for r in readers), what="readers")


async def test_a_client_stalled_behind_nginx_is_found_by_its_lag_probe_conflated_and_closed_with_4008(
    redis_server: RedisServer,
) -> None:
    # A gateway buffer no stall can fill within the test: only the probe can find the client.
    # (With the template's socket sizes, a fast stream also fills the default 1 MiB soon after
    # nginx's buffers, and then the buffer rule finds it first: both lead to the same 4008.)
    client_buffer = 64 << 20
    with running_gateway(
        redis_url=redis_server.url,
        args=[
            "--client-buffer", str(client_buffer), "--lag-threshold", "2", "--lag-probe-interval", "0.2",
            "--max-lag", "5", "--send-deadline", "0.25", "--max-age", "0", "--close-timeout", "1",
        ],
        wait="ready",
    ) as gw, running_nginx([f"127.0.0.1:{gw.port}"]) as lb:  # fmt: skip
        producer = FakeProducer(redis_server.url, STREAM)
        producer.status(ttl=60)
        readers = await _readers(f"{lb.ws_url}/ws/{STREAM}", 5)
        stalled, head = raw_websocket(lb.port, f"/ws/{STREAM}", rcvbuf=4096)
        assert head.startswith(b"HTTP/1.1 101"), head
        await poll(lambda: gw.metric("framecast_gateway_subscriptions") == 6, what="all subscribed")

        # Results keep coming (paced by the readers) until the gateway gives up on the stalled one.
        buffer_peak = 0.0
        deadline = time.monotonic() + 60
        for _ in range(2000):
            await _publish_in_windows(producer, readers, 10, pad=2000)
            buffer_peak = max(buffer_peak, gw.metric("framecast_gateway_client_buffer_max_bytes"))
            if gw.metric("framecast_gateway_slow_consumer_closes_total") >= 1 or time.monotonic() > deadline:
                break
        assert gw.metric("framecast_gateway_slow_consumer_closes_total") == 1
        # Found by its probe, not by the gateway's own buffer: nginx took everything written.
        assert gw.metric("framecast_gateway_probe_lags_total") == 1
        assert buffer_peak < client_buffer
        assert gw.metric("framecast_gateway_dropped_total", {"reason": "conflated"}) > 0
        newest = producer.seq

        # Once it reads again: what was in flight when it was found, then the 4008 close frame.
        drained = await asyncio.to_thread(drain, stalled, idle=10.0, limit=60.0)
        stalled.close()
        assert drained.close_code == wire.CLOSE_SLOW_CONSUMER, drained.describe()
        assert drained.results == sorted(set(drained.results)), "in order, no duplicate"
        assert len(drained.results) < newest, "conflated: not every result reached it"

        for reader in readers:
            assert reader.seqs == list(range(1, newest + 1)), "every reader got every result, in order"
            await reader.close()
        producer.close()


async def test_200_stalled_clients_through_nginx_stay_under_the_documented_balancer_bound(
    redis_server: RedisServer,
) -> None:
    stalled_count, pad, messages = 200, 16_000, 64  # ~1 MB per client: more than nginx may hold
    # Probes off: the gateway keeps writing (up to its own --client-buffer), so nginx is offered
    # everything and only the template's buffer sizes can bound what it holds.
    with running_gateway(
        redis_url=redis_server.url,
        args=[
            "--client-buffer", str(2 << 20), "--lag-threshold", "0", "--max-lag", "300",
            "--max-age", "0", "--max-connections", "1000",
        ],
        wait="ready",
    ) as gw, running_nginx([f"127.0.0.1:{gw.port}"]) as lb:  # fmt: skip
        nginx_pids = [lb.process.pid, *children(lb.process.pid)]
        producer = FakeProducer(redis_server.url, STREAM)
        producer.status(ttl=120)
        readers = await _readers(f"{lb.ws_url}/ws/{STREAM}", 3)
        await poll(lambda: gw.metric("framecast_gateway_subscriptions") == 3, what="readers subscribed")
        rss_before = rss_bytes(nginx_pids)
        queued_before = sum(queued_bytes(nginx_pids))
        stalled = []
        for _ in range(stalled_count):
            sock, head = raw_websocket(lb.port, f"/ws/{STREAM}", rcvbuf=4096)
            assert head.startswith(b"HTTP/1.1 101"), head
            stalled.append(sock)
        try:
            await poll(
                lambda: gw.metric("framecast_gateway_subscriptions") == stalled_count + 3,
                what="all subscribed",
            )
            await _publish_in_windows(producer, readers, messages, pad=pad)
            size = len(wire.encode(producer.result(pad=pad)))
            # Everything written for the stalled clients is either still at the gateway or has
            # reached nginx: wait until the gateway stopped sending (its queues are steady).
            await poll(lambda: all(r.seqs[-1:] == [producer.seq] for r in readers), what="readers")
            previous: list[int] = []

            def settled() -> bool:
                now = [*queued_bytes(nginx_pids), *queued_bytes([gw.pid])]
                steady = now == previous
                previous[:] = now
                return steady

            await poll(settled, timeout=60, what="the queues to settle")
            held = rss_bytes(nginx_pids) - rss_before + sum(queued_bytes(nginx_pids)) - queued_before
            per_client = nginx.stalled_client_bound() + nginx.CONNECTION_MEMORY
            offered = messages * size  # what the gateway would pass on to each one if nginx took it
            assert held <= stalled_count * per_client < stalled_count * offered / 2, (
                f"nginx holds {held} bytes for {stalled_count} stalled clients "
                f"({held // stalled_count} each, bound {per_client})"
            )
            for reader in readers:
                assert reader.seqs == list(range(1, producer.seq + 1)), "readers lost nothing"
        finally:
            for sock in stalled:
                sock.close()
            for reader in readers:
                await reader.close()
            producer.close()
