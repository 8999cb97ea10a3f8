"""Requests websockets cannot parse still get an answer and cannot take gateways out of nginx's rotation."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

import pytest
from websockets.asyncio.client import connect

from framecast import wire
from tests.support.gateway import running_gateway
from tests.support.nginx import running_nginx

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer


def exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes, read the whole answer (the server closes after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        for _ in range(1000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), f"no HTTP response: {answer[:200]!r}"
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx", 413),
        (b"POST /ws/cam HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 413),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", 413),
        (b"GET /healthz HTTP/1.1\r\nHost: a\x00b\r\n\r\n", 400),
        (b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 400),
    ],
    ids=["get-with-body", "post-with-body", "chunked", "nul-in-host", "bad-version"],
)
def test_gateway_answers_requests_websockets_cannot_parse(
    redis_server: RedisServer, request_bytes: bytes, status: int
) -> None:
    with running_gateway(redis_url=redis_server.url) as gw:
        answer = exchange(gw.port, request_bytes)
        assert status_of(answer) == status, answer
        # And it still serves afterwards.
        assert gw.get("/healthz")[0] == 200
        assert "Traceback" not in gw.logs, gw.logs


async def test_requests_with_a_body_do_not_eject_gateways_from_nginx(redis_server: RedisServer) -> None:
    args = ["--ready-timeout", "1"]
    with (
        running_gateway(redis_url=redis_server.url, args=args, wait="ready") as one,
        running_gateway(redis_url=redis_server.url, args=args, wait="ready") as two,
        running_nginx([f"127.0.0.1:{one.port}", f"127.0.0.1:{two.port}"]) as balancer,
    ):
        with_length = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
        chunked = (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"1\r\nx\r\n0\r\n\r\n"
        )
        for request in (with_length, with_length, chunked, chunked):
            # The issue: two of these made nginx mark both gateways failed. nginx now keeps the
            # body to itself, so the gateway answers the GET as if it had none.
            assert status_of(exchange(balancer.port, request)) == 200
        served: set[str] = set()
        for _ in range(20):
            async with connect(balancer.ws_url + "/ws", open_timeout=10) as ws:
                hello = wire.decode(await asyncio.wait_for(ws.recv(), 10))
                assert isinstance(hello, wire.Hello)
                served.add(hello.gateway)
        assert served == {one.id, two.id}, "both gateways stay in the rotation"
        assert "upstream prematurely closed" not in balancer.logs, balancer.logs
