"""Access control and hostile input against a real gateway: each refusal leaves other clients untouched."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from framecast import wire
from framecast.local.embedded import free_port
from tests.support.gateway import FakeProducer, GatewayProc, raw_websocket, running_gateway
from tests.support.valkey import spawn_valkey

SECRET = "test-secret-that-is-long-enough-for-hs256"
ORIGIN = "https://viewer.example"


def token(streams: object = "*", *, ttl: float = 60.0, secret: str = SECRET) -> str:
    return jwt.encode(
        {"streams": streams, "exp": int(time.time() + ttl), "sub": "tester"}, secret, algorithm="HS256"
    )


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="framecast-valkey-") as workdir:
        port = free_port()
        process = spawn_valkey(port, workdir)
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


@pytest.fixture(scope="module")
def gw(redis_url: str) -> Iterator[GatewayProc]:
    with running_gateway(
        redis_url=redis_url,
        args=["--origins", ORIGIN, "--max-message-size", "1024", "--offline-after", "30"],
        env={"FRAMECAST_JWT_SECRET": SECRET},
        wait="ready",
    ) as gateway:
        yield gateway


async def status_of(url: str, **kwargs: object) -> int:
    """The HTTP status a handshake is refused with (101 if accepted)."""
    try:
        ws = await connect(url, open_timeout=10, **kwargs)  # type: ignore[arg-type]
    except InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return 101


async def recv(ws: ClientConnection) -> wire.TextMessage:
    data = await asyncio.wait_for(ws.recv(), 10)
    assert isinstance(data, str), "gateway messages are text frames"
    return wire.decode(data)


async def until_type(ws: ClientConnection, kind: type, *, limit: int = 50) -> wire.TextMessage:
    for _ in range(limit):
        message = await recv(ws)
        if isinstance(message, kind):
            return message
    raise AssertionError(f"no {kind.__name__} in {limit} messages")


async def bystander(gw: GatewayProc, stream: str) -> ClientConnection:
    ws = await connect(f"{gw.ws_url}/ws/{stream}?token={token()}")
    await until_type(ws, wire.Subscribed)
    return ws


async def still_served(ws: ClientConnection, producer: FakeProducer) -> None:
    """The bystander is open and gets the next result."""
    sent = producer.result()
    for _ in range(50):
        message = await recv(ws)
        if isinstance(message, wire.Result) and message.seq == sent.seq:
            return
    raise AssertionError("the bystander stopped receiving")


# ---------------------------------------------------------------------------
# Auth


async def test_tokens_are_checked_at_the_handshake(gw: GatewayProc) -> None:
    base = f"{gw.ws_url}/ws/lab"
    assert await status_of(base) == 401
    assert await status_of(f"{base}?token=not-a-jwt") == 401
    assert await status_of(f"{base}?token={token(secret='wrong-secret-wrong-secret-wrong-secret')}") == 401
    assert await status_of(f"{base}?token={token(ttl=-30)}") == 401
    assert await status_of(f"{base}?token={token(['lab'])}") == 101
    assert await status_of(f"{base}?token={token(['other'])}") == 403
    assert await status_of(f"{base}?token={token([])}") == 403
    assert await status_of(base, additional_headers={"Authorization": f"Bearer {token(['lab'])}"}) == 101
    assert await status_of(f"{gw.ws_url}/ws?token={token([])}") == 101, "/ws itself needs only a valid token"
    # A plain string is not a list of streams: refused, not read as ["lab"] (issue 12 #8).
    assert await status_of(f"{base}?token={token('lab')}") == 401


async def test_rs256_tokens_are_checked_with_the_public_key(redis_url: str, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = tmp_path / "jwt.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    def rs256(signer: rsa.RSAPrivateKey, streams: object) -> str:
        claims = {"streams": streams, "exp": int(time.time() + 60)}
        return jwt.encode(claims, signer, algorithm="RS256")

    with running_gateway(
        redis_url=redis_url, args=["--jwt-public-key", str(public)], wait="ready"
    ) as gateway:
        base = f"{gateway.ws_url}/ws/lab"
        assert await status_of(f"{base}?token={rs256(key, ['lab'])}") == 101
        assert await status_of(f"{base}?token={rs256(key, ['other'])}") == 403
        assert await status_of(f"{base}?token={rs256(other, ['lab'])}") == 401
        # An HS256 token must not pass as "signed" by a public key.
        assert await status_of(f"{base}?token={token(['lab'])}") == 401


async def test_subscribe_op_for_a_forbidden_stream_is_refused(gw: GatewayProc) -> None:
    ws = await connect(f"{gw.ws_url}/ws?token={token(['lab'])}")
    assert isinstance(await recv(ws), wire.Hello)
    await ws.send(wire.encode(wire.Subscribe(stream="secret")).decode())
    error = await recv(ws)
    assert isinstance(error, wire.Error) and error.code == "forbidden" and error.stream == "secret"
    await ws.send(wire.encode(wire.Subscribe(stream="lab")).decode())
    assert await until_type(ws, wire.Subscribed) == wire.Subscribed(stream="lab")
    await ws.close()


async def test_connection_is_closed_with_4001_when_its_token_expires(gw: GatewayProc) -> None:
    ws = await connect(f"{gw.ws_url}/ws/lab?token={token(ttl=2)}")
    with pytest.raises(ConnectionClosed):
        for _ in range(100):
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 4001 and ws.close_reason == "token expired"


async def test_origin_allowlist(gw: GatewayProc) -> None:
    url = f"{gw.ws_url}/ws/lab?token={token()}"
    assert await status_of(url, origin=ORIGIN) == 101
    assert await status_of(url, origin="https://evil.example") == 403
    assert await status_of(url) == 101, "non-browser clients send no Origin"


def test_open_gateway_warns_loudly(redis_url: str) -> None:
    with running_gateway(redis_url=redis_url) as open_gw:
        assert "WARNING" in open_gw.logs and "OPEN" in open_gw.logs


# ---------------------------------------------------------------------------
# Bad input: each one handled, the bystander undisturbed


async def test_malformed_and_unknown_ops_get_errors_then_1008(gw: GatewayProc, redis_url: str) -> None:
    producer = FakeProducer(redis_url, "bystand1")
    watcher = await bystander(gw, "bystand1")
    ws = await connect(f"{gw.ws_url}/ws?token={token()}")
    assert isinstance(await recv(ws), wire.Hello)
    replies = []
    for text in (
        "not json",
        '{"op":"subscribe"}',
        '{"op":"dance","stream":"a"}',
        '{"op":"subscribe","stream":"../x"}',
    ):
        await ws.send(text)
        replies.append(await recv(ws))
    assert [r.code for r in replies if isinstance(r, wire.Error)] == [
        "bad-message",
        "bad-message",
        "unknown-op",
        "bad-stream",
    ]
    # A valid op resets the count: the connection is still fine.
    await ws.send(wire.encode(wire.Subscribe(stream="bystand1")).decode())
    await until_type(ws, wire.Subscribed)
    for _ in range(5):
        await ws.send('{"op":"dance"}')
    with pytest.raises(ConnectionClosed):
        for _ in range(100):
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == wire.CLOSE_BAD_REQUEST
    await still_served(watcher, producer)
    await watcher.close()


async def test_invalid_utf8_closes_1007_and_too_big_closes_1009(gw: GatewayProc, redis_url: str) -> None:
    producer = FakeProducer(redis_url, "bystand2")
    watcher = await bystander(gw, "bystand2")

    ws = await connect(f"{gw.ws_url}/ws?token={token()}")
    assert isinstance(await recv(ws), wire.Hello)
    await ws.send(b'{"op":"subscribe","stream":"\xff\xfe"}', text=True)  # a text frame that is not UTF-8
    with pytest.raises(ConnectionClosed):
        for _ in range(100):
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1007

    ws = await connect(f"{gw.ws_url}/ws?token={token()}")
    assert isinstance(await recv(ws), wire.Hello)
    await ws.send("x" * 5000)
    with pytest.raises(ConnectionClosed):
        for _ in range(100):
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1009

    await still_served(watcher, producer)
    await watcher.close()


async def test_bad_handshakes_get_http_errors(gw: GatewayProc) -> None:
    assert await status_of(f"{gw.ws_url}/ws/bad..name!?token={token()}") == 400
    assert await status_of(f"{gw.ws_url}/ws/lab?since=x&epoch=e&token={token()}") == 400
    assert await status_of(f"{gw.ws_url}/ws/lab?since=3&token={token()}") == 400, "since needs epoch"
    # ASCII digits only (int() would take fullwidth digits, signs, spaces and underscores).
    for since in ("%EF%BC%93", "+3", "%203", "1_0", "-1"):
        assert await status_of(f"{gw.ws_url}/ws/lab?since={since}&epoch=e&token={token()}") == 400, since
    assert await status_of(f"{gw.ws_url}/ws/lab?since=3&epoch=e&token={token()}") == 101
    sock, head = raw_websocket(gw.port, "/ws/lab")
    sock.close()
    assert head.startswith(b"HTTP/1.1 401")


async def test_too_many_streams_per_connection(gw: GatewayProc) -> None:
    ws = await connect(f"{gw.ws_url}/ws?token={token()}")
    assert isinstance(await recv(ws), wire.Hello)
    for index in range(16):
        await ws.send(wire.encode(wire.Subscribe(stream=f"s{index}")).decode())
        await until_type(ws, wire.Subscribed)
    await ws.send(wire.encode(wire.Subscribe(stream="one-too-many")).decode())
    error = await until_type(ws, wire.Error)
    assert isinstance(error, wire.Error) and error.code == "too-many-streams"
    await ws.close()


async def test_connections_over_the_limit_get_503(redis_url: str) -> None:
    with running_gateway(redis_url=redis_url, args=["--max-connections", "3"], wait="ready") as small:
        producer = FakeProducer(redis_url, "full")
        held = [await connect(f"{small.ws_url}/ws/full") for _ in range(3)]
        for ws in held:
            await until_type(ws, wire.Subscribed)
        assert await status_of(f"{small.ws_url}/ws/full") == 503
        await still_served(held[0], producer)
        await held[1].close()
        for _ in range(100):  # bounded: the slot frees once the gateway saw the close
            if await status_of(f"{small.ws_url}/ws/full") == 101:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("a freed slot was never reused")
        for ws in held:
            await ws.close()
        producer.close()


def test_streams_list_needs_a_token_and_shows_only_allowed_streams(gw: GatewayProc, redis_url: str) -> None:
    for name in ("lab", "vault"):
        FakeProducer(redis_url, name).status(ttl=30)
    assert gw.get("/streams")[0] == 401
    status, body = gw.get(f"/streams?token={token(['lab'])}")
    assert status == 200 and [s["stream"] for s in json.loads(body)] == ["lab"]
    status, body = gw.get("/streams", headers={"Authorization": f"Bearer {token('*')}"})
    assert status == 200 and {"lab", "vault"} <= {s["stream"] for s in json.loads(body)}
    assert gw.get("/healthz")[0] == 200 and gw.get("/readyz")[0] == 200, "probes need no token"
