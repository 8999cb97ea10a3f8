"""An unready gateway behind the real nginx: new clients go elsewhere, its clients move and resume."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import TYPE_CHECKING

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from framecast import wire
from tests.support.gateway import FakeProducer, raw_websocket, running_gateway
from tests.support.nginx import running_nginx
from tests.support.proxy import running_proxy
from tests.support.wait import poll

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer

ARGS = ["--ready-timeout", "1", "--offline-after", "30", "--unready-close-after", "3"]
# A closing handshake that lingers over many of the readiness ticks (4 a second).
CLOSE_TIMEOUT = ["--close-timeout", "3"]


async def _next_result(ws: ClientConnection, *, timeout: float = 20.0) -> wire.Result:
    deadline = time.monotonic() + timeout
    for _ in range(10_000):
        message = wire.decode(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        assert not isinstance(message, wire.Reset), message
        if isinstance(message, wire.Result):
            return message
    raise AssertionError("no result")


async def _open(url: str) -> tuple[ClientConnection, str]:
    ws = await connect(url, open_timeout=20, max_queue=None)  # never pause reading: no lag
    hello = wire.decode(await asyncio.wait_for(ws.recv(), 20))
    assert isinstance(hello, wire.Hello)
    return ws, hello.gateway


def _read_until_gone(sock: socket.socket) -> bytes:
    """Read a raw socket until the peer ends it (EOF or reset); what it sent."""
    received = b""
    try:
        for _ in range(100_000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    except ConnectionResetError:
        pass
    return received


async def _read_until_closed(ws: ClientConnection, last: wire.Result) -> tuple[int | None, wire.Result]:
    """Read until the gateway closes: its close code and the last result seen (``last`` if none)."""
    try:
        for _ in range(100_000):
            message = wire.decode(await asyncio.wait_for(ws.recv(), 30))
            if isinstance(message, wire.Result):
                last = message
    except ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd is not None else None), last
    raise AssertionError("never closed")


async def test_a_deaf_gateway_refuses_new_clients_and_moves_its_own_after_the_limit(
    redis_server: RedisServer,
) -> None:
    producer = FakeProducer(redis_server.url, "cam", maxlen=100_000)
    stop = threading.Event()

    def publish() -> None:
        for _ in range(10_000):
            if stop.wait(0.05):
                return
            producer.result()

    with (
        running_proxy(redis_server.port) as proxy,
        running_gateway(redis_url=redis_server.url, args=ARGS, wait="ready") as healthy,
        running_gateway(redis_url=proxy.redis_url, args=[*ARGS, *CLOSE_TIMEOUT], wait="ready") as deaf,
        running_nginx([f"127.0.0.1:{healthy.port}", f"127.0.0.1:{deaf.port}"]) as balancer,
    ):
        producer.status(ttl=300)
        thread = threading.Thread(target=publish)
        thread.start()
        try:
            # Clients on both gateways (least_conn alternates), each live.
            clients = [await _open(balancer.ws_url + "/ws/cam") for _ in range(10)]
            on_deaf = [ws for ws, gw in clients if gw == deaf.id]
            on_healthy = [ws for ws, gw in clients if gw == healthy.id]
            assert on_deaf and on_healthy, [gw for _, gw in clients]
            seen = {ws: await _next_result(ws) for ws, _ in clients}
            # One more on the deaf gateway that never answers a close: it is moved (and counted) once.
            mute, head = raw_websocket(deaf.port, "/ws/cam")
            assert head.startswith(b"HTTP/1.1 101"), head

            proxy.freeze()  # the deaf gateway's Redis link: open, silent
            await poll(lambda: deaf.get("/readyz")[0] == 503, what="the frozen gateway to turn unready")
            status, _ = deaf.get("/ws/cam")
            assert status == 503

            newcomers = [await _open(balancer.ws_url + "/ws/cam") for _ in range(50)]
            assert {gw for _, gw in newcomers} == {healthy.id}, "every new client lands on the ready one"
            for ws, _ in newcomers:
                await ws.close()

            # Past --unready-close-after the deaf gateway closes its clients with 1013 ...
            closed = await asyncio.gather(*(_read_until_closed(ws, seen[ws]) for ws in on_deaf))
            for code, last in closed:
                assert code == wire.CLOSE_TRY_AGAIN_LATER
                # ... and each resumes through the balancer on the ready gateway, without a gap.
                ws, gw = await _open(f"{balancer.ws_url}/ws/cam?since={last.seq}&epoch={last.epoch}")
                assert gw == healthy.id
                resumed = [await _next_result(ws) for _ in range(3)]
                assert [r.seq for r in resumed] == [last.seq + 1, last.seq + 2, last.seq + 3]
                await ws.close()
            # The healthy gateway's own clients were never disturbed.
            for ws in on_healthy:
                first = await _next_result(ws)
                assert (await _next_result(ws)).seq == first.seq + 1
                await ws.close()
            # The mute one's closing handshake outlasted a dozen ticks, then it was aborted.
            mute.settimeout(30)
            received = await asyncio.to_thread(_read_until_gone, mute)
            mute.close()
            assert b"gateway lost redis" in received, "the close frame reached it"
            closed_total = deaf.metric("framecast_gateway_closes_total", {"reason": "unready"})
            assert closed_total == len(on_deaf) + 1, "each connection moved once, however long it closes"
        finally:
            stop.set()
            thread.join(10)
            proxy.thaw()
            producer.close()
