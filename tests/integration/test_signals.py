"""Ctrl-C (SIGINT) and SIGTERM stop framecast's commands, whatever they are doing at that moment.

Each case starts real processes, waits until a child is provably in the state named (its
WebSocket handshake under way, a reconnection delay announced, results printed), signals it and
requires the documented exit status without a traceback. The wait for the exit is bounded so a
swallowed signal fails the test instead of hanging it; how long the exit took is not asserted.
The runs of a case go concurrently (a thread each): :data:`RUNS` children, each signalled as soon
as it reaches the state.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from framecast.local.embedded import free_port
from tests.support.feed import Feed
from tests.support.gateway import GatewayProc, raw_websocket, running_gateway, start_gateway
from tests.support.valkey import RedisServer
from tests.support.wait import wait_until

RUNS = int(os.environ.get("FRAMECAST_SIGNAL_RUNS", "20"))
"""Children per ``framecast watch`` case (the issue asked for 20); gateway and up cases run fewer."""
_EXIT_WAIT = 30.0  # bounds the wait for an exit; a swallowed signal never exits
_STATE_WAIT = 60.0  # bounds the wait for a child to reach a state (20 Pythons starting on 2 cores)


class _Lines:
    """A child's output lines, collected by a thread (no read can block past a deadline)."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self.closed = threading.Event()

        def pump() -> None:
            for line in stream:  # type: ignore[attr-defined]
                self.lines.append(line)
            self.closed.set()

        threading.Thread(target=pump, daemon=True).start()

    def find(self, pattern: str) -> re.Match[str] | None:
        for line in list(self.lines):
            if match := re.search(pattern, line):
                return match
        return None

    @property
    def text(self) -> str:
        return "".join(self.lines)


class _Child:
    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.out = _Lines(self.process.stdout)
        self.err = _Lines(self.process.stderr)

    def signal_when(self, ready: Callable[[], object], sig: int, *, what: str) -> int:
        """Wait until ``ready()`` (bounded), send ``sig``, wait for the exit (bounded); the status."""
        try:
            wait_until(lambda: ready() or self.process.poll() is not None, timeout=_STATE_WAIT, what=what)
            assert self.process.poll() is None, f"exited {self.process.returncode} before {what}:\n{self.log}"
            self.process.send_signal(sig)
            self.process.wait(timeout=_EXIT_WAIT)
            self.out.closed.wait(10)
            self.err.closed.wait(10)
            return self.process.returncode
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)

    @property
    def log(self) -> str:
        return f"stdout:\n{self.out.text}\nstderr:\n{self.err.text}"


def _each(count: int, run: Callable[[int], None]) -> None:
    """``run(0..count-1)`` concurrently; the first failure is raised."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        for future in [pool.submit(run, index) for index in range(count)]:
            future.result()


def _watch(url: str, env: dict[str, str], *args: str) -> _Child:
    return _Child([sys.executable, "-m", "framecast.cli", "watch", url, "--stream", "cam", *args], env)


def _interrupted(child: _Child, ready: Callable[[], object], what: str) -> None:
    status = child.signal_when(ready, signal.SIGINT, what=what)
    assert status == 130, f"status {status} after Ctrl-C {what}:\n{child.log}"
    assert "Traceback" not in child.err.text, child.log


# ------------------------------------------------------------------ framecast watch


@contextlib.contextmanager
def _mute_server() -> Iterator[tuple[int, threading.Event]]:
    """A TCP server (on a port it bound itself) that reads a WebSocket handshake and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    asked = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                held.append(conn)
                conn.settimeout(_STATE_WAIT)
                if conn.recv(4096).startswith(b"GET /ws"):
                    asked.set()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1], asked
    finally:
        listener.close()
        for conn in held:
            conn.close()


def test_ctrl_c_while_the_handshake_is_under_way_exits_130(child_env: dict[str, str]) -> None:
    def run(_: int) -> None:
        with _mute_server() as (port, asked):
            child = _watch(f"ws://127.0.0.1:{port}/ws", child_env)
            _interrupted(child, asked.is_set, "while its handshake waits for an answer")

    _each(RUNS, run)


def test_ctrl_c_while_waiting_to_reconnect_exits_130(child_env: dict[str, str]) -> None:
    def run(_: int) -> None:
        nobody = free_port()  # nothing listens there: every attempt is refused
        child = _watch(f"http://127.0.0.1:{nobody}", child_env, "--retries", "0")

        def in_long_backoff() -> bool:
            # The delay is announced, then slept; one of at least a second is surely being slept.
            return any(
                float(m.group(1)) >= 1.0
                for line in list(child.err.lines)
                if (m := re.search(r"reconnecting in (\d+\.\d) s", line))
            )

        _interrupted(child, in_long_backoff, "during a reconnection delay")

    _each(RUNS, run)


def test_ctrl_c_while_results_stream_in_exits_130(
    redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    feed = Feed(redis_server.url, "cam")
    feed.publish(3)
    feed.start(rate=25)
    try:
        with running_gateway(redis_url=redis_server.url, wait="ready") as gw:

            def run(_: int) -> None:
                child = _watch(gw.url, child_env)
                _interrupted(child, lambda: child.out.find(r"^cam  seq \d+"), "while results are printed")

            _each(RUNS, run)
    finally:
        feed.stop()


# ------------------------------------------------------------------ framecast gateway

_GATEWAY_RUNS = max(1, RUNS // 4)


def _stopped(gw: GatewayProc, sig: int) -> None:
    status = gw.stop(sig, timeout=_EXIT_WAIT)
    assert status == 0, f"status {status} after {signal.Signals(sig).name}:\n{gw.logs}"
    assert f"gateway {gw.id} stopped" in gw.logs, gw.logs
    assert "Traceback" not in gw.logs, gw.logs


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_gateway_retrying_redis_stops_on_a_signal(sig: int) -> None:
    def run(_: int) -> None:
        nobody = free_port()
        gw = start_gateway(redis_url=f"redis://127.0.0.1:{nobody}/0", wait="healthz")
        try:
            wait_until(lambda: gw.get("/readyz")[0] == 503, what="the gateway to say Redis is missing")
            _stopped(gw, sig)
        finally:
            gw.stop(signal.SIGKILL)

    _each(_GATEWAY_RUNS, run)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_gateway_serving_a_live_stream_stops_on_a_signal(sig: int, redis_server: RedisServer) -> None:
    feed = Feed(redis_server.url, "cam")
    feed.start(rate=25)
    try:

        def run(_: int) -> None:
            gw = start_gateway(redis_url=redis_server.url, wait="ready")
            try:
                client, head = raw_websocket(gw.port, "/ws/cam")
                with client:
                    assert head.startswith(b"HTTP/1.1 101"), head
                    wait_until(lambda: client.recv(65536), what="a frame on the client")
                    _stopped(gw, sig)
            finally:
                gw.stop(signal.SIGKILL)

        _each(_GATEWAY_RUNS, run)
    finally:
        feed.stop()


# framecast up on a signal during start-up: tests/integration/test_up_startup.py.
