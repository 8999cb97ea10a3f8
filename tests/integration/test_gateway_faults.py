"""Regressions found by the fault suite (issue 12), each against a real gateway, valkey and proxy.

* A Redis link frozen in both directions (TCP up, no byte moving) is found deaf by the canary,
  rebuilt, and its clients told ``gap``: a resuming client then loses nothing.
* A resume while Redis does not answer keeps its position: ``gap history-unavailable`` (never
  ``reset``), and the next resume replays what was missed.
* Results that reach the gateway already older than ``--max-age`` (dropped for everyone) are
  announced with one ``gap stale``; a resume from before them replays them.
* Past every gateway's ``--max-connections`` nginx passes the gateways' 503 on (never its own
  502), and the gateways' descriptors come back once the clients close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from typing import TYPE_CHECKING

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from framecast import client, wire
from tests.support.gateway import FakeProducer, running_gateway
from tests.support.nginx import running_nginx
from tests.support.proxy import running_proxy
from tests.support.wait import poll

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer

ARGS = ["--ready-timeout", "1", "--offline-after", "30", "--unready-close-after", "60"]


class _Publisher:
    """Publishes a result every 50 ms from a thread (straight to valkey, not through the proxy)."""

    def __init__(self, producer: FakeProducer) -> None:
        self.producer = producer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(100_000):
            if self._stop.wait(0.05):
                return
            self.producer.result()

    def __enter__(self) -> _Publisher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


async def test_a_link_frozen_both_ways_is_rebuilt_and_resuming_clients_lose_nothing(
    redis_server: RedisServer,
) -> None:
    producer = FakeProducer(redis_server.url, "cam", maxlen=100_000)
    producer.status(ttl=300)
    seqs: list[int] = []
    notices: list[str] = []

    async def consume() -> None:
        async with client.subscribe(gateway.ws_url + "/ws/cam", open_timeout=20) as messages:
            async for message in messages:
                if isinstance(message, wire.Result):
                    seqs.append(message.seq)
                elif isinstance(message, wire.Gap | wire.Reset):
                    notices.append(f"{message.type}:{message.reason}")

    with (
        running_proxy(redis_server.port) as proxy,
        running_gateway(redis_url=proxy.redis_url, args=ARGS, wait="ready") as gateway,
        _Publisher(producer),
    ):
        reader = asyncio.create_task(consume())
        try:
            await poll(lambda: len(seqs) >= 5, what="live results")
            proxy.freeze()  # TCP stays up: no error, no EOF, no PUBLISH acknowledged
            await poll(
                lambda: "subscription down" in str(gateway.get_json("/readyz")[1]),
                what="the gateway to find its frozen link deaf and tear it down",
            )
            proxy.thaw()
            thawed_at = producer.seq
            await poll(lambda: "gap:redis-reconnected" in notices, what="the gap notice")
            await poll(lambda: seqs and seqs[-1] >= thawed_at + 10, what="live results after the thaw")
            assert gateway.metric("framecast_gateway_redis_reconnects_total") >= 1
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    assert "reset" not in " ".join(notices), notices
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "lost, duplicated or reordered results"


async def _next(ws: ClientConnection, kinds: tuple[type, ...]) -> wire.Message:
    for _ in range(10_000):
        message = wire.decode(await asyncio.wait_for(ws.recv(), 20))
        if isinstance(message, kinds):
            return message
    raise AssertionError(f"no {kinds}")


async def test_a_resume_while_redis_does_not_answer_keeps_its_position(redis_server: RedisServer) -> None:
    producer = FakeProducer(redis_server.url, "cam")
    producer.status(ttl=300)
    for _ in range(5):
        producer.result()
    with (
        running_proxy(redis_server.port) as proxy,
        running_gateway(redis_url=proxy.redis_url, args=ARGS, wait="ready") as gateway,
    ):
        async with connect(gateway.ws_url + "/ws", open_timeout=20) as ws:
            proxy.freeze()
            resume = {"op": "subscribe", "stream": "cam", "since": 2, "epoch": producer.epoch}
            await ws.send(json.dumps(resume))
            assert isinstance(await _next(ws, (wire.Subscribed,)), wire.Subscribed)
            told = await _next(ws, (wire.Gap, wire.Reset, wire.Result))
            assert told == wire.Gap(stream="cam", reason="history-unavailable"), told
            proxy.thaw()
            await poll(lambda: gateway.get("/readyz")[0] == 200, what="the gateway ready again")
            await ws.send(json.dumps(resume))  # what the bundled client does on gap
            await _next(ws, (wire.Subscribed,))
            replayed = [await _next(ws, (wire.Result, wire.Reset)) for _ in range(3)]
    assert [(type(m).__name__, getattr(m, "seq", None)) for m in replayed] == [
        ("Result", 3),
        ("Result", 4),
        ("Result", 5),
    ]


_POOL_SLACK = 3


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_past_every_gateways_limit_nginx_passes_the_503_and_the_fds_come_back(
    redis_server: RedisServer,
) -> None:
    limit, extra = 5, 6
    with (
        running_gateway(
            redis_url=redis_server.url, args=[*ARGS, "--max-connections", str(limit)], wait="ready"
        ) as one,
        running_gateway(
            redis_url=redis_server.url, args=[*ARGS, "--max-connections", str(limit)], wait="ready"
        ) as two,
        running_nginx([f"127.0.0.1:{one.port}", f"127.0.0.1:{two.port}"]) as balancer,
    ):
        before = {gw.pid: _fds(gw.pid) for gw in (one, two)}
        opened: list[ClientConnection] = []
        answers: list[int] = []
        for _ in range(2 * limit + extra):  # one after the other: the outcome cannot depend on timing
            try:
                opened.append(await connect(balancer.ws_url + "/ws/cam", open_timeout=20))
                answers.append(101)
            except InvalidStatus as exc:
                answers.append(exc.response.status_code)
        await asyncio.gather(*(ws.close() for ws in opened))
        await poll(
            # Slack for the Redis command pool, which may keep a connection or two it opened for
            # reads that overlapped a canary; a leak would keep one per handshake (16 here).
            lambda: all(_fds(pid) <= fds + _POOL_SLACK for pid, fds in before.items()),
            what=f"the gateways' fds back to {before} (now {[_fds(pid) for pid in before]})",
        )
    assert answers == [101] * (2 * limit) + [503] * extra, answers


async def test_results_that_arrive_stale_are_announced_once_and_a_resume_fills_them(
    redis_server: RedisServer,
) -> None:
    producer = FakeProducer(redis_server.url, "cam")
    producer.status(ttl=300)
    with running_gateway(redis_url=redis_server.url, args=[*ARGS, "--max-age", "2"], wait="ready") as gateway:
        async with connect(gateway.ws_url + "/ws/cam", open_timeout=20) as ws:
            producer.result()
            assert (await _next(ws, (wire.Result,))).seq == 1  # type: ignore[union-attr]
            for _ in range(3):  # what a thawed link delivers: results captured long ago
                producer.result(captured_at=time.time() - 30)
            producer.result()
            told = [await _next(ws, (wire.Gap, wire.Result)) for _ in range(2)]
            assert told == [wire.Gap(stream="cam", reason="stale"), told[1]], told
            assert isinstance(told[1], wire.Result) and told[1].seq == 5
            await ws.send(
                json.dumps({"op": "subscribe", "stream": "cam", "since": 1, "epoch": producer.epoch})
            )
            await _next(ws, (wire.Subscribed,))
            replayed = [await _next(ws, (wire.Result, wire.Reset)) for _ in range(4)]
    assert [getattr(m, "seq", m) for m in replayed] == [2, 3, 4, 5]
