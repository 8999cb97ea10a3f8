"""Hostile handshakes and HTTP against a real gateway and through nginx (issue 12).

Documented answers (docs/protocol.md "Connecting", docs/guarantees.md "Health"): 400 bad stream
name / ``since`` / ``previews``, 404 unknown path or a file outside the static directory, 405 a
method other than GET/HEAD/OPTIONS, 426 a plain GET on ``/ws``. Malformed or oversized requests have no
documented status: they must get a 4xx or a closed connection, never a 5xx (505 for an HTTP
version excepted) nor an upgrade. Every
test then checks the witness client kept receiving in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import urllib.parse
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

from framecast import wire
from tests.hostile._frames import http_exchange, status_of
from tests.hostile.conftest import Bench
from tests.support.gateway import raw_websocket
from tests.support.wait import poll

_UPGRADE = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
_VERSION = "Sec-WebSocket-Version: 13\r\n"


@pytest.fixture(params=["gateway", "nginx"])
def target(request: pytest.FixtureRequest) -> Bench:
    bench: Bench = request.getfixturevalue("open_bench" if request.param == "gateway" else "nginx_bench")
    return bench


def _get(port: int, path: str, *, headers: str = "", method: str = "GET") -> bytes:
    return http_exchange(
        port, f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode("latin-1")
    )


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/ws/-leading-dash", 400),
        ("/ws/" + "a" * 65, 400),
        ("/ws/a%00b", 400),
        ("/ws/a%2Fb", 400),
        ("/ws/%E2%82%AC", 400),
        ("/ws/default?since=abc&epoch=e1", 400),
        ("/ws/default?since=-1&epoch=e1", 400),
        ("/ws/default?since=5", 400),
        ("/ws/default?since=%EF%BC%91%EF%BC%92&epoch=e1", 400),  # fullwidth digits (known defect)
        ("/ws/default?since=" + "9" * 5000 + "&epoch=e1", 400),
        ("/ws/default?previews=maybe", 400),
        ("/wsx", 404),
        ("/no/such/path", 404),
    ],
)
def test_bad_handshakes_get_their_documented_status(target: Bench, path: str, status: int) -> None:
    sock, head = raw_websocket(target.port, path)
    sock.close()
    assert status_of(head) == status, head[:300]
    target.assert_undisturbed()


def test_a_plain_get_on_ws_gets_426_and_a_post_405(target: Bench) -> None:
    assert status_of(_get(target.port, "/ws/default")) == 426
    answer = _get(target.port, "/ws/default", headers=_UPGRADE + _VERSION, method="POST")
    assert status_of(answer) == 405, answer[:300]
    assert status_of(_get(target.port, "/healthz", method="DELETE")) == 405
    target.assert_undisturbed()


def test_nul_in_host_is_a_400(target: Bench) -> None:
    """Known defect (issue 12): a NUL byte in ``Host`` must be refused with 400."""
    for path, extra in (("/healthz", ""), ("/ws/default", _UPGRADE + _VERSION)):
        answer = http_exchange(target.port, f"GET {path} HTTP/1.1\r\nHost: a\x00b\r\n{extra}\r\n".encode())
        assert status_of(answer) == 400, f"{path}: {answer[:300]!r}"
    target.assert_undisturbed()


@pytest.mark.parametrize(
    ("header", "values"),
    [
        ("Origin", ("http://a.com", "http://b.com")),
        ("Host", ("127.0.0.1", "example.com")),
        ("Authorization", ("Bearer a", "Bearer b")),
        ("Sec-WebSocket-Key", ("dGhlIHNhbXBsZSBub25jZQ==", "AAAAAAAAAAAAAAAAAAAAAA==")),
        ("Sec-WebSocket-Version", ("13", "13")),
    ],
)
def test_a_header_that_must_appear_once_sent_twice_is_a_400_on_every_path(
    target: Bench, header: str, values: tuple[str, str]
) -> None:
    """Known defect (issue 20): two ``Origin`` headers got a 500 and a logged traceback, on every path."""
    repeated = "".join(f"{header}: {value}\r\n" for value in values)
    for path, extra in (
        ("/healthz", ""),
        ("/streams", ""),
        ("/", ""),
        ("/ws/default", _UPGRADE + _VERSION),
        ("/ws", _UPGRADE + _VERSION),
    ):
        lines = f"Host: 127.0.0.1\r\n{extra}" if header != "Host" else extra
        lines = "".join(line + "\r\n" for line in lines.split("\r\n") if line and not line.startswith(header))
        answer = http_exchange(target.port, f"GET {path} HTTP/1.1\r\n{lines}{repeated}\r\n".encode())
        assert status_of(answer) == 400, f"{header} twice on {path}: {answer[:300]!r}"
    if target.gateway is not None:
        assert "Traceback" not in target.gateway.logs and "ERROR" not in target.gateway.logs
    target.assert_undisturbed()


@pytest.mark.parametrize(
    "framing",
    [
        "Content-Length: 1\r\n\r\nx",
        "Content-Length: 5\r\n\r\nhello",
        "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    ],
)
def test_a_request_with_a_body_is_answered(target: Bench, framing: str) -> None:
    """Known defect (issue 12): a body on a health check closed the connection instead of answering."""
    answer = http_exchange(target.port, f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}".encode())
    assert status_of(answer) in (200, 400, 405, 413), answer[:300]
    target.assert_undisturbed()


@pytest.mark.parametrize(
    ("name", "request_bytes"),
    [
        ("garbage", b"GARBAGE\r\n\r\n"),
        ("binary junk", bytes(range(256)) + b"\r\n\r\n"),
        ("TLS client hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64),
        ("HTTP/9.9", b"GET /ws/default HTTP/9.9\r\nHost: x\r\n\r\n"),
        (
            "HTTP/1.0 upgrade",
            ("GET /ws/default HTTP/1.0\r\nHost: x\r\n" + _UPGRADE + _VERSION + "\r\n").encode(),
        ),
        (
            "no key",
            b"GET /ws/default HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n",
        ),
        (
            "bad key",
            (
                "GET /ws/default HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: short\r\n" + _VERSION + "\r\n"
            ).encode(),
        ),
        (
            "version 8",
            (
                "GET /ws/default HTTP/1.1\r\nHost: x\r\n" + _UPGRADE + "Sec-WebSocket-Version: 8\r\n\r\n"
            ).encode(),
        ),
        (
            "header without colon",
            ("GET /ws/default HTTP/1.1\r\nHost: x\r\nnonsense\r\n" + _UPGRADE + _VERSION + "\r\n").encode(),
        ),
        (
            "huge header",
            (
                "GET /ws/default HTTP/1.1\r\nHost: x\r\nX-Big: "
                + "a" * 100_000
                + "\r\n"
                + _UPGRADE
                + _VERSION
                + "\r\n"
            ).encode(),
        ),
        (
            "many headers",
            (
                "GET /ws/default HTTP/1.1\r\nHost: x\r\n"
                + "".join(f"X-{i}: {i}\r\n" for i in range(2000))
                + _UPGRADE
                + _VERSION
                + "\r\n"
            ).encode(),
        ),
        (
            "huge URL",
            (
                "GET /ws/default?x="
                + "a" * 100_000
                + " HTTP/1.1\r\nHost: x\r\n"
                + _UPGRADE
                + _VERSION
                + "\r\n"
            ).encode(),
        ),
        ("huge static URL", ("GET /" + "a/" * 40_000 + " HTTP/1.1\r\nHost: x\r\n\r\n").encode()),
    ],
)
def test_malformed_and_oversized_requests_get_a_4xx_or_a_close(
    target: Bench, name: str, request_bytes: bytes
) -> None:
    status = status_of(http_exchange(target.port, request_bytes))
    if target.through_nginx and name in ("header without colon", "HTTP/1.0 upgrade"):
        # nginx drops invalid header lines (ignore_invalid_headers on) and speaks HTTP/1.1 to the
        # gateway: what reaches it is a valid upgrade.
        assert status in (101, 400), f"{name}: answered {status}"
        target.assert_undisturbed()
        return
    # 505 (HTTP Version Not Supported) is the one fitting 5xx: it blames the request, not the server.
    assert status is None or 400 <= status < 500 or status == 505, f"{name}: answered {status}"
    target.assert_undisturbed()


@pytest.mark.parametrize(
    "path",
    [
        "/../../pyproject.toml",
        "/%2e%2e/%2e%2e/pyproject.toml",
        "/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/..%2f..%2fpyproject.toml",
        "/%252e%252e/%252e%252e/pyproject.toml",
        "/..%5c..%5cpyproject.toml",
        "/....//....//pyproject.toml",
        "/static/../../../pyproject.toml",
        "/%c0%ae%c0%ae/%c0%ae%c0%ae/pyproject.toml",
        "/index.html%00.png",
        "//etc/passwd",
        "/%2fetc%2fpasswd",
        "/../server.py",
        "/%2e%2e/server.py",
    ],
)
def test_path_traversal_never_leaves_the_static_directory(target: Bench, path: str) -> None:
    answer = _get(target.port, path)
    status = status_of(answer)
    assert status in (400, 404), f"{path}: {answer[:300]!r}"
    for secret in (b"[project]", b"root:", b"class Gateway"):
        assert secret not in answer, f"{path} leaked a file outside the static directory"
    target.assert_undisturbed()


@contextlib.contextmanager
def _half_open_handshakes(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that start a handshake and never finish it (slowloris)."""
    held: list[socket.socket] = []
    try:
        for i in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(f"GET /ws/default HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-{i}: ".encode())
            held.append(sock)
        yield held
    finally:
        for sock in held:
            sock.close()


async def _receives_a_result(url: str) -> wire.Result:
    async with connect(url, open_timeout=20) as ws:
        for _ in range(100):
            message = wire.decode(await asyncio.wait_for(ws.recv(), 20))
            if isinstance(message, wire.Result):
                return message
    raise AssertionError("no result in the first 100 messages")


async def test_slowloris_does_not_stop_a_new_client(target: Bench) -> None:
    """Hundreds of never-finished handshakes held open: a new client still connects and receives."""
    with _half_open_handshakes(target.port, 300) as held:
        result = await _receives_a_result(f"ws://127.0.0.1:{target.port}/ws/default")
        assert result.stream == "default"
        # The held handshakes are still pending (not refused early), so the new client ran beside them.
        still_open = 0
        for sock in held[-10:]:
            sock.setblocking(False)
            try:
                still_open += sock.recv(1, socket.MSG_PEEK) == b"" and 0
            except BlockingIOError:
                still_open += 1
        assert still_open > 0, "every half-open handshake was already closed"
    await poll(lambda: target.witness.seqs, what="witness")
    target.assert_undisturbed()


def test_stream_names_are_quoted_back_safely(target: Bench) -> None:
    """A hostile name in a 400 body is reflected as text, never as a header (no response splitting)."""
    path = "/ws/" + urllib.parse.quote("x\r\nSet-Cookie: owned=1", safe="")
    sock, head = raw_websocket(target.port, path)
    sock.close()
    assert status_of(head) == 400
    assert b"\r\nset-cookie:" not in head.lower()
    target.assert_undisturbed()


def test_hostile_requests_do_not_take_the_gateways_out_of_nginx(nginx_bench: Bench) -> None:
    """A request a gateway drops unanswered becomes nginx's 502; were that gateway marked failed
    (nginx's default ``max_fails=1``), a few such requests would refuse every new client. After
    them, a new client must still be upgraded at once, without retrying."""
    for _ in range(4):
        http_exchange(nginx_bench.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
        http_exchange(nginx_bench.port, b"GET /healthz HTTP/1.1\r\nHost: a\x00b\r\n\r\n")
    sock, head = raw_websocket(nginx_bench.port, "/ws/default")
    sock.close()
    assert status_of(head) == 101, head[:300]
    nginx_bench.assert_undisturbed()
