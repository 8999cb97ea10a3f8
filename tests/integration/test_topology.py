"""The whole path with real processes: valkey -> producer -> 2 gateways -> nginx -> WebSocket clients."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from framecast import wire
from framecast.local.embedded import free_port
from framecast.local.nginx import client_capacity
from framecast.local.up import Stack, running
from tests.support.procs import OutputLines
from tests.support.wait import wait_until

CLIENTS = 60
MESSAGES_PER_CLIENT = 8


@pytest.fixture
def stack(child_env: dict[str, str]) -> Iterator[Stack]:
    with running(gateways=2, env=child_env) as stack:
        yield stack


async def _open(url: str) -> tuple[ClientConnection, str]:
    ws = await connect(url, open_timeout=20)
    hello = wire.decode(await asyncio.wait_for(ws.recv(), 20))
    assert isinstance(hello, wire.Hello)
    return ws, hello.gateway


async def _results(ws: ClientConnection, count: int, *, timeout: float = 60) -> list[wire.Result]:
    """Read until ``count`` results arrived (other message types are checked and skipped)."""
    results: list[wire.Result] = []
    deadline = time.monotonic() + timeout
    while len(results) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {len(results)} of {count} results arrived"
        message = wire.decode(await asyncio.wait_for(ws.recv(), remaining))
        if isinstance(message, wire.Result):
            results.append(message)
    return results


def _check_sequence(results: list[wire.Result]) -> None:
    for before, after in itertools.pairwise(results):
        if before.epoch == after.epoch:
            assert after.seq > before.seq, f"seq went from {before.seq} to {after.seq}"
    for result in results:
        assert result.stream == "default"
        for detection in result.detections:
            x1, y1, x2, y2 = detection.box
            assert 0 <= x1 <= x2 <= result.width and 0 <= y1 <= y2 <= result.height


async def test_many_clients_through_nginx_get_ordered_results_from_both_gateways(stack: Stack) -> None:
    opened = await asyncio.gather(*(_open(stack.ws_url("default")) for _ in range(CLIENTS)))
    sockets = [ws for ws, _ in opened]
    try:
        served_by = Counter(gateway for _, gateway in opened)
        assert set(served_by) == {"gw1", "gw2"}, served_by

        batches = await asyncio.gather(*(_results(ws, MESSAGES_PER_CLIENT) for ws in sockets))
        for results in batches:
            _check_sequence(results)
        # The synthetic scene moves: the motion detector finds something somewhere.
        assert any(r.detections for results in batches for r in results)

        # Each gateway reports its own share of the clients.
        for gateway in stack.gateways:
            with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/metrics", timeout=5) as response:
                metrics = response.read().decode()
            line = next(m for m in metrics.splitlines() if m.startswith("framecast_gateway_connections"))
            assert float(line.split()[-1]) == served_by[gateway.name]

        # Closing a third of the clients does not interrupt the others.
        closing, staying = sockets[: CLIENTS // 3], sockets[CLIENTS // 3 :]
        await asyncio.gather(*(ws.close() for ws in closing))
        last_seen = [results[-1].seq for results in batches[CLIENTS // 3 :]]
        more = await asyncio.gather(*(_results(ws, 3) for ws in staying))
        for seen, results in zip(last_seen, more, strict=True):
            _check_sequence(results)
            assert results[0].seq > seen
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


def test_viewer_and_health_are_served_through_nginx(stack: Stack) -> None:
    with urllib.request.urlopen(stack.url, timeout=10) as response:
        assert response.status == 200
        assert "text/html" in response.headers["Content-Type"]
    with urllib.request.urlopen(stack.url + "healthz", timeout=10) as response:
        assert response.status == 200


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): treat it as gone.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")


def test_framecast_up_cli_serves_reports_a_dead_child_and_stops_cleanly(child_env: dict[str, str]) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "framecast.cli", "up", "--port", str(port), "--gateways", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=child_env,
        text=True,
    )
    output = OutputLines(process)
    try:
        ready = output.wait_for("viewer at", 60)
        assert f"http://127.0.0.1:{port}/" in ready
        children = _children(process.pid)
        assert len(children) == 5, output.seen  # valkey, 2 gateways, producer, nginx
        # The Redis URL reaches the children through the environment, never their command line.
        assert not any("redis://" in _cmdline(pid) for pid in children)

        async def one_result() -> wire.Result:
            ws, _ = await _open(f"ws://127.0.0.1:{port}/ws/default")
            async with ws:
                return (await _results(ws, 1))[0]

        assert asyncio.run(one_result()).stream == "default"

        # A gateway that dies is reported and restarted.
        gateway_pid = next(p for p in children if "gateway" in _cmdline(p) and "--id gw1" in _cmdline(p))
        os.kill(gateway_pid, signal.SIGKILL)
        output.wait_for("gw1 exited with status -9; restarting", 30)
        wait_until(lambda: len(_children(process.pid)) == 5, timeout=30, what="the gateway to be restarted")

        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        assert process.returncode == 0
        output.wait_for("framecast up: stopped", 10)
        for pid in _children(process.pid) + children:
            wait_until(lambda pid=pid: not _alive(pid), timeout=10, what=f"child {pid} to exit")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_up_closes_clients_with_1001_and_up_restarts_on_its_port(
    sig: int, child_env: dict[str, str]
) -> None:
    # The gateways must drain while nginx still runs: stopped first, nginx leaves clients a bare 1006.
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "framecast.cli", "up", "--port", str(port), "--no-producer"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=child_env,
        text=True,
    )
    output = OutputLines(process)
    try:
        output.wait_for("viewer at", 60)

        async def closed_by_stop() -> tuple[int | None, int | None]:
            clients = [await _open(f"ws://127.0.0.1:{port}/ws") for _ in range(4)]
            process.send_signal(sig)
            codes = []
            for ws, _ in clients:
                await asyncio.wait_for(ws.wait_closed(), 30)
                codes.append(ws.close_code)
            return min(codes), max(codes)

        assert asyncio.run(closed_by_stop()) == (wire.CLOSE_GOING_AWAY, wire.CLOSE_GOING_AWAY)
        process.wait(timeout=30)
        assert process.returncode == 0
        # Its clients' connections may linger in TIME_WAIT on the port: up starts there again at once.
        process = subprocess.Popen(
            [sys.executable, "-m", "framecast.cli", "up", "--port", str(port), "--no-producer"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=child_env,
            text=True,
        )
        OutputLines(process).wait_for("viewer at", 60)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_unreachable_redis_fails_with_one_clear_line(child_env: dict[str, str]) -> None:
    dead = free_port()
    out = subprocess.run(
        [sys.executable, "-m", "framecast.cli", "up", "--port", str(free_port())],
        capture_output=True,
        text=True,
        env={**child_env, "REDIS_URL": f"redis://:s3cret@127.0.0.1:{dead}/0"},
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    err = out.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert f"127.0.0.1:{dead}" in err and "does not answer" in err
    assert "s3cret" not in err + out.stdout


def test_busy_port_fails_with_one_clear_line(child_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "framecast.cli", "up", "--port", str(port)],
            capture_output=True,
            text=True,
            env=child_env,
            timeout=60,
            check=False,
        )
    assert out.returncode == 1
    assert f"port {port}" in out.stderr and "in use" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--gateways", "0"], "--gateways=0"),
        (["--port", "70000"], "--port=70000"),
        (["--detector", "no-such-detector"], "no-such-detector"),
        (["--source", "/nonexistent/video.mp4"], "/nonexistent/video.mp4"),
    ],
)
def test_bad_input_fails_with_a_message_naming_it(
    args: list[str], needle: str, child_env: dict[str, str]
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "framecast.cli", "up", "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        env=child_env,
        timeout=90,
        check=False,
    )
    assert out.returncode != 0
    assert needle in out.stderr, out.stderr + out.stdout


def test_more_gateway_connections_than_nginx_can_proxy_fail_at_start_naming_them(
    child_env: dict[str, str],
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "framecast.cli", "up", "--port", str(free_port()), "--gateways", "3"],
        capture_output=True,
        text=True,
        env={**child_env, "FRAMECAST_UP_MAX_CONNECTIONS": "1000000"},
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out.stderr + out.stdout
    err = out.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "--gateways 3 x --max-connections 1000000" in err and "nginx can proxy" in err


def test_the_gateways_together_accept_no_more_than_nginx_can_proxy(stack: Stack) -> None:
    limits = [int(g.argv[g.argv.index("--max-connections") + 1]) for g in stack.gateways]
    nginx_conf = (stack.workdir / "nginx.conf").read_text()
    per_worker = int(re.search(r"worker_connections (\d+);", nginx_conf)[1])  # type: ignore[index]
    workers = int(re.search(r"worker_processes (\d+);", nginx_conf)[1])  # type: ignore[index]
    assert len(limits) == 2 and min(limits) > 0
    assert sum(limits) <= client_capacity(workers=workers, worker_connections=per_worker)


async def test_an_explicit_max_connections_reaches_the_gateways(child_env: dict[str, str]) -> None:
    with running(gateways=2, max_connections=2, env=child_env) as small:
        opened = [await connect(f"{small.ws_url()}/default", open_timeout=20) for _ in range(4)]
        try:
            with pytest.raises(InvalidStatus) as refused:
                await connect(f"{small.ws_url()}/default", open_timeout=20)
            assert refused.value.response.status_code == 503
        finally:
            for ws in opened:
                await ws.close()


def test_temp_dir_is_removed_after_the_stack_stops(child_env: dict[str, str]) -> None:
    with running(gateways=1, env=child_env) as stack:
        workdir = stack.workdir
        assert workdir.exists()
        pids = [c.process.pid for c in stack.children.values() if c.process is not None]
    assert not workdir.exists()
    assert not any(_alive(pid) for pid in pids)


def test_up_help_explains_itself() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "framecast.cli", "up", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for flag in ("--gateways", "--port", "--source", "--detector", "REDIS_URL", "FRAMECAST_UP_PORT"):
        assert flag in out.stdout
