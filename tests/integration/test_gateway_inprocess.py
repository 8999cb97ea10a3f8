"""A gateway built in this process (no subprocess), its session driven by a real client.

:class:`gateway.app.Gateway` wires every part; here it runs on this test's event loop against
a real valkey, so the session, the admission, the metrics observer and the fan-out are checked
together where a test can look inside: what the client receives, and what the gateway counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect

from framecast import wire
from gateway.app import Gateway
from gateway.config import GatewayConfig
from tests.support.valkey import RedisServer

STREAM = "cam1"


@contextlib.asynccontextmanager
async def running(config: GatewayConfig) -> AsyncIterator[Gateway]:
    gateway = Gateway(config)
    await gateway.start()
    try:
        for _ in range(500):  # the subscription's first canary: ready within seconds
            if gateway.readiness.reason() is None:
                break
            await asyncio.sleep(0.02)
        assert gateway.readiness.reason() is None, gateway.readiness.reason()
        yield gateway
    finally:
        await gateway.drain()


async def until_type(ws: ClientConnection, kind: type, *, limit: int = 50) -> list[object]:
    """Messages received up to and including the first of ``kind`` (bounded in count and time)."""
    got: list[object] = []
    for _ in range(limit):
        got.append(wire.decode(await asyncio.wait_for(ws.recv(), 10)))
        if isinstance(got[-1], kind):
            return got
    raise AssertionError(f"no {kind.__name__} in {got}")


async def test_a_session_subscribes_receives_live_results_and_leaves(redis_server: RedisServer) -> None:
    config = GatewayConfig(port=0, redis_url=redis_server.url, id="inproc", offline_after=30.0)
    publisher = aioredis.Redis.from_url(redis_server.url)
    try:
        async with running(config) as gateway, connect(f"ws://127.0.0.1:{gateway.port}/ws/{STREAM}") as ws:
            opening = await until_type(ws, wire.Status)
            assert isinstance(opening[0], wire.Hello) and opening[0].gateway == "inproc"
            assert opening[1] == wire.Subscribed(stream=STREAM, previews=False)
            assert isinstance(opening[-1], wire.Status) and opening[-1].state == "offline", "no heartbeat yet"
            assert gateway.fanout.clients(STREAM) == 1
            now = time.time()
            result = wire.Result(
                stream=STREAM,
                epoch="e1",
                seq=1,
                frame=1,
                captured_at=now,
                published_at=now,
                width=4,
                height=4,
            )
            await publisher.publish(wire.channel(STREAM), wire.encode(result))
            assert await until_type(ws, wire.Result) == [result]
            # Counted by the fan-out's observer, the gateway's metrics: one delivery, no drop.
            assert gateway.metrics.deliveries == 1 and not any(gateway.metrics.drops.values())
            await ws.send(wire.encode(wire.Unsubscribe(stream=STREAM)))
            assert await until_type(ws, wire.Unsubscribed) == [wire.Unsubscribed(stream=STREAM)]
            assert gateway.fanout.clients(STREAM) == 0
            await ws.send('{"op": "nonsense"}')
            refused = await until_type(ws, wire.Error)
            assert isinstance(refused[-1], wire.Error) and refused[-1].code == "unknown-op"
        # The connection ended: the session is gone from the fan-out, the handshake counted.
        for _ in range(200):
            if gateway.server.connections == 0:
                break
            await asyncio.sleep(0.01)
        assert gateway.server.connections == 0 and gateway.fanout.clients() == 0
        metrics = gateway.metrics.render().decode()
        assert 'framecast_gateway_handshakes_total{outcome="accepted"} 1.0' in metrics
        assert 'framecast_gateway_client_errors_total{code="unknown-op"} 1.0' in metrics
        assert "framecast_gateway_deliveries_total 1.0" in metrics
    finally:
        await publisher.aclose()


async def test_admission_refuses_in_process_with_the_answer_it_chose(redis_server: RedisServer) -> None:
    config = GatewayConfig(port=0, redis_url=redis_server.url, max_connections=1)
    async with running(config) as gateway, connect(f"ws://127.0.0.1:{gateway.port}/ws/{STREAM}") as first:
        await until_type(first, wire.Status)
        try:
            async with connect(f"ws://127.0.0.1:{gateway.port}/ws/{STREAM}"):
                raise AssertionError("a second connection was accepted past --max-connections 1")
        except Exception as exc:  # websockets' InvalidStatus carries the refusal
            response = getattr(exc, "response", None)
            assert response is not None and response.status_code == 503, exc
            assert b"gateway full (1 connections)" in response.body
        metrics = gateway.metrics.render().decode()
        assert 'framecast_gateway_handshakes_total{outcome="503"} 1.0' in metrics
