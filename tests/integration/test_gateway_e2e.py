"""A real gateway process between a real valkey and real WebSocket clients: the basics and the failures."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from framecast import wire
from framecast.local.embedded import free_port
from tests.support.gateway import (
    FakeProducer,
    GatewayProc,
    gateway_env,
    limit_open_files,
    running_gateway,
    start_gateway,
)
from tests.support.proxy import running_proxy
from tests.support.valkey import spawn_valkey
from tests.support.wait import poll

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer

Message = wire.TextMessage | bytes


@pytest.fixture
def gw(redis_server: RedisServer) -> Iterator[GatewayProc]:
    with running_gateway(
        redis_url=redis_server.url,
        args=["--ready-timeout", "1", "--offline-after", "1", "--health-check-interval", "1"],
        wait="ready",
    ) as gateway:
        yield gateway


async def recv(ws: ClientConnection, *, timeout: float = 10.0) -> Message:
    data = await asyncio.wait_for(ws.recv(), timeout)
    return data if isinstance(data, bytes) else wire.decode(data)


async def recv_until(
    ws: ClientConnection, predicate: Callable[[Message], bool], *, timeout: float = 15.0, limit: int = 10_000
) -> list[Message]:
    """Receive until a message matches; returns everything received, the match last."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    for _ in range(limit):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no matching message within {timeout} s; got {got[-5:]}"
        message = await recv(ws, timeout=remaining)
        got.append(message)
        if predicate(message):
            return got
    raise AssertionError(f"no matching message in {limit}")


def results(messages: list[Message]) -> list[int]:
    return [m.seq for m in messages if isinstance(m, wire.Result)]


async def open_stream(gw: GatewayProc, path: str, **kwargs: Any) -> tuple[ClientConnection, list[Message]]:
    """Connect, check hello, read through 'subscribed' (path /ws/<stream>)."""
    ws = await connect(gw.ws_url + path, open_timeout=10, **kwargs)
    hello = await recv(ws)
    assert isinstance(hello, wire.Hello) and hello.gateway == gw.id
    first = await recv_until(ws, lambda m: isinstance(m, wire.Subscribed))
    return ws, first


# ---------------------------------------------------------------------------
# Basics


async def test_single_stream_path_gets_hello_latest_and_live_in_order(
    gw: GatewayProc, redis_server: RedisServer
) -> None:
    producer = FakeProducer(redis_server.url, "cam1")
    for _ in range(3):
        producer.result()
    producer.status()
    ws = await connect(gw.ws_url + "/ws/cam1")
    assert ws.response is not None and ws.response.headers["X-Framecast-Gateway"] == gw.id
    assert await recv(ws) == wire.Hello(gateway=gw.id)
    assert await recv(ws) == wire.Subscribed(stream="cam1")
    latest = await recv(ws)
    assert isinstance(latest, wire.Result) and latest.seq == 3, "the latest result comes first"
    status = await recv(ws)
    assert isinstance(status, wire.Status) and status.state == "online"
    for _ in range(20):
        producer.result()
    got = await recv_until(ws, lambda m: isinstance(m, wire.Result) and m.seq == 23)
    assert results(got) == list(range(4, 24))
    await ws.close()
    producer.close()


async def test_multiplexed_connection_subscribes_and_unsubscribes(
    gw: GatewayProc, redis_server: RedisServer
) -> None:
    a, b = FakeProducer(redis_server.url, "a"), FakeProducer(redis_server.url, "b")
    ws = await connect(gw.ws_url + "/ws")
    assert isinstance(await recv(ws), wire.Hello)
    for name in ("a", "b"):
        await ws.send(wire.encode(wire.Subscribe(stream=name)))
        await recv_until(ws, lambda m, name=name: m == wire.Subscribed(stream=name))
    a.result()
    b.result()
    seen: set[str] = set()

    def both(m: Message) -> bool:
        if isinstance(m, wire.Result):
            seen.add(m.stream)
        return seen == {"a", "b"}

    await recv_until(ws, both)
    await ws.send(wire.encode(wire.Unsubscribe(stream="a")))
    await recv_until(ws, lambda m: m == wire.Unsubscribed(stream="a"))
    a.result()
    b.result()
    got = await recv_until(ws, lambda m: isinstance(m, wire.Result) and m.stream == "b" and m.seq == 2)
    assert not any(isinstance(m, wire.Result) and m.stream == "a" for m in got), (
        "no messages after unsubscribe"
    )
    await ws.close()


async def test_previews_only_when_asked(gw: GatewayProc, redis_server: RedisServer) -> None:
    producer = FakeProducer(redis_server.url, "cam1")
    producer.status()
    plain, _ = await open_stream(gw, "/ws/cam1")
    viewer, _ = await open_stream(gw, "/ws/cam1?previews=1")
    producer.result()
    sent = producer.preview()
    producer.result()
    got = await recv_until(viewer, lambda m: isinstance(m, wire.Result) and m.seq == 2)
    assert sent in got
    got = await recv_until(plain, lambda m: isinstance(m, wire.Result) and m.seq == 2)
    assert not any(isinstance(m, bytes) for m in got)
    await plain.close()
    await viewer.close()


async def test_resume_after_disconnect_has_no_gap_and_no_duplicate(
    gw: GatewayProc, redis_server: RedisServer
) -> None:
    producer = FakeProducer(redis_server.url, "cam1")
    producer.status()
    ws, _ = await open_stream(gw, "/ws/cam1")
    for _ in range(5):
        producer.result()
    seen = results(await recv_until(ws, lambda m: isinstance(m, wire.Result) and m.seq == 5))
    assert seen[-1] == 5
    await ws.close()
    for _ in range(5):
        producer.result()  # missed while away: 6..10

    # Keep publishing while the client resumes, so replay and live race.
    stop = threading.Event()
    publisher = FakeProducer(redis_server.url, "cam1")
    publisher.epoch, publisher.epoch_ms, publisher.seq = producer.epoch, producer.epoch_ms, producer.seq

    def publish() -> None:
        for _ in range(50):
            if stop.is_set():
                return
            publisher.result()
            time.sleep(0.002)

    thread = threading.Thread(target=publish)
    thread.start()
    try:
        ws, _ = await open_stream(gw, f"/ws/cam1?since=5&epoch={producer.epoch}")
        got = await recv_until(ws, lambda m: isinstance(m, wire.Result) and m.seq == 60, timeout=30)
    finally:
        stop.set()
        thread.join(10)
    assert results(got) == list(range(6, 61)), "every missed and live result exactly once, in order"
    assert not any(isinstance(m, wire.Reset) for m in got)
    await ws.close()


async def test_resume_from_another_epoch_or_trimmed_history_gets_reset_and_latest(
    gw: GatewayProc, redis_server: RedisServer
) -> None:
    producer = FakeProducer(redis_server.url, "cam1", maxlen=5)
    producer.status()
    old_epoch = producer.epoch
    producer.restart()
    for _ in range(3):
        producer.result()
    ws, _ = await open_stream(gw, f"/ws/cam1?since=7&epoch={old_epoch}")
    assert await recv(ws) == wire.Reset(stream="cam1", reason="epoch-changed")
    latest = await recv(ws)
    assert isinstance(latest, wire.Result) and (latest.epoch, latest.seq) == (producer.epoch, 3)
    await ws.close()

    redis.Redis.from_url(redis_server.url).xtrim(
        wire.history_key("cam1"), maxlen=2, approximate=False
    )  # keep seq 2..3
    ws, _ = await open_stream(gw, f"/ws/cam1?since=0&epoch={producer.epoch}")
    assert await recv(ws) == wire.Reset(stream="cam1", reason="history-expired")
    latest = await recv(ws)
    assert isinstance(latest, wire.Result) and latest.seq == 3
    await ws.close()

    ws, _ = await open_stream(gw, "/ws/nohistory?since=3&epoch=abc")
    assert await recv(ws) == wire.Reset(stream="nohistory", reason="no-history")
    await ws.close()


# ---------------------------------------------------------------------------
# Producer silence, Redis trouble


@pytest.fixture
def patient_gw(redis_server: RedisServer) -> Iterator[GatewayProc]:
    """A gateway whose readiness reflects Redis only, not a loaded machine's scheduling.

    ``gw``'s ``--ready-timeout 1`` makes a canary starved for a second on a busy machine turn
    ``/readyz`` 503 (it did once at load 7): right for the gateway, wrong for a test that asserts
    that a stream without a producer leaves the gateway ready.
    """
    with running_gateway(
        redis_url=redis_server.url,
        args=["--ready-timeout", "60", "--offline-after", "1", "--health-check-interval", "1"],
        wait="ready",
    ) as gateway:
        yield gateway


async def test_stream_without_producer_is_offline_and_gateway_stays_ready(
    patient_gw: GatewayProc, redis_server: RedisServer
) -> None:
    gw = patient_gw
    ws, _ = await open_stream(gw, "/ws/nobody")
    status = await recv(ws)
    assert isinstance(status, wire.Status) and status.state == "offline"
    assert gw.get("/readyz")[0] == 200

    # A producer that was alive and stops: the gateway says so once its heartbeat is overdue.
    producer = FakeProducer(redis_server.url, "cam1")
    producer.status()
    live, _ = await open_stream(gw, "/ws/cam1")
    for _ in range(3):
        producer.status()
        producer.result()
        await asyncio.sleep(0.1)
    got = await recv_until(live, lambda m: isinstance(m, wire.Status) and m.state == "offline")
    offline = got[-1]
    assert isinstance(offline, wire.Status)
    assert (offline.epoch, offline.seq) == (producer.epoch, 3), "the last known epoch and seq"
    assert gw.get("/readyz")[0] == 200
    status_code, streams = gw.get_json("/streams")
    assert status_code == 200 and isinstance(streams, list)
    assert [s["stream"] for s in streams] == ["cam1"]  # its status key has not expired yet
    await ws.close()
    await live.close()


async def test_redis_restart_resumes_delivery_and_tells_clients_about_the_gap(
    gw: GatewayProc, redis_server: RedisServer
) -> None:
    producer = FakeProducer(redis_server.url, "cam1")
    producer.status()
    ws, _ = await open_stream(gw, "/ws/cam1")
    producer.result()
    await recv_until(ws, lambda m: isinstance(m, wire.Result))
    producer.close()

    redis_server.stop()
    await poll(lambda: gw.get("/readyz")[0] == 503, what="/readyz to fail while Redis is down")
    _, body = gw.get_json("/readyz")
    assert isinstance(body, dict) and "redis" in str(body["reason"])
    assert gw.get("/healthz")[0] == 200, "alive while Redis is down"

    redis_server.restart()
    gap = await recv_until(ws, lambda m: isinstance(m, wire.Gap), timeout=30)
    assert gap[-1] == wire.Gap(stream="cam1", reason="redis-reconnected")
    await poll(lambda: gw.get("/readyz")[0] == 200, what="/readyz to recover")
    producer = FakeProducer(redis_server.url, "cam1")
    producer.result()
    got = await recv_until(ws, lambda m: isinstance(m, wire.Result))
    assert isinstance(got[-1], wire.Result) and got[-1].epoch == producer.epoch
    assert gw.metric("framecast_gateway_redis_reconnects_total") >= 1
    await ws.close()
    producer.close()


async def test_after_a_redis_restart_history_reads_retry_on_a_fresh_connection(
    gw: GatewayProc, redis_server: RedisServer
) -> None:
    producer = FakeProducer(redis_server.url, "cam2")
    producer.status()
    producer.result()
    # Subscribing at once makes the gateway's command pool open a connection per reader.
    opened = await asyncio.gather(*(open_stream(gw, "/ws/cam2") for _ in range(20)))
    for ws, _ in opened:
        await ws.close()
    producer.close()

    redis_server.restart()  # every pooled command connection is now dead
    await poll(lambda: gw.get("/readyz")[0] == 200, what="/readyz to recover")
    producer = FakeProducer(redis_server.url, "cam2")
    producer.status()
    for _ in range(3):
        producer.result()
    resumed = await asyncio.gather(
        *(open_stream(gw, f"/ws/cam2?since=1&epoch={producer.epoch}") for _ in range(20))
    )
    for ws, _ in resumed:
        got = await recv_until(
            ws, lambda m: isinstance(m, wire.Reset) or (isinstance(m, wire.Result) and m.seq == 3)
        )
        resets = [m for m in got if isinstance(m, wire.Reset)]
        assert resets == [] and results(got) == [2, 3], got
        await ws.close()
    producer.close()


async def test_a_subscribe_redis_confirms_late_gets_a_gap(redis_server: RedisServer) -> None:
    with (
        running_proxy(redis_server.port) as proxy,
        running_gateway(
            redis_url=proxy.redis_url, args=["--ready-timeout", "2", "--offline-after", "30"], wait="ready"
        ) as gw,
    ):
        producer = FakeProducer(redis_server.url, "late")  # straight to valkey, not through the proxy
        async with connect(gw.ws_url + "/ws", open_timeout=10) as ws:
            assert isinstance(await recv(ws), wire.Hello)
            proxy.freeze()  # the SUBSCRIBE below is held in the proxy, unconfirmed
            await ws.send('{"op":"subscribe","stream":"late"}')
            # The gateway goes ahead after --ready-timeout (the client is not kept waiting).
            await recv_until(ws, lambda m: isinstance(m, wire.Subscribed), timeout=30)
            producer.result()  # published before Redis saw the SUBSCRIBE: lost for this client
            proxy.thaw()
            channel = wire.channel("late")
            await poll(
                lambda: producer.redis.pubsub_numsub(channel)[0][1] >= 1,  # type: ignore[index]
                what="valkey to receive the held SUBSCRIBE",
            )
            # The canary's rebuild after the same silence may still be re-subscribing: publish until
            # a result arrives (bounded), as a live producer would.
            got: list[Message] = []
            for _ in range(30):
                producer.result()
                try:
                    for _ in range(1000):  # the result, after at most a few gaps and heartbeats
                        got.append(await recv(ws, timeout=1))
                        if isinstance(got[-1], wire.Result):
                            break
                except TimeoutError:
                    continue
                break
            # The late confirmation is announced; the canary's rebuild after the same silence may
            # announce it too (a second gap only makes the client resume from the same position).
            gaps = [m for m in got if isinstance(m, wire.Gap)]
            assert gaps and all(g.stream == "late" and g.reason == "redis-reconnected" for g in gaps), got
            assert results(got) and results(got)[0] >= 2, got
        producer.close()


async def test_killed_subscription_recovers_with_gap(gw: GatewayProc, redis_server: RedisServer) -> None:
    producer = FakeProducer(redis_server.url, "cam1")
    ws, _ = await open_stream(gw, "/ws/cam1")
    killed = producer.redis.client_kill_filter(_type="pubsub")
    assert killed >= 1
    await recv_until(ws, lambda m: isinstance(m, wire.Gap), timeout=30)
    producer.result()
    got = await recv_until(ws, lambda m: isinstance(m, wire.Result))
    assert isinstance(got[-1], wire.Result) and got[-1].seq == 1
    await poll(lambda: gw.get("/readyz")[0] == 200, what="/readyz after the kill")
    await ws.close()
    producer.close()


class StallingProxy:
    """A TCP proxy to Redis whose existing connections can be frozen (bytes stop, sockets stay open).

    Connections made after a freeze work normally: this is a subscription gone deaf
    while a fresh connection would be fine (a failover, a half-dead NAT entry).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.frozen: set[int] = set()
        self.generation = 0
        self.sockets: list[socket.socket] = []
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        """Stop forwarding on every connection open now."""
        self.frozen.add(self.generation)
        self.generation += 1

    def _accept(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, upstream]
            generation = self.generation
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, generation), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, generation: int) -> None:
        with contextlib.suppress(OSError):
            while not self.stopping:
                data = source.recv(65536)
                if not data:
                    break
                while generation in self.frozen and not self.stopping:
                    time.sleep(0.05)
                sink.sendall(data)

    def close(self) -> None:
        self.stopping = True
        for sock in [self.listener, *self.sockets]:
            with contextlib.suppress(OSError):
                sock.close()


async def test_deaf_subscription_makes_gateway_unready_then_heals(redis_server: RedisServer) -> None:
    proxy = StallingProxy(redis_server.port)
    try:
        with running_gateway(
            redis_url=f"redis://127.0.0.1:{proxy.port}/0", args=["--ready-timeout", "1"], wait="ready"
        ) as gw:
            ws, _ = await open_stream(gw, "/ws/cam1")
            proxy.freeze()
            await poll(lambda: gw.get("/readyz")[0] == 503, what="/readyz to notice the deaf subscription")
            _, body = gw.get_json("/readyz")
            assert isinstance(body, dict) and "redis" in str(body["reason"])
            # Nobody restarts anything: the watchdog rebuilds the subscription on a new connection.
            await recv_until(ws, lambda m: isinstance(m, wire.Gap), timeout=30)
            await poll(lambda: gw.get("/readyz")[0] == 200, what="/readyz to recover")
            producer = FakeProducer(redis_server.url, "cam1")
            producer.result()
            got = await recv_until(ws, lambda m: isinstance(m, wire.Result))
            assert isinstance(got[-1], wire.Result) and got[-1].seq == 1
            producer.close()
            await ws.close()
    finally:
        proxy.close()


async def test_starts_without_redis_and_becomes_ready_when_it_appears(tmp_path: Path) -> None:
    port = free_port()
    with running_gateway(redis_url=f"redis://127.0.0.1:{port}/0", wait="healthz") as gw:
        status, body = gw.get_json("/readyz")
        assert status == 503 and isinstance(body, dict) and "redis" in str(body["reason"])
        valkey = spawn_valkey(port, str(tmp_path))
        try:
            await poll(lambda: gw.get("/readyz")[0] == 200, what="readiness once Redis is up")
        finally:
            valkey.terminate()
            valkey.wait(10)


# ---------------------------------------------------------------------------
# HTTP side


def test_http_endpoints_and_static_files(redis_server: RedisServer, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>viewer</title>")
    (tmp_path / "app.js").write_text("export const x = 1;")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "style.css").write_text("body{}")
    secret = tmp_path.parent / "secret.txt"
    secret.write_text("do not serve")
    with running_gateway(
        redis_url=redis_server.url, args=["--static-dir", str(tmp_path)], wait="ready"
    ) as gw:
        status, body = gw.get_json("/healthz")
        assert status == 200 and isinstance(body, dict) and body["id"] == gw.id
        assert gw.get("/readyz")[0] == 200
        status, page = gw.get("/")
        assert status == 200 and b"viewer" in page
        assert gw.get("/app.js") == (200, b"export const x = 1;")
        assert gw.get("/sub/style.css")[0] == 200
        assert gw.get("/missing.js")[0] == 404
        for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/sub/../../secret.txt", "/..%2fsecret.txt"):
            assert _raw_get(gw.port, path)[0] in (400, 404), path
        assert b"do not serve" not in _raw_get(gw.port, "/%2e%2e/secret.txt")[1]
        head = _raw_get(gw.port, "/app.js")[1].split(b"\r\n\r\n")[0].lower()
        assert b"content-type: text/javascript" in head
        assert b"x-framecast-gateway: " + gw.id.encode() in head
        metrics = gw.metrics()
        assert "framecast_gateway_connections" in metrics and "framecast_gateway_fanout_seconds" in metrics
        # A plain GET on a WebSocket path asks for the upgrade.
        assert gw.get("/ws/cam1")[0] == 426
        status, response = _raw_get(gw.port, "/healthz", method="HEAD")
        assert status == 200 and response.endswith(b"\r\n\r\n"), "HEAD: headers only"
        assert _raw_get(gw.port, "/healthz", method="POST")[0] == 405


def test_missing_viewer_gives_a_helpful_404(redis_server: RedisServer, tmp_path: Path) -> None:
    with running_gateway(redis_url=redis_server.url, args=["--static-dir", str(tmp_path)]) as gw:
        status, body = gw.get("/")
        assert status == 404 and b"/ws/<stream>" in body


def _raw_get(port: int, path: str, *, method: str = "GET") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        for _ in range(1000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), data


# ---------------------------------------------------------------------------
# Process lifecycle


async def test_sigterm_closes_clients_with_1001_and_exits_0(redis_server: RedisServer) -> None:
    gw = start_gateway(redis_url=redis_server.url, wait="ready")
    try:
        clients = [(await open_stream(gw, "/ws/cam1"))[0] for _ in range(3)]
        code = await asyncio.to_thread(gw.stop, signal.SIGTERM)
        assert code == 0
        for ws in clients:
            with pytest.raises(ConnectionClosed):
                for _ in range(100):
                    await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == wire.CLOSE_GOING_AWAY
        assert "stopped" in gw.logs
    finally:
        gw.stop(signal.SIGKILL)


def test_busy_port_and_bad_settings_fail_with_one_line(redis_server: RedisServer) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "gateway", "--port", str(port), "--redis-url", redis_server.url],
            capture_output=True,
            text=True,
            timeout=30,
            env=gateway_env(),
        )
    assert run.returncode == 1
    assert f"error: port {port} is in use" in run.stderr
    assert "Traceback" not in run.stderr

    for argv, named in (
        (["--max-lag", "-1"], "--max-lag"),
        (["--client-buffer", "lots"], "--client-buffer"),
        (["--compression", "zstd"], "--compression"),
        (["--redis-url", "http://x"], "--redis-url"),
    ):
        run = subprocess.run(
            [sys.executable, "-m", "gateway", *argv],
            capture_output=True,
            text=True,
            timeout=30,
            env=gateway_env(),
        )
        assert run.returncode == 2, argv
        assert named in run.stderr and "Traceback" not in run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "gateway", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env=gateway_env(),
    )
    assert run.returncode == 0 and "--client-buffer" in run.stdout and "retries" in run.stdout


def test_max_connections_beyond_the_open_files_limit_fails_at_start(redis_server: RedisServer) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "gateway", "--port", "0", "--redis-url", redis_server.url],
        capture_output=True,
        text=True,
        timeout=30,
        env=gateway_env({"FRAMECAST_MAX_CONNECTIONS": "5000"}),
        preexec_fn=functools.partial(limit_open_files, 1024),
    )
    assert run.returncode == 2, run.stderr
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--max-connections (FRAMECAST_MAX_CONNECTIONS) 5000" in errors[0], run.stderr
    assert "the limit is 1024" in errors[0]


def test_the_default_max_connections_is_lowered_to_the_open_files_limit(redis_server: RedisServer) -> None:
    with running_gateway(redis_url=redis_server.url, open_files=1024) as gw:
        assert "--max-connections lowered from its default 10000 to 896" in gw.logs


def test_reuse_port_lets_two_gateways_share_one_port(redis_server: RedisServer) -> None:
    port = free_port()
    args = ["--reuse-port"]
    with (
        running_gateway(redis_url=redis_server.url, port=port, gateway_id="one", args=args) as one,
        running_gateway(redis_url=redis_server.url, port=port, gateway_id="two", args=args) as two,
    ):
        assert one.alive() and two.alive()
        seen = set()
        # "two" may still be starting (its health check was answered by "one"): poll, bounded.
        for _ in range(500):  # the kernel spreads new connections over both listeners
            _, body = one.get_json("/healthz")
            assert isinstance(body, dict)
            seen.add(body["id"])
            if seen == {"one", "two"}:
                break
            time.sleep(0.02)
        assert seen == {"one", "two"}
