"""permessage-deflate: off by default for broadcast traffic, negotiated only when enabled."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import PerMessageDeflate

from framecast import wire
from tests.support.gateway import FakeProducer, running_gateway

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer


async def _first_result(url: str, producer: FakeProducer) -> tuple[list[object], wire.Result]:
    # websockets' client offers permessage-deflate by default, as browsers do.
    async with connect(url, open_timeout=10) as ws:
        extensions = list(ws.protocol.extensions)
        for _ in range(50):
            producer.result()
            message = wire.decode(await asyncio.wait_for(ws.recv(), 10))
            if isinstance(message, wire.Result):
                return extensions, message
    raise AssertionError("no result arrived")


@pytest.mark.parametrize(("args", "deflate"), [([], False), (["--compression", "deflate"], True)])
async def test_deflate_is_negotiated_only_when_enabled(
    args: list[str], deflate: bool, redis_server: RedisServer
) -> None:
    producer = FakeProducer(redis_server.url, "cam")
    with running_gateway(redis_url=redis_server.url, args=args, wait="ready") as gateway:
        extensions, result = await _first_result(f"{gateway.ws_url}/ws/cam", producer)
    assert any(isinstance(e, PerMessageDeflate) for e in extensions) is deflate
    assert result.stream == "cam" and result.epoch == producer.epoch
