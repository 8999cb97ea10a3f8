"""The Python client's reaction to a gateway's close codes, against real gateways behind a real nginx.

A gateway going away (1001) or one that lost Redis (1013) must not cost the client a backoff:
it reconnects at once and the balancer hands it to the other gateway. The backoff here is an
hour long, so only the immediate path can reconnect before the test's bounded waits end.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING

from framecast import client, wire
from tests.support.feed import Feed
from tests.support.gateway import running_gateway
from tests.support.nginx import running_nginx
from tests.support.proxy import running_proxy
from tests.support.wait import poll

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer

_HOUR = 3600.0
_ARGS = ["--ready-timeout", "1", "--offline-after", "30", "--unready-close-after", "1"]


def _an_hour() -> Iterator[float]:
    return itertools.repeat(_HOUR)


class _Watcher:
    """Iterates a subscription in a task, keeping messages and every on_disconnect call."""

    def __init__(self, url: str) -> None:
        self.disconnects: list[tuple[str, float]] = []
        self.messages: list[client.Message] = []
        self.subscription = client.subscribe(
            url,
            ["cam"],
            delays=_an_hour,
            on_disconnect=lambda reason, delay: self.disconnects.append((reason, delay)),
        )
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for message in self.subscription:
            self.messages.append(message)

    def gateways(self) -> list[str]:
        return [m.gateway for m in self.messages if isinstance(m, wire.Hello)]

    def results(self) -> list[int]:
        return [m.seq for m in self.messages if isinstance(m, wire.Result)]

    async def close(self) -> None:
        await self.subscription.aclose()
        async with asyncio.timeout(10):
            await self.task


async def test_a_gateway_going_away_1001_is_left_at_once_for_the_other(redis_server: RedisServer) -> None:
    feed = Feed(redis_server.url, "cam")
    try:
        with (
            running_gateway(redis_url=redis_server.url, wait="ready") as first,
            running_gateway(redis_url=redis_server.url, wait="ready") as second,
            running_nginx([f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"]) as balancer,
        ):
            feed.publish(1)
            watcher = _Watcher(balancer.url)
            try:
                await poll(lambda: watcher.results() == [1], what="the first result")
                serving = {first.id: first, second.id: second}[watcher.gateways()[0]]
                await asyncio.to_thread(serving.stop, signal.SIGTERM)
                await poll(lambda: len(watcher.gateways()) == 2, what="a reconnect to the other gateway")
                feed.publish(1)
                await poll(lambda: watcher.results() == [1, 2], what="the next result, live")
            finally:
                await watcher.close()
    finally:
        feed.stop()
    reason, delay = watcher.disconnects[0]
    assert f"({wire.CLOSE_GOING_AWAY}" in reason, reason
    assert delay == 0.0
    assert watcher.gateways()[1] != watcher.gateways()[0]
    assert watcher.subscription.reconnects == 1


async def test_a_gateway_that_lost_redis_1013_is_left_at_once_for_a_ready_one(
    redis_server: RedisServer,
) -> None:
    feed = Feed(redis_server.url, "cam")
    try:
        with (
            running_proxy(redis_server.port) as proxy,
            running_gateway(redis_url=proxy.redis_url, args=_ARGS, wait="ready") as deaf,
            running_gateway(redis_url=redis_server.url, args=_ARGS, wait="ready") as healthy,
            running_nginx([f"127.0.0.1:{deaf.port}", f"127.0.0.1:{healthy.port}"]) as balancer,
        ):
            feed.publish(1)
            # least_conn sends the second client to the gateway the first one is not on.
            watchers = [_Watcher(balancer.url)]
            try:
                await poll(lambda: watchers[0].results() == [1], what="the first client's first result")
                watchers.append(_Watcher(balancer.url))
                await poll(lambda: watchers[1].results() == [1], what="the second client's first result")
                on = {w.gateways()[0]: w for w in watchers}
                assert set(on) == {deaf.id, healthy.id}, on
                watcher, bystander = on[deaf.id], on[healthy.id]
                proxy.freeze()
                try:
                    await poll(lambda: len(watcher.gateways()) == 2, what="a reconnect to a ready gateway")
                finally:
                    proxy.thaw()
                feed.publish(1)
                await poll(lambda: watcher.results() == [1, 2], what="the next result, live")
                await poll(lambda: bystander.results() == [1, 2], what="the bystander's next result")
            finally:
                for each in watchers:
                    await each.close()
    finally:
        feed.stop()
    assert bystander.disconnects == []
    reason, delay = watcher.disconnects[0]
    assert f"({wire.CLOSE_TRY_AGAIN_LATER}" in reason, reason
    assert delay == 0.0
    assert watcher.gateways() == [deaf.id, healthy.id]
