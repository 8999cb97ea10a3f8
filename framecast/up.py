"""``framecast up``: the production topology on one machine.

Starts, in order, an embedded valkey-server (unless ``REDIS_URL`` points at a
Redis), N gateway processes on free loopback ports, the producer, and nginx
balancing HTTP and WebSocket traffic across the gateways. Every child's output
is echoed with a prefix; a child that exits is reported and restarted with
backoff; Ctrl-C or SIGTERM stops them all and removes the temporary directory.

The same machinery is a context manager for tests and benchmarks::

    with running(gateways=2, port=0) as stack:
        print(stack.url, stack.ws_url("default"))
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from framecast import settings, wire
from framecast.embedded import (
    EmbeddedError,
    free_port,
    nginx_binary,
    port_in_use,
    valkey_command,
    wait_for_port,
)
from framecast.limits import raise_open_files_limit
from framecast.logs import redact_url
from framecast.settings import option

__all__ = ["Child", "Stack", "UpConfig", "main", "render_nginx_conf", "running"]

TEMPLATE = Path(__file__).resolve().parent / "nginx.conf.template"
_PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")


@dataclass(frozen=True, kw_only=True)
class UpConfig:
    """Settings of ``framecast up``."""

    gateways: int = option(
        2,
        help="Gateway processes behind nginx.",
        env="FRAMECAST_UP_GATEWAYS",
        check=settings.positive,
        group="topology",
    )
    port: int = option(
        8080,
        help="Port nginx listens on (0 picks a free one).",
        env="FRAMECAST_UP_PORT",
        check=settings.port_number,
        group="topology",
    )
    host: str = option(
        "127.0.0.1", help="Address nginx listens on.", env="FRAMECAST_UP_HOST", group="topology"
    )
    source: str = option(
        "synthetic",
        help="Camera for the producer: device index, file, rtsp:// or http(s):// URL, or 'synthetic'.",
        group="producer",
    )
    detector: str = option(
        "motion",
        help="Predictor: motion, faces, people, qr, onnx:PATH or module:callable.",
        group="producer",
    )
    stream: str = option("default", help="Stream name the producer publishes.", group="producer")
    producer: bool = option(
        True,
        help="Start a producer (--no-producer to run only Redis, gateways and nginx).",
        env="FRAMECAST_UP_PRODUCER",
        group="producer",
    )
    redis_url: str | None = option(
        None,
        help="Use this Redis instead of starting an embedded valkey-server.",
        env="REDIS_URL",
        check=settings.redis_url,
        group="redis",
    )
    restart: bool = option(
        True,
        help="Restart a child that exits unexpectedly (with backoff).",
        env="FRAMECAST_UP_RESTART",
        group="supervision",
    )
    log_level: str = option(
        "INFO",
        help="Log level of every child.",
        choices=settings.LOG_LEVELS,
        group="supervision",
    )


class UpError(RuntimeError):
    """The topology could not be started; the text says which part and why."""


def render_nginx_conf(
    *,
    listen: str,
    upstreams: Sequence[str],
    runtime_dir: str,
    workers: int = 1,
    worker_connections: int = 16384,
    log_level: str = "warn",
    resolver: str = "",
    open_files: int = 65536,
) -> str:
    """Fill in the nginx template shared with docker compose.

    Args:
        listen: ``host:port`` nginx listens on.
        upstreams: ``host:port`` of each gateway.
        runtime_dir: Directory for nginx's pid file and temp paths.
        workers: nginx worker processes.
        worker_connections: Connections per worker (two per proxied client).
        log_level: nginx error_log level.
        resolver: A ``resolver`` directive, for upstreams named by DNS.
        open_files: Open-file limit of each worker (at most the hard limit nginx runs under).
    """
    values = {
        "LISTEN": listen,
        "UPSTREAM_SERVERS": "\n        ".join(f"server {u} max_fails=1 fail_timeout=2s;" for u in upstreams),
        "NGINX_RUNTIME_DIR": runtime_dir,
        "NGINX_WORKERS": str(workers),
        "NGINX_LOG_LEVEL": log_level,
        "NGINX_RESOLVER": resolver,
        "NGINX_OPEN_FILES": str(open_files),
        # Never more connections than descriptors: two per proxied client, plus a margin.
        "NGINX_WORKER_CONNECTIONS": str(min(worker_connections, max(512, open_files - 64))),
    }
    template = TEMPLATE.read_text()
    missing = sorted(set(_PLACEHOLDER.findall(template)) - values.keys())
    if missing:
        raise UpError(f"{TEMPLATE}: unknown placeholders {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


# --------------------------------------------------------------------------
# Children


# Loaded before any fork: the child must not dlopen() between fork and exec (threads may hold its lock).
_prctl: Callable[..., int] | None
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM the child if ``framecast up`` dies without cleaning up."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """One supervised process of the stack."""

    name: str
    argv: list[str]
    port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=500))
    restarts: int = 0
    expected_exit: bool = False
    _next_start: float = 0.0

    def tail(self, count: int = 15) -> str:
        """The child's last output lines, for error reports."""
        return "\n".join(list(self.lines)[-count:])


class Stack:
    """A running local topology: valkey, gateways, producer and nginx."""

    def __init__(self, config: UpConfig, *, echo: Callable[[str], None] | None, env: dict[str, str]) -> None:
        self.config = config
        self._echo = echo
        self._env = env
        self._tmp = tempfile.TemporaryDirectory(prefix="framecast-up-")
        self.workdir = Path(self._tmp.name)
        # nginx workers drop root privileges to "nobody" and must still reach their temp paths.
        self.workdir.chmod(0o755)
        self.children: dict[str, Child] = {}
        self.port = config.port or free_port(config.host)
        self.redis_url = config.redis_url or ""
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._supervisor: threading.Thread | None = None
        self.failure: str | None = None
        self._open_files = 1024

    # Public API ------------------------------------------------------------

    @property
    def url(self) -> str:
        """The viewer's URL (through nginx)."""
        return f"http://{self.config.host}:{self.port}/"

    def ws_url(self, stream: str | None = None) -> str:
        """WebSocket URL through nginx: ``/ws/<stream>``, or ``/ws`` for the multiplexed endpoint."""
        base = f"ws://{self.config.host}:{self.port}/ws"
        return f"{base}/{stream}" if stream else base

    @property
    def gateways(self) -> list[Child]:
        """The gateway children, in start order."""
        return [c for name, c in self.children.items() if name.startswith("gw")]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one child (for failure tests); the supervisor reports and may restart it."""
        child = self.children[name]
        if child.process is not None and child.process.poll() is None:
            child.process.send_signal(sig)

    def start(self) -> None:
        """Start every part in dependency order; raises UpError naming the part that failed."""
        if port_in_use(self.port, self.config.host):
            raise UpError(
                f"port {self.port} on {self.config.host} is in use: "
                "pass --port (or set FRAMECAST_UP_PORT) to choose another"
            )
        if self.redis_url:
            self._check_redis()
        self._open_files = raise_open_files_limit()
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        self._supervisor = threading.Thread(target=self._supervise, name="framecast-up", daemon=True)
        self._supervisor.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every child (reverse order: nginx, producer, gateways, valkey) and remove the temp dir."""
        self._stopping.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(timeout=2)
        for child in reversed(list(self.children.values())):
            self._terminate(child, timeout)
        with contextlib.suppress(OSError):
            self._tmp.cleanup()

    # Internals -------------------------------------------------------------

    def _check_redis(self) -> None:
        """Fail at once, in one line, when the Redis the user named does not answer."""
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_timeout=3, socket_connect_timeout=3)
        try:
            client.ping()
        except (redis.RedisError, ValueError) as exc:
            raise UpError(
                f"Redis at {redact_url(self.redis_url)} does not answer ({exc}): "
                "start it, fix REDIS_URL, or unset REDIS_URL to use the embedded valkey-server"
            ) from None
        finally:
            client.close()

    def _start_all(self) -> None:
        python = sys.executable
        level = self.config.log_level
        if not self.redis_url:
            port = free_port()
            self.redis_url = f"redis://127.0.0.1:{port}/0"
            redis_dir = self.workdir / "valkey"
            redis_dir.mkdir()
            valkey = self._add("valkey", valkey_command(port, workdir=redis_dir), port=port)
            self._launch(valkey)
            self._wait_listening(valkey)
        for index in range(1, self.config.gateways + 1):
            port = free_port()
            gateway = self._add(
                f"gw{index}",
                [
                    python,
                    "-m",
                    "gateway",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--id",
                    f"gw{index}",
                    "--log-level",
                    level,
                ],
                port=port,
            )
            self._launch(gateway)
        for gateway in self.gateways:
            self._wait_healthy(gateway)
        if self.config.producer:
            producer = self._add(
                "producer",
                [
                    python,
                    "-m",
                    "producer",
                    "--stream",
                    self.config.stream,
                    "--source",
                    self.config.source,
                    "--detector",
                    self.config.detector,
                    "--log-level",
                    level,
                ],
            )
            self._launch(producer)
        conf = self.workdir / "nginx.conf"
        conf.write_text(
            render_nginx_conf(
                listen=f"{self.config.host}:{self.port}",
                upstreams=[f"127.0.0.1:{g.port}" for g in self.gateways],
                runtime_dir=str(self.workdir),
                open_files=self._open_files,
            )
        )
        nginx = self._add(
            "nginx",
            [str(nginx_binary()), "-p", str(self.workdir), "-c", str(conf), "-g", "daemon off;"],
            port=self.port,
        )
        self._launch(nginx)
        self._wait_listening(nginx)
        if self.config.producer:
            self._wait_producer(self.children["producer"])

    def _add(self, name: str, argv: list[str], *, port: int | None = None) -> Child:
        child = Child(name, argv, port)
        self.children[name] = child
        return child

    def _launch(self, child: Child) -> None:
        child.process = subprocess.Popen(
            child.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # REDIS_URL travels in the environment, not argv, where `ps` would show its password.
            env={**self._env, "REDIS_URL": self.redis_url},
            cwd=self.workdir,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        threading.Thread(
            target=self._pump, args=(child, child.process), name=f"log-{child.name}", daemon=True
        ).start()

    def _pump(self, child: Child, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            child.lines.append(line)
            if self._echo is not None:
                self._echo(f"{child.name:>8} | {line}")

    def _wait_listening(self, child: Child, timeout: float = 15.0) -> None:
        assert child.port is not None
        try:
            wait_for_port(child.port, timeout=timeout, process=child.process)
        except EmbeddedError as exc:
            raise UpError(f"{child.name} did not start: {exc}\n{child.tail()}") from None

    def _wait_healthy(self, child: Child, timeout: float = 20.0) -> None:
        assert child.port is not None and child.process is not None
        url = f"http://127.0.0.1:{child.port}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise UpError(
                    f"{child.name} exited with status {child.process.returncode} during start-up:\n"
                    f"{child.tail()}"
                )
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise UpError(f"{child.name} did not answer {url} within {timeout:.0f} s:\n{child.tail()}")

    def _wait_producer(self, child: Child, timeout: float = 30.0) -> None:
        """Wait for the producer's first heartbeat, so bad input fails ``up`` instead of a later log line.

        A producer that cannot open its source, or was given an unknown detector, exits at once;
        one whose network camera is down keeps heartbeating ``offline`` and counts as started.
        """
        import redis

        assert child.process is not None
        client = redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if child.process.poll() is not None:
                    raise UpError(f"producer exited with status {child.process.returncode}:\n{child.tail()}")
                with contextlib.suppress(redis.RedisError):
                    if client.exists(wire.status_key(self.config.stream)):
                        return
                time.sleep(0.1)
        finally:
            client.close()
        raise UpError(f"producer sent no heartbeat within {timeout:.0f} s:\n{child.tail()}")

    def _terminate(self, child: Child, timeout: float) -> None:
        process = child.process
        if process is None or process.poll() is not None:
            return
        child.expected_exit = True
        # nginx stops gracefully on SIGQUIT; SIGTERM is its fast shutdown, which is what we want here.
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._say(f"{child.name} did not stop within {timeout:.0f} s; killing it")
            process.kill()
            process.wait(timeout=5)

    def _say(self, message: str) -> None:
        if self._echo is not None:
            self._echo(f"framecast up: {message}")

    def _supervise(self) -> None:
        while not self._stopping.wait(0.2):
            for child in list(self.children.values()):
                process = child.process
                if process is None or process.poll() is None or child.expected_exit:
                    continue
                status = process.returncode
                if child.name == "producer" and status == 0:
                    self._say("producer finished (its source ended); the rest keeps serving")
                    child.expected_exit = True
                    continue
                now = time.monotonic()
                if child._next_start == 0.0:
                    delay = min(10.0, 0.5 * 2**child.restarts)
                    child._next_start = now + delay
                    action = f"restarting in {delay:.1f} s" if self.config.restart else "not restarting"
                    self._say(f"{child.name} exited with status {status}; {action}")
                    if not self.config.restart:
                        child.expected_exit = True
                        self.failure = f"{child.name} exited with status {status}"
                elif now >= child._next_start:
                    child._next_start = 0.0
                    child.restarts += 1
                    self._launch(child)


@contextlib.contextmanager
def running(
    *,
    echo: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
    **overrides: object,
) -> Iterator[Stack]:
    """Start the local topology for the duration of a ``with`` block.

    Args:
        echo: Called with each prefixed output line of every child (None: keep quiet;
            the last lines of each child stay in ``stack.children[name].lines``).
        env: Environment of the children (default: this process's).
        **overrides: Any :class:`UpConfig` field, e.g. ``gateways=3, port=0``.

    Yields:
        The started :class:`Stack`; it is stopped when the block exits.
    """
    defaults: dict[str, object] = {"port": 0, "restart": False}
    defaults.update(overrides)
    config = UpConfig(**defaults)  # type: ignore[arg-type]
    stack = Stack(config, echo=echo, env=dict(os.environ if env is None else env))
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def main(argv: Sequence[str] | None = None, *, prog: str = "framecast up") -> int:
    """Run the local topology until Ctrl-C or SIGTERM."""
    config = settings.parse(
        UpConfig,
        argv,
        prog=prog,
        description=(
            "Run framecast's whole topology on this machine: an embedded valkey-server (unless REDIS_URL\n"
            "is set), N gateways on free loopback ports, the producer, and nginx balancing HTTP and\n"
            "WebSocket traffic across the gateways. No Docker, no camera, no root needed.\n\n"
            "Children's output is echoed with a prefix. A child that exits is reported and restarted with\n"
            "backoff (--no-restart: reported only). Ctrl-C or SIGTERM stops everything."
        ),
        epilog=(
            "Gateways and the producer also read their own FRAMECAST_* variables from the environment\n"
            "(e.g. FRAMECAST_SEND_DEADLINE, FRAMECAST_MAX_FPS): see 'framecast gateway --help' and\n"
            "'framecast producer --help'.\n\n"
            "Fatal at start (one line, exit 1): the port is in use, REDIS_URL does not answer, a source\n"
            "file or device that cannot be opened, an unknown detector (the producer's own message\n"
            "follows). Retried, not fatal: a network camera that is down (the stream shows offline),\n"
            "a child that dies later (restarted with backoff). Bad flags exit 2; Ctrl-C exits 0."
        ),
    )

    def echo(line: str) -> None:
        print(line, flush=True)

    stack = Stack(config, echo=echo, env=dict(os.environ))
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
    except (UpError, EmbeddedError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"framecast up: viewer at {stack.url}  (WebSocket: {stack.ws_url(config.stream)}; "
        f"{config.gateways} gateways; Redis {redact_url(stack.redis_url)}). Ctrl-C stops.",
        flush=True,
    )
    while not stop.wait(0.5):
        if stack.failure and not config.restart:
            break
    stack.stop()
    print("framecast up: stopped", flush=True)
    return 1 if stack.failure else 0


if __name__ == "__main__":
    sys.exit(main())
