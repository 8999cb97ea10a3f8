"""Hostile client input against a real gateway: answered with bad-message, the connection stays open."""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import ClientConnection, connect

from framecast import wire
from tests.support.gateway import running_gateway
from tests.support.valkey import RedisServer


async def _recv(ws: ClientConnection) -> wire.TextMessage:
    data = await asyncio.wait_for(ws.recv(), 10)
    assert isinstance(data, str)
    return wire.decode(data)


async def test_deep_nesting_and_a_missing_op_get_bad_message_and_the_connection_stays_open(
    redis_server: RedisServer,
) -> None:
    with running_gateway(redis_url=redis_server.url, wait="ready") as gw:
        async with connect(f"{gw.ws_url}/ws", open_timeout=10) as ws:
            assert isinstance(await _recv(ws), wire.Hello)
            replies = []
            # 4000 bytes: under the default --max-message-size of 4096.
            for text in ("[" * 4000, '{"stream": "cam"}'):
                await ws.send(text)
                replies.append(await _recv(ws))
            assert [(type(r), getattr(r, "code", None)) for r in replies] == [
                (wire.Error, "bad-message"),
                (wire.Error, "bad-message"),
            ], replies
            # Still open and served: a valid subscription is answered on the same connection.
            await ws.send(wire.encode(wire.Subscribe(stream="cam")).decode())
            assert await _recv(ws) == wire.Subscribed(stream="cam")
        assert gw.alive()
        # Every reply above came after the gateway handled the bad input: nothing was logged as a crash.
        assert "Traceback" not in gw.logs and "RecursionError" not in gw.logs
