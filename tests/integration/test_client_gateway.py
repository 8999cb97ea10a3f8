"""The Python client against real gateway processes and a real valkey.

Results are published the way the producer does (XADD to the history, then
PUBLISH), so each test controls exactly which seqs exist and when.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest

from framecast import client, wire
from framecast.client import AuthError, ClientError
from framecast.local.up import running
from tests.support.feed import Feed
from tests.support.gateway import GatewayProc, gateway_env, running_gateway, start_gateway
from tests.support.valkey import RedisServer

SECRET = "client-tests-secret-of-at-least-32-bytes"


def _fast() -> Iterator[float]:
    return itertools.repeat(0.05)


class Collector:
    """Iterates a subscription in a task, keeping every message, so the test can act meanwhile."""

    def __init__(self, subscription: client.Subscription) -> None:
        self.subscription = subscription
        self.messages: list[Any] = []
        self.error: BaseException | None = None
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for message in self.subscription:
                self.messages.append(message)
        except Exception as exc:
            self.error = exc

    def seqs(self) -> list[int]:
        return [m.seq for m in self.messages if isinstance(m, wire.Result)]

    def of(self, kind: type[Any]) -> list[Any]:
        return [m for m in self.messages if isinstance(m, kind)]

    async def wait_for(self, condition: Callable[[], bool], what: str, *, timeout: float = 20.0) -> None:
        """Poll ``condition`` every 20 ms until true (bounded in time and count)."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.02) + 1):
            if condition():
                return
            assert self.error is None, f"subscription failed while waiting for {what}: {self.error!r}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}; got {self.messages[-5:]}"
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.subscription.aclose()
        async with asyncio.timeout(10):
            await self.task


@pytest.fixture
def feed(redis_server: RedisServer) -> Iterator[Feed]:
    feed = Feed(redis_server.url, "cam")
    try:
        yield feed
    finally:
        feed.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_resume_after_gateway_restart_has_no_gap_and_no_duplicate(
    redis_server: RedisServer, feed: Feed, sig: int
) -> None:
    feed.publish(5)  # history from before anyone watched
    gateway = await asyncio.to_thread(start_gateway, redis_url=redis_server.url, wait="ready")
    restarted: GatewayProc | None = None
    collector = Collector(client.subscribe(gateway.url, ["cam"], delays=_fast))
    try:
        # A fresh subscription starts from the latest result, then goes live.
        await collector.wait_for(lambda: collector.seqs() == [5], "the latest result")
        feed.publish(5)
        await collector.wait_for(lambda: collector.seqs()[-1:] == [10], "live results 6-10")

        await asyncio.to_thread(gateway.stop, sig)
        await collector.wait_for(lambda: not collector.subscription.connected, "the disconnect")
        feed.publish(10)  # 11-20 happen while no gateway runs
        restarted = await asyncio.to_thread(
            start_gateway, redis_url=redis_server.url, port=gateway.port, gateway_id="gw-again", wait="ready"
        )
        await collector.wait_for(lambda: collector.seqs()[-1:] == [20], "the replay of 11-20")
        feed.publish(5)
        await collector.wait_for(lambda: collector.seqs()[-1:] == [25], "live results 21-25")
    finally:
        await collector.close()
        await asyncio.to_thread(gateway.stop)
        if restarted is not None:
            await asyncio.to_thread(restarted.stop)

    assert collector.seqs() == list(range(5, 26))
    assert {m.epoch for m in collector.of(wire.Result)} == {feed.epoch}
    assert [h.gateway for h in collector.of(wire.Hello)] == [gateway.id, "gw-again"]
    assert collector.of(wire.Reset) == []
    assert collector.subscription.reconnects == 1
    assert collector.subscription.cursor.position("cam") == client.Position(feed.epoch, 25)
    # What arrived is what was published, field for field.
    assert collector.of(wire.Result)[-1].detections == feed.result(25).detections


async def test_resume_across_a_producer_restart_gets_a_reset_and_the_new_epoch(
    redis_server: RedisServer, feed: Feed
) -> None:
    feed.publish(3)
    with running_gateway(redis_url=redis_server.url, wait="ready") as gateway:
        collector = Collector(client.subscribe(gateway.url, ["cam"], delays=_fast))
        try:
            await collector.wait_for(lambda: collector.seqs() == [3], "the latest result")
            await asyncio.to_thread(gateway.stop, signal.SIGKILL)
            await collector.wait_for(lambda: not collector.subscription.connected, "the disconnect")
            restarted_feed = Feed(redis_server.url, "cam")  # a new producer run: new epoch, seq from 1
            try:
                restarted_feed.publish(2)
                again = await asyncio.to_thread(
                    start_gateway, redis_url=redis_server.url, port=gateway.port, wait="ready"
                )
                try:
                    await collector.wait_for(lambda: collector.seqs()[-1:] == [2], "the new epoch's latest")
                    restarted_feed.publish(1)
                    await collector.wait_for(lambda: collector.seqs()[-1:] == [3], "the new epoch live")
                finally:
                    await asyncio.to_thread(again.stop)
            finally:
                restarted_feed.stop()
        finally:
            await collector.close()
    results = collector.of(wire.Result)
    assert [(r.epoch, r.seq) for r in results] == [
        (feed.epoch, 3),
        (restarted_feed.epoch, 2),
        (restarted_feed.epoch, 3),
    ]
    assert [r.reason for r in collector.of(wire.Reset)] == ["epoch-changed"]


async def test_a_position_beyond_the_streams_newest_is_reset_and_the_client_receives_again(
    redis_server: RedisServer, feed: Feed
) -> None:
    """Known defect (issue 20): a ``since`` past the newest seq of the epoch got no reset, and the
    client dropped every result up to its (corrupt) position as already seen: silence."""
    feed.publish(5)
    ahead = client.Position(feed.epoch, 1_000_000)
    with running_gateway(redis_url=redis_server.url, wait="ready") as gateway:
        collector = Collector(client.subscribe(gateway.url, ["cam"], since={"cam": ahead}, delays=_fast))
        try:
            await collector.wait_for(lambda: collector.seqs() == [5], "the latest result after the reset")
            feed.publish(2)
            await collector.wait_for(lambda: collector.seqs() == [5, 6, 7], "live results")
        finally:
            await collector.close()
    assert [r.reason for r in collector.of(wire.Reset)] == [client.POSITION_AHEAD]
    assert collector.subscription.cursor.position("cam") == client.Position(feed.epoch, 7)


async def test_two_streams_on_one_connection_each_resume_from_their_own_position(
    redis_server: RedisServer,
) -> None:
    feeds = {name: Feed(redis_server.url, name) for name in ("north", "south")}
    try:
        for f in feeds.values():
            f.publish(1)
        with running_gateway(redis_url=redis_server.url, wait="ready") as gateway:
            collector = Collector(client.subscribe(gateway.url, list(feeds), delays=_fast))
            try:

                def last(stream: str) -> int:
                    position = collector.subscription.cursor.position(stream)
                    return position.seq if position else 0

                await collector.wait_for(lambda: last("north") == 1 and last("south") == 1, "both latest")
                feeds["north"].publish(4)
                feeds["south"].publish(2)
                await collector.wait_for(lambda: last("north") == 5 and last("south") == 3, "both live")
            finally:
                await collector.close()
        by_stream = {
            name: [m.seq for m in collector.of(wire.Result) if m.stream == name]
            for name in ("north", "south")
        }
        assert by_stream == {"north": [1, 2, 3, 4, 5], "south": [1, 2, 3]}
        assert sorted(s.stream for s in collector.of(wire.Subscribed)) == ["north", "south"]
    finally:
        for f in feeds.values():
            f.stop()


def _token(streams: list[str] | str, *, secret: str = SECRET) -> str:
    return jwt.encode({"streams": streams, "exp": int(time.time()) + 600}, secret, algorithm="HS256")


async def test_auth_failure_surfaces_as_auth_error_and_a_valid_token_works(
    redis_server: RedisServer, feed: Feed
) -> None:
    feed.publish(2)
    with running_gateway(redis_url=redis_server.url, args=["--jwt-secret", SECRET], wait="ready") as gateway:
        for token in (None, _token("*", secret="not-the-secret-but-also-32-bytes-long")):
            subscription = client.subscribe(gateway.url, ["cam"], token=token, delays=_fast)
            with pytest.raises(AuthError, match="HTTP 401") as caught:
                async with asyncio.timeout(20):
                    await anext(subscription)
            assert caught.value.status == 401
            assert subscription.reconnects == 0

        # A valid token that does not cover the stream: the only stream is refused, which is final.
        refused = client.subscribe(gateway.url, ["cam"], token=_token(["elsewhere"]), delays=_fast)
        with pytest.raises(ClientError, match=r"refused every stream.*forbidden"):
            async with asyncio.timeout(20):
                async for _ in refused:
                    pass

        allowed = client.subscribe(gateway.url, ["cam"], token=_token(["cam"]), delays=_fast)
        async with allowed, asyncio.timeout(20):
            async for message in allowed:
                if isinstance(message, wire.Result):
                    assert (message.stream, message.seq) == ("cam", 2)
                    break


async def test_through_nginx_a_crashed_gateway_is_replaced_without_gap_and_previews_flow() -> None:
    """The real topology: producer -> 2 gateways -> nginx; the serving gateway is SIGKILLed."""
    with running(gateways=2, env=gateway_env()) as stack:
        collector = Collector(client.subscribe(stack.url, ["default"], previews=True, delays=_fast))
        try:
            await collector.wait_for(
                lambda: len(collector.seqs()) >= 5 and bool(collector.of(wire.Preview)),
                "results and previews",
            )
            served_by = collector.subscription.gateway
            assert served_by is not None
            stack.kill(served_by, signal.SIGKILL)
            await collector.wait_for(lambda: collector.subscription.reconnects == 1, "the reconnect")
            after = len(collector.seqs())
            await collector.wait_for(lambda: len(collector.seqs()) >= after + 10, "results after failover")
        finally:
            await collector.close()
    results = collector.of(wire.Result)
    assert len({r.epoch for r in results}) == 1
    seqs = [r.seq for r in results]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # consecutive across the failover
    hellos = [h.gateway for h in collector.of(wire.Hello)]
    assert len(hellos) == 2 and hellos[0] == served_by and hellos[1] != served_by
    previews = collector.of(wire.Preview)
    assert all(p.jpeg.startswith(b"\xff\xd8") and p.epoch == results[0].epoch for p in previews)
    preview_seqs = [p.seq for p in previews]
    assert preview_seqs == sorted(set(preview_seqs))  # de-duplicated and in order
