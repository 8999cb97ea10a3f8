"""Start real gateway processes for tests (shared by every engineer's integration tests).

Usage::

    from tests.support.gateway import running_gateway, start_gateway

    def test_something(redis_server):
        with running_gateway(redis_url=redis_server.url, args=["--max-age", "0"]) as gw:
            ... gw.ws_url + "/ws/default" ...
            assert gw.get("/readyz")[0] == 200

    gw = start_gateway(redis_url=..., wait="ready")   # remember gw.stop() in a finally

Each gateway listens on a port of 127.0.0.1 that it picks itself (``--port 0``) and writes its output to a log
file (``gw.logs``) so a chatty process can never block on a full pipe.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import itertools
import json
import os
import re
import resource
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis
from websockets.asyncio.client import ClientConnection

from framecast import wire
from framecast.local import launch
from tests.support.procs import child_env

__all__ = [
    "FakeProducer",
    "GatewayProc",
    "gateway_env",
    "metric",
    "publish_result",
    "publish_status",
    "raw_websocket",
    "running_gateway",
    "start_gateway",
]

ROOT = Path(__file__).resolve().parents[2]


def gateway_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a gateway child (see :func:`tests.support.procs.child_env`)."""
    return child_env(extra)


@dataclass
class GatewayProc:
    """A running ``python -m gateway`` child.

    Attributes:
        process: The child process.
        port: Its TCP port on 127.0.0.1.
        id: Its gateway id (``--id``).
        log_path: File receiving its stdout and stderr.
    """

    process: subprocess.Popen[bytes]
    port: int
    id: str
    log_path: Path
    _log_file: object = field(repr=False, default=None)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``"""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT`` (append ``/ws`` or ``/ws/<stream>``)."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def logs(self) -> str:
        """Everything the gateway printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def get(
        self, path: str, *, timeout: float = 5.0, headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        """HTTP GET on the gateway: ``(status, body)``, error statuses included."""
        request = urllib.request.Request(self.url + path, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def get_json(self, path: str, *, timeout: float = 5.0) -> tuple[int, object]:
        status, body = self.get(path, timeout=timeout)
        return status, json.loads(body)

    def metrics(self) -> str:
        """The ``/metrics`` text."""
        return self.get("/metrics")[1].decode()

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """One sample of ``/metrics`` (0.0 if absent)."""
        return metric(self.metrics(), name, labels)

    def rss_bytes(self) -> int:
        """Resident memory of the process (Linux)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far (Linux)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def wait_until(self, predicate_path: str, status: int = 200, *, timeout: float = 20.0) -> None:
        """Poll ``GET predicate_path`` until this gateway answers ``status`` (bounded).

        ``/healthz`` and ``/readyz`` answers must carry this gateway's id, so a
        neighbour sharing the port (``--reuse-port``) cannot answer for it.
        """
        deadline = time.monotonic() + timeout
        last: object = None
        for _ in range(int(timeout / 0.05) + 1):
            if not self.alive():
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.logs}")
            try:
                code, body = self.get(predicate_path, timeout=1.0)
                last = (code, body[:200])
                if code == status and (
                    predicate_path not in ("/healthz", "/readyz") or json.loads(body).get("id") == self.id
                ):
                    return
            except OSError as exc:
                last = exc
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise TimeoutError(f"{predicate_path} never answered {status} (last: {last!r}):\n{self.logs[-3000:]}")

    def wait_ready(self, *, timeout: float = 20.0) -> None:
        self.wait_until("/readyz", 200, timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, *, timeout: float = 20.0) -> int:
        """Send ``sig``, wait for the exit (SIGKILL after ``timeout``); returns the exit status."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        closer = getattr(self._log_file, "close", None)
        if closer is not None:
            closer()
        return self.process.returncode


def metric(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """Find one sample in Prometheus text (0.0 when absent)."""
    wanted = labels or {}
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        match = re.fullmatch(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+(\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        if all(found.get(k) == v for k, v in wanted.items()):
            return float(match.group(4))
    return 0.0


def start_gateway(
    *,
    redis_url: str | None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    gateway_id: str | None = None,
    port: int | None = None,
    wait: str | None = "healthz",
    timeout: float = 20.0,
    open_files: int | None = None,
) -> GatewayProc:
    """Start ``python -m gateway`` on 127.0.0.1 and wait for it.

    Args:
        redis_url: Its Redis (``REDIS_URL``; None: leave it to ``env``/the default).
        args: Extra command-line flags.
        env: Extra environment variables (on top of a clean one, see :func:`gateway_env`).
        gateway_id: ``--id`` (default ``gw-<number>``, unique in this test run).
        port: TCP port (default: one the gateway binds itself, ``--port 0``).
        wait: ``"healthz"`` (serving), ``"ready"`` (Redis subscription up) or None.
        timeout: Seconds to wait.
        open_files: Soft and hard open-files limit of the child (default: inherited).

    Returns:
        The running gateway; call ``.stop()`` in a ``finally`` (or use :func:`running_gateway`).
    """
    # Port 0: the gateway binds a port the kernel picks and reports it (`_reported_port`), so no
    # other process can take it between a check and the bind. An explicit port is for tests that
    # need to know it first (two gateways sharing one with --reuse-port).
    gateway_id = gateway_id or f"gw-{next(_ids)}"
    spec = launch.Gateway(id=gateway_id, port=port or 0, redis_url=redis_url, args=tuple(args))
    handle, name = tempfile.mkstemp(prefix=f"framecast-{gateway_id}-", suffix=".log")
    log_file = os.fdopen(handle, "wb")
    process = subprocess.Popen(
        spec.argv(),
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=gateway_env({**(env or {}), **spec.env()}),
        cwd=ROOT,
        preexec_fn=None if open_files is None else functools.partial(limit_open_files, open_files),
    )
    log_path = Path(name)
    if not port:
        try:
            port = _reported_port(process, log_path, timeout=timeout)
        except BaseException:
            process.kill()
            process.wait(timeout=10)
            log_file.close()
            raise
    gw = GatewayProc(process, port, gateway_id, log_path, log_file)
    try:
        if wait == "healthz":
            gw.wait_until("/healthz", 200, timeout=timeout)
        elif wait == "ready":
            gw.wait_until("/readyz", 200, timeout=timeout)
    except BaseException:
        gw.stop(signal.SIGKILL)
        raise
    return gw


_ids = itertools.count(os.getpid() * 1000)  # digits only, unique among this run's processes
_LISTENING = re.compile(rb"gateway \S+ listening on http://[^ ]+:(\d+) ")


def _reported_port(process: subprocess.Popen[bytes], log_path: Path, *, timeout: float) -> int:
    """The port a gateway started with ``--port 0`` bound, from its "listening on" log line."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.02) + 1):
        match = _LISTENING.search(log_path.read_bytes())
        if match:
            return int(match.group(1))
        if process.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    raise RuntimeError(
        f"gateway reported no port (exit status {process.poll()}; needs --log-level INFO or lower):\n"
        + log_path.read_text(errors="replace")[-3000:]
    )


def limit_open_files(limit: int) -> None:
    """Set this process's open-files limit, soft and hard (a child's ``preexec_fn``)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


@contextlib.contextmanager
def running_gateway(**kwargs: object) -> Iterator[GatewayProc]:
    """:func:`start_gateway` as a context manager: stopped (SIGTERM, then SIGKILL) on exit."""
    gw = start_gateway(**kwargs)  # type: ignore[arg-type]
    try:
        yield gw
    finally:
        gw.stop()


def publish_result(client: redis.Redis, result: wire.Result, *, epoch_ms: int, maxlen: int = 1000) -> bytes:
    """Publish one result exactly as the producer does; returns the encoded bytes.

    ``XADD <history_key> MAXLEN ~ <maxlen> <epoch_ms>-<seq> m <bytes>`` then ``PUBLISH <channel>
    <bytes>``, in one MULTI with the history first, so a result seen live is already replayable.
    """
    data = wire.encode(result)
    with client.pipeline(transaction=True) as pipe:
        pipe.xadd(
            wire.history_key(result.stream),
            {wire.HISTORY_FIELD: data},
            id=f"{epoch_ms}-{result.seq}",
            maxlen=maxlen,
            approximate=True,
        )
        pipe.publish(wire.channel(result.stream), data)
        pipe.execute()
    return data


def publish_status(client: redis.Redis, status: wire.Status, *, ttl: float = 3.0) -> bytes:
    """Publish one heartbeat and refresh the stream's status key (what ``/streams`` lists)."""
    data = wire.encode(status)
    with client.pipeline(transaction=True) as pipe:
        pipe.set(wire.status_key(status.stream), data, px=int(ttl * 1000))
        pipe.publish(wire.channel(status.stream), data)
        pipe.execute()
    return data


class FakeProducer:
    """Publishes to Redis exactly as the producer does, driven by the test.

    Results go through :func:`publish_result`, heartbeats through :func:`publish_status`.

    Args:
        redis_url: The Redis to publish to.
        stream: Stream name.
        maxlen: History length.
    """

    def __init__(self, redis_url: str, stream: str, *, maxlen: int = 1000) -> None:
        self.redis = redis.Redis.from_url(redis_url)
        self.stream = stream
        self.maxlen = maxlen
        self.epoch = ""
        self.epoch_ms = 0
        self.seq = 0
        self.restart()

    def restart(self) -> None:
        """A new producer run: new epoch, seq from 1."""
        self.epoch = secrets.token_hex(4)
        self.epoch_ms = max(int(time.time() * 1000), self.epoch_ms + 1)
        self.seq = 0

    def result(self, *, captured_at: float | None = None, pad: int = 0) -> wire.Result:
        """Publish the next result (``pad`` adds a detection with a label that long)."""
        self.seq += 1
        now = time.time()
        detections = (
            (wire.Detection(label="x" * pad, confidence=0.5, box=(0.0, 0.0, 1.0, 1.0)),) if pad else ()
        )
        message = wire.Result(
            stream=self.stream,
            epoch=self.epoch,
            seq=self.seq,
            frame=self.seq,
            captured_at=now if captured_at is None else captured_at,
            published_at=now,
            width=640,
            height=480,
            detections=detections,
        )
        publish_result(self.redis, message, epoch_ms=self.epoch_ms, maxlen=self.maxlen)
        return message

    def status(self, *, state: str = "online", ttl: float = 3.0) -> wire.Status:
        """Publish a heartbeat and refresh the stream's status key."""
        message = wire.Status(
            stream=self.stream,
            epoch=self.epoch,
            seq=self.seq,
            sent_at=time.time(),
            state=state,  # type: ignore[arg-type]
        )
        publish_status(self.redis, message, ttl=ttl)
        return message

    def preview(self, jpeg: bytes = b"\xff\xd8fake\xff\xd9") -> bytes:
        """Publish a binary preview of the current seq."""
        data = wire.encode_preview(
            wire.Preview(
                stream=self.stream,
                epoch=self.epoch,
                seq=self.seq,
                frame=self.seq,
                captured_at=time.time(),
                width=64,
                height=48,
                jpeg=jpeg,
            )
        )
        self.redis.publish(wire.preview_channel(self.stream), data)
        return data

    def close(self) -> None:
        self.redis.close()


def raw_websocket(
    port: int, path: str, *, rcvbuf: int | None = None, headers: Mapping[str, str] | None = None
) -> tuple[socket.socket, bytes]:
    """Open a WebSocket by hand on a plain socket and return it with the response head.

    The socket then belongs to the test: it can stop reading (a stalled client) or
    write arbitrary frames. ``rcvbuf`` shrinks its receive buffer before connecting.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        ).encode()
    )
    head = b""
    for _ in range(1000):
        if b"\r\n\r\n" in head:
            break
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return sock, head


class Collector:
    """A reading client on an open connection: reads everything in a task, keeps the result seqs.

    It also says why it stopped early (``trouble``), so a wait for it fails at once, naming why.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seqs: list[int] = []
        self.trouble: list[str] = []
        """What a reader that keeps up must never see: a gap or reset notice, its connection ending."""
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for data in self.ws:
                message = wire.decode(data)
                if isinstance(message, wire.Result):
                    self.seqs.append(message.seq)
                elif isinstance(message, wire.Gap | wire.Reset):
                    self.trouble.append(f"{type(message).__name__.lower()} ({message.reason})")
            self.trouble.append(f"closed ({self.ws.close_code} {self.ws.close_reason})")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.trouble.append(f"ended by {exc!r}")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
