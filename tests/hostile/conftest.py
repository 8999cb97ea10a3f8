"""Fixtures of the hostile-input tests: a real valkey, a feeder, a real gateway and a witness client.

Every hostile test runs next to a *witness*: a well-behaved WebSocket client subscribed to the
stream the feeder publishes on. After the attack, :meth:`Bench.assert_undisturbed` waits for the
witness to receive a result published *after* the attack and checks it got every result since it
connected, in order, on the same connection: no hostile input may disturb another client.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import jwt
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from framecast import wire
from framecast.local.embedded import free_port
from framecast.local.up import running
from tests.support.gateway import FakeProducer, GatewayProc, raw_websocket, start_gateway
from tests.support.procs import child_env
from tests.support.valkey import RedisServer, spawn_valkey
from tests.support.wait import wait_until

STREAM = "default"
SECRET = "hostile-test-secret-" * 4
_PERIOD = 0.05  # 20 results/s: enough to see order, light on a shared 2-core machine


class Feeder:
    """Publishes results (and a heartbeat each second) from a thread, as the producer does."""

    def __init__(self, redis_url: str) -> None:
        self.producer = FakeProducer(redis_url, STREAM)
        self.published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostile-feeder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last_status = 0.0
        while not self._stop.wait(_PERIOD):
            self.published = self.producer.result().seq
            if time.monotonic() - last_status >= 1.0:
                self.producer.status()
                last_status = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.producer.close()


@dataclass
class Witness:
    """A well-behaved client on ``/ws/<STREAM>``, reading in a thread."""

    url: str
    seqs: list[int] = field(default_factory=list)
    closed: str | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="hostile-witness", daemon=True)
        self._thread.start()
        assert ready.wait(20), "the witness could not connect"

    def _run(self, ready: threading.Event) -> None:
        try:
            with connect(self.url, open_timeout=20, max_size=2**20) as ws:
                self._ws = ws
                ready.set()
                for raw in ws:
                    message = wire.decode(raw) if isinstance(raw, str) else None
                    if isinstance(message, wire.Result):
                        self.seqs.append(message.seq)
        except ConnectionClosed as exc:
            self.closed = f"closed: {exc}"
        except Exception as exc:  # the witness reports, the test asserts
            self.closed = f"failed: {exc!r}"
        finally:
            ready.set()

    def stop(self) -> None:
        ws = getattr(self, "_ws", None)
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()
        if self._thread is not None:
            self._thread.join(timeout=10)


@dataclass
class Bench:
    """What a hostile test attacks and checks: a gateway (or nginx), the feeder and the witness.

    Attributes:
        port: Where the attacks go (the gateway's port, or nginx's).
        feeder: Publishes the stream the witness reads.
        witness: The well-behaved client.
        processes: Returns the server processes' exit statuses (None while running).
        gateway: The gateway, when attacked directly.
    """

    port: int
    feeder: Feeder
    witness: Witness
    processes: Callable[[], list[int | None]]
    gateway: GatewayProc | None = None
    auth_headers: dict[str, str] = field(default_factory=dict)

    @property
    def through_nginx(self) -> bool:
        return self.gateway is None

    def assert_undisturbed(self, *, timeout: float = 30.0) -> None:
        """The witness receives results published after now, and has missed or reordered nothing."""
        mark = self.feeder.published
        wait_until(
            lambda: self.witness.closed or (self.witness.seqs and self.witness.seqs[-1] > mark + 1),
            timeout=timeout,
            what=f"the witness to receive results after seq {mark}",
        )
        assert self.witness.closed is None, f"the witness was disturbed: {self.witness.closed}"
        seqs = list(self.witness.seqs)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "the witness lost or reordered results"
        assert self.processes() == [None] * len(self.processes()), "a server process died"
        # Leave the next test a server that takes new clients (nginx may have marked a gateway
        # failed for its fail_timeout after a dropped request; a dedicated test asserts that).
        wait_until(self._upgrades, timeout=timeout, what="a new client to be upgraded")

    def _upgrades(self) -> bool:
        try:
            sock, head = raw_websocket(self.port, f"/ws/{STREAM}", headers=self.auth_headers)
        except OSError:
            return False
        sock.close()
        return head.startswith(b"HTTP/1.1 101")


def token(claims: dict[str, object] | None = None, *, key: str = SECRET, algorithm: str = "HS256") -> str:
    """A token for the hostile gateway (all streams unless ``claims`` say otherwise)."""
    return jwt.encode(claims if claims is not None else {"streams": "*"}, key, algorithm=algorithm)


@contextlib.contextmanager
def bench(
    args: Sequence[str] = (), *, witness_query: str = "", auth_headers: dict[str, str] | None = None
) -> Iterator[Bench]:
    """valkey + feeder + gateway (``args``) + witness; everything stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="framecast-hostile-") as workdir:
        port = free_port()
        redis = RedisServer(port, spawn_valkey(port, workdir), workdir)
        feeder: Feeder | None = None
        gateway: GatewayProc | None = None
        witness: Witness | None = None
        try:
            feeder = Feeder(redis.url)
            gateway = start_gateway(redis_url=redis.url, args=["--max-age", "0", *args], wait="ready")
            witness = Witness(f"{gateway.ws_url}/ws/{STREAM}{witness_query}")
            witness.start()
            wait_until(lambda: witness.seqs, what="the witness's first result")
            yield Bench(
                port=gateway.port,
                feeder=feeder,
                witness=witness,
                processes=lambda: [gateway.process.poll()],
                gateway=gateway,
                auth_headers=auth_headers or {},
            )
        finally:
            if witness is not None:
                witness.stop()
            if gateway is not None:
                gateway.stop()
            if feeder is not None:
                feeder.close()
            redis.stop()


@pytest.fixture(scope="module")
def open_bench() -> Iterator[Bench]:
    """A gateway without auth (shared by one module's tests: each checks the witness after itself)."""
    with bench() as b:
        yield b


@pytest.fixture(scope="module")
def auth_bench() -> Iterator[Bench]:
    """A gateway requiring HS256 tokens signed with :data:`SECRET`."""
    with bench(
        ["--jwt-secret", SECRET],
        witness_query=f"?token={token()}",
        auth_headers={"Authorization": f"Bearer {token()}"},
    ) as b:
        yield b


@pytest.fixture(scope="module")
def nginx_bench() -> Iterator[Bench]:
    """nginx in front of two gateways (``framecast up``'s topology, fed by the feeder)."""
    with tempfile.TemporaryDirectory(prefix="framecast-hostile-") as workdir:
        port = free_port()
        redis = RedisServer(port, spawn_valkey(port, workdir), workdir)
        feeder = Feeder(redis.url)
        try:
            with running(gateways=2, producer=False, redis_url=redis.url, env=child_env()) as stack:
                witness = Witness(stack.ws_url(STREAM))
                witness.start()
                try:
                    wait_until(lambda: witness.seqs, what="the witness's first result")
                    yield Bench(
                        port=stack.port,
                        feeder=feeder,
                        witness=witness,
                        processes=lambda: [
                            c.process.poll() if c.process is not None else -1 for c in stack.children.values()
                        ],
                    )
                finally:
                    witness.stop()
        finally:
            feeder.close()
            redis.stop()
