"""``framecast up``: the production topology on one machine.

Starts, in order, an embedded valkey-server (unless ``REDIS_URL`` points at a
Redis), N gateway processes on free loopback ports, the producer (or one producer
per camera of ``--config``/``--camera``, see :mod:`framecast.local.cameras`), and nginx
balancing HTTP and WebSocket traffic across the gateways. Every child's output
is echoed with a prefix; a child that exits is reported and restarted with
backoff; Ctrl-C or SIGTERM stops them all and removes the temporary directory.

The same machinery is a context manager for tests and benchmarks::

    with running(gateways=2, port=0) as stack:
        print(stack.url, stack.ws_url("default"))
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framecast import settings, wire
from framecast.exceptions import ConfigError, EmbeddedError, UpError
from framecast.limits import raise_open_files_limit
from framecast.local import cameras, launch, monitoring, predictors
from framecast.local.cameras import Camera, CameraError
from framecast.local.embedded import free_port, port_in_use
from framecast.local.nginx import client_capacity, tls_directives, worker_connections_for
from framecast.local.predictors import SharedPredictor
from framecast.local.supervisor import Child, Supervisor
from framecast.logs import redact_url
from framecast.settings import option
from producer.config import Config as ProducerConfig

__all__ = ["Stack", "UpConfig", "main", "resolve_cameras", "running"]

# A gateway's own --max-connections default: the most `framecast up` gives one.
_GATEWAY_CONNECTIONS = 10000

# Seconds a producer has to send its first heartbeat once launched.
_PRODUCER_START = 30.0


def _tls(config: UpConfig, port: int) -> str:
    """The nginx TLS listener of ``config`` (nothing without a certificate)."""
    if not (config.tls_cert and config.tls_key):
        return ""
    cert, key = Path(config.tls_cert).resolve(), Path(config.tls_key).resolve()
    return tls_directives(f"{config.host}:{port}", cert, key)


def _readable(value: str) -> None:
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"{value!r} is not a file")
    try:
        path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {value!r}: {exc.strerror}") from None


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
    max_connections: int = option(
        0,
        help="--max-connections of each gateway (503 past it). 0: what nginx can proxy, shared "
        "among the gateways, at most 10000 each. More in total than nginx can proxy is refused at "
        "start: nginx would drop the excess itself instead of the gateways answering 503.",
        env="FRAMECAST_UP_MAX_CONNECTIONS",
        check=settings.non_negative,
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
    tls_cert: str | None = option(
        None,
        help="Certificate chain (PEM) for HTTPS on --tls-port beside HTTP; with --tls-key. Browsers "
        "decode the viewer's video only over HTTPS or from localhost.",
        env="FRAMECAST_UP_TLS_CERT",
        metavar="PATH",
        check=_readable,
        group="tls",
    )
    tls_key: str | None = option(
        None,
        help="The certificate's private key (PEM); with --tls-cert.",
        env="FRAMECAST_UP_TLS_KEY",
        metavar="PATH",
        check=_readable,
        group="tls",
    )
    tls_port: int = option(
        8443,
        help="Port of the HTTPS listener (0 picks a free one); used with --tls-cert.",
        env="FRAMECAST_UP_TLS_PORT",
        check=settings.port_number,
        group="tls",
    )
    source: str = option(
        "synthetic",
        help="Camera for the producer: device index, file, rtsp:// or http(s):// URL, or 'synthetic'"
        " (single-producer mode: not used with cameras).",
        group="producer",
    )
    detector: str = option(
        "motion",
        help="Predictor: motion, faces, people, qr, onnx:PATH or module:callable"
        " (single-producer mode: with cameras, set detector per camera).",
        group="producer",
    )
    stream: str = option(
        "default",
        help="Stream name the producer publishes (single-producer mode: a camera's stream is its name).",
        group="producer",
    )
    producer: bool = option(
        True,
        help="Start a producer (--no-producer to run only Redis, gateways and nginx).",
        env="FRAMECAST_UP_PRODUCER",
        group="producer",
    )
    config: str | None = option(
        None,
        help="Camera file (TOML, one [cameras.<name>] table per camera): one producer per camera,"
        " each publishing the stream named after it. Combines with --camera.",
        env="FRAMECAST_UP_CONFIG",
        metavar="PATH",
        group="cameras",
    )
    cameras: tuple[Camera, ...] = ()
    """The cameras to run, one producer each (from ``--config`` and ``--camera``); empty: the
    single producer of ``source``/``detector``/``stream``. Not a flag: :func:`main` fills it."""
    predictors: tuple[SharedPredictor, ...] = ()
    """The shared inference workers the cameras use (``[predictors.<name>]`` of ``--config``), one
    child ``predictor-<name>`` each, started before the producers. Not a flag: :func:`main` fills it."""
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
    monitoring: bool = option(
        False,
        help="Also run a real Prometheus (Debian's prometheus package, or $FRAMECAST_PROMETHEUS) "
        "scraping every gateway and producer, with deploy/prometheus/alerts.yml when present.",
        env="FRAMECAST_UP_MONITORING",
        group="monitoring",
    )
    monitoring_port: int = option(
        0,
        help="Port Prometheus listens on, on 127.0.0.1 (0 picks a free one).",
        env="FRAMECAST_UP_MONITORING_PORT",
        check=settings.port_number,
        group="monitoring",
    )
    monitoring_interval: float = option(
        5.0,
        help="Seconds between Prometheus scrapes and rule evaluations.",
        env="FRAMECAST_UP_MONITORING_INTERVAL",
        check=settings.positive,
        group="monitoring",
    )


class Stack:
    """A running local topology: valkey, gateways, producer and nginx."""

    def __init__(self, config: UpConfig, *, echo: Callable[[str], None] | None, env: dict[str, str]) -> None:
        self.config = config
        self._env = env
        self._tmp = tempfile.TemporaryDirectory(prefix="framecast-up-")
        self.workdir = Path(self._tmp.name)
        # nginx workers drop root privileges to "nobody" and must still reach their temp paths.
        self.workdir.chmod(0o755)
        self._children = Supervisor(
            echo=echo, cwd=self.workdir, restart=config.restart, finished=_producer_finished
        )
        self.port = config.port or free_port(config.host)
        self.tls_port = (config.tls_port or free_port(config.host)) if config.tls_cert else 0
        self.redis_url = config.redis_url or ""
        self._open_files = 1024
        self._gateway_connections = _GATEWAY_CONNECTIONS
        self.prometheus: launch.Prometheus | None = None
        """Prometheus (its ``url``) with ``--monitoring``, once started."""

    # Public API ------------------------------------------------------------

    @property
    def children(self) -> dict[str, Child]:
        """Every child by name, in start order."""
        return self._children.children

    @property
    def failure(self) -> str | None:
        """Why a child is down for good (with ``restart=False``), or None."""
        return self._children.failure

    @property
    def url(self) -> str:
        """The viewer's URL (through nginx)."""
        return f"http://{self.config.host}:{self.port}/"

    @property
    def tls_url(self) -> str | None:
        """The viewer's HTTPS URL (through nginx), with ``--tls-cert``."""
        return f"https://{self.config.host}:{self.tls_port}/" if self.tls_port else None

    def ws_url(self, stream: str | None = None) -> str:
        """WebSocket URL through nginx: ``/ws/<stream>``, or ``/ws`` for the multiplexed endpoint."""
        base = f"ws://{self.config.host}:{self.port}/ws"
        return f"{base}/{stream}" if stream else base

    @property
    def gateways(self) -> list[Child]:
        """The gateway children, in start order."""
        return [c for name, c in self.children.items() if name.startswith("gw")]

    @property
    def streams(self) -> list[str]:
        """The streams the stack's producers publish (one per camera), in start order."""
        if not self.config.producer:
            return []
        return [stream for _, stream in _producer_names(self.config)]

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
        if self.tls_port and port_in_use(self.tls_port, self.config.host):
            raise UpError(
                f"port {self.tls_port} on {self.config.host} is in use: "
                "pass --tls-port (or set FRAMECAST_UP_TLS_PORT) to choose another"
            )
        if self.redis_url:
            self._check_redis()
        prometheus_binary = monitoring.prometheus_binary() if self.config.monitoring else None
        self._open_files = raise_open_files_limit()
        self._gateway_connections = self._connections_per_gateway()
        try:
            self._start_all(prometheus_binary)
        except BaseException:
            self.stop()
            raise
        self._children.watch()

    def _connections_per_gateway(self) -> int:
        """Each gateway's --max-connections: all of them together within what nginx can proxy."""
        gateways = self.config.gateways
        room = client_capacity(workers=1, worker_connections=worker_connections_for(self._open_files))
        if not self.config.max_connections:
            return max(1, min(_GATEWAY_CONNECTIONS, room // gateways))
        if gateways * self.config.max_connections > room:
            raise ConfigError(
                f"--gateways {gateways} x --max-connections {self.config.max_connections} = "
                f"{gateways * self.config.max_connections} clients, but nginx can proxy {room} "
                f"(open-files limit {self._open_files}, two per client): lower --max-connections "
                "(FRAMECAST_UP_MAX_CONNECTIONS) or raise 'ulimit -n'"
            )
        return self.config.max_connections

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every child in reverse dependency order and remove the temp dir.

        The producer first, then the gateways, which close their clients with 1001 through the
        still-running nginx (stopped first, nginx would leave every client a bare 1006), then
        nginx, then valkey.
        """
        self._children.stop_watching()
        producers = [name for name, _ in _producer_names(self.config)]
        shared = [f"predictor-{p.name}" for p in self.config.predictors]
        stages = [producers, shared, [g.name for g in self.gateways], ["nginx"], ["valkey"]]
        staged = {name for names in stages for name in names}
        # Anything not named above (none today) goes before the gateways' Redis and nginx stop.
        stages.insert(1, [name for name in reversed(self.children) if name not in staged])
        for names in stages:
            self._children.terminate(
                *(self.children[n] for n in names if n in self.children), timeout=timeout
            )
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

    def _start(self, name: str, spec: launch.Spec, *, wait: bool = False, timeout: float = 15.0) -> Child:
        """Start one child from its spec; with ``wait``, return once its port answers."""
        spec.prepare()
        child = self._children.add(name, spec.argv(), port=spec.port, env=spec.env())
        self._children.launch(child)
        if wait:
            self._children.wait_listening(child, timeout=timeout)
        return child

    def _start_all(self, prometheus_binary: str | None = None) -> None:
        valkey_port = None if self.redis_url else free_port()
        if valkey_port is not None:
            self.redis_url = f"redis://127.0.0.1:{valkey_port}/0"
        # REDIS_URL travels in the environment, not argv, where `ps` would show its password.
        self._children.env = {**self._env, "REDIS_URL": self.redis_url}
        if valkey_port is not None:
            valkey = launch.Valkey(port=valkey_port, workdir=self.workdir / "valkey")
            self._start("valkey", valkey, wait=True)
        for index in range(1, self.config.gateways + 1):
            name = f"gw{index}"
            spec = launch.Gateway(
                id=name,
                port=free_port(),
                max_connections=self._gateway_connections,
                log_level=self.config.log_level,
            )
            self._start(name, spec)
        for gateway in self.gateways:
            self._wait_healthy(gateway)
        # Metrics ports first: Prometheus's configuration names every producer's (and every
        # inference worker's, scraped with the producers).
        worker_ports: list[int] = []
        sockets = self._start_predictors(worker_ports if prometheus_binary else None)
        specs = _producer_specs(self.config, sockets, self.workdir) if self.config.producer else []
        producers = [
            (name, dataclasses.replace(spec, metrics_port=free_port()) if prometheus_binary else spec)
            for name, spec in specs
        ]
        nginx = launch.Nginx(
            port=self.port,
            host=self.config.host,
            upstreams=tuple(f"127.0.0.1:{g.port}" for g in self.gateways),
            workdir=self.workdir,
            open_files=self._open_files,
            tls=_tls(self.config, self.tls_port),
        )
        self._start("nginx", nginx, wait=True)
        if prometheus_binary:
            metrics = [*worker_ports, *(spec.metrics_port for _, spec in producers if spec.metrics_port)]
            self.prometheus = launch.Prometheus(
                binary=prometheus_binary,
                workdir=self.workdir,
                port=self.config.monitoring_port or free_port(),
                gateways=tuple(f"127.0.0.1:{g.port}" for g in self.gateways),
                producers=tuple(f"127.0.0.1:{port}" for port in metrics),
                scrape_interval=f"{self.config.monitoring_interval:g}s",
            )
            self._start("prometheus", self.prometheus, wait=True, timeout=30.0)
        self._start_producers(producers)

    def _start_producers(self, producers: list[tuple[str, launch.Producer]]) -> None:
        """Start the producers a few at a time, each counted as started at its first heartbeat.

        A producer's start (importing OpenCV and numpy, loading its predictor, opening its
        source) takes a core for a second or more: all at once, a few dozen cameras made the
        machine unusable (load 45 on two cores) and the stack slow to answer a signal. At most
        one per core starts at a time; each of them has ``_PRODUCER_START`` seconds to send its
        first heartbeat, so a camera that cannot open its file or load its detector fails
        ``up`` here, naming it, rather than in a log line later.
        """
        import redis

        window = max(1, os.cpu_count() or 1)
        streams = dict(_producer_names(self.config))
        client = redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)
        starting: dict[str, float] = {}  # child name -> deadline of its first heartbeat
        queue = list(producers)
        try:
            for _ in range(100_000):
                while queue and len(starting) < window:
                    name, spec = queue.pop(0)
                    self._start(name, spec)
                    starting[name] = time.monotonic() + _PRODUCER_START
                if not starting:
                    return
                for name, deadline in list(starting.items()):
                    if self._producer_started(self.children[name], streams[name], client, deadline):
                        del starting[name]
                time.sleep(0.1)
        finally:
            client.close()

    def _producer_started(self, child: Child, stream: str, client: Any, deadline: float) -> bool:
        """Whether ``child`` has sent its first heartbeat; raises UpError if it exited or never will."""
        import redis

        assert child.process is not None
        if child.process.poll() is not None:
            raise UpError(f"{child.name} exited with status {child.process.returncode}:\n{child.tail()}")
        with contextlib.suppress(redis.RedisError):
            if client.exists(wire.status_key(stream)):
                return True
        if time.monotonic() < deadline:
            return False
        output = child.tail()
        if not output.strip():
            # Nothing printed and no heartbeat: it is stuck before its first line, most likely in
            # opening its source (a named pipe with no writer, a device or URL that never answers).
            output = (
                "(it printed nothing: it is stuck starting, most likely opening its source -- a "
                "named pipe (FIFO) with no writer, or a device or URL that never answers)"
            )
        raise UpError(f"{child.name} sent no heartbeat within {_PRODUCER_START:.0f} s:\n{output}")

    def _start_predictors(self, metrics_ports: list[int] | None) -> dict[str, str]:
        """Start one inference worker per shared predictor and wait until each answers on its socket.

        Before the producers, so a model that cannot be loaded (or a device that is not installed)
        fails ``up`` naming it. Returns each predictor's socket by name.
        """
        sockets: dict[str, str] = {}
        for index, predictor in enumerate(self.config.predictors, 1):
            spec = predictor.spec(self.workdir, index=index, log_level=self.config.log_level)
            if metrics_ports is not None:
                metrics_ports.append(free_port())
                spec = dataclasses.replace(spec, metrics_port=metrics_ports[-1])
            sockets[predictor.name] = spec.socket
            self._start(f"predictor-{predictor.name}", spec)
        for predictor in self.config.predictors:
            child = self.children[f"predictor-{predictor.name}"]
            assert child.process is not None
            why = predictors.wait_listening(sockets[predictor.name], child.process)
            if why:
                raise UpError(f"{child.name} {why}:\n{child.tail()}")
        return sockets

    def _wait_healthy(self, child: Child, timeout: float = 20.0) -> None:
        assert child.port is not None and child.process is not None
        # /readyz, not /healthz: a gateway refuses WebSocket handshakes until its Redis
        # subscription is up, and `up` announces the viewer only once clients can connect.
        url = f"http://127.0.0.1:{child.port}/readyz"
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


def _producer_names(config: UpConfig) -> list[tuple[str, str]]:
    """``(child name, stream)`` of every producer: one per camera, or the single ``producer``."""
    if config.cameras:
        return [(f"producer-{camera.name}", camera.name) for camera in config.cameras]
    return [("producer", config.stream)]


def _producer_specs(
    config: UpConfig, sockets: Mapping[str, str] | None = None, workdir: Path | None = None
) -> list[tuple[str, launch.Producer]]:
    """``(child name, spec)`` of every producer.

    A camera's own settings come last, so a per-camera log_level wins over up's. A camera with a
    shared predictor gets the socket of its worker (``sockets``, by predictor name). A camera's
    zones and lines become a ``--zones`` file in ``workdir``.
    """
    if config.cameras:
        return [
            (
                f"producer-{camera.name}",
                launch.Producer(
                    log_level=config.log_level,
                    predictor_socket=(sockets or {})[camera.predictor] if camera.predictor else None,
                    zones=_zones_file(camera, workdir),
                    args=tuple(camera.argv()),
                    extra_env=camera.env(),
                ),
            )
            for camera in config.cameras
        ]
    single = launch.Producer(
        log_level=config.log_level, stream=config.stream, detector=config.detector, source=config.source
    )
    return [("producer", single)]


def _zones_file(camera: Camera, workdir: Path | None) -> str | None:
    """The ``--zones`` file of a camera with zones or lines (written into ``workdir``), else None."""
    if not camera.layout or workdir is None:
        return None
    path = workdir / f"zones-{camera.name}.toml"
    path.write_text(camera.layout.to_toml())
    return str(path)


def _producer_finished(child: Child, status: int) -> str | None:
    """A producer that exits 0 has reached the end of its source: done, not failed."""
    if (child.name == "producer" or child.name.startswith("producer-")) and status == 0:
        return f"{child.name} finished (its source ended); the rest keeps serving"
    return None


def resolve_cameras(
    config: UpConfig, args: argparse.Namespace, *, environ: Mapping[str, str]
) -> tuple[Camera, ...]:
    """The cameras of ``--config`` and ``--camera`` (or ``FRAMECAST_CAMERAS``), checked.

    Each camera's settings are checked with the producer's own settings class, so a camera
    accepts exactly what ``framecast producer`` accepts. With cameras, the single-producer flags
    ``--source``, ``--detector``, ``--stream`` and ``--no-producer`` are refused rather than
    silently ignored (their environment variables are ignored: children read them too).

    Raises:
        CameraError: One line naming the file, camera or flag and the key at fault.
    """
    specs = args.camera if args.camera is not None else cameras.split_specs(environ.get(cameras.ENV, ""))
    found = cameras.resolve(
        config.config, specs, check=lambda key, value: settings.check_value(ProducerConfig, key, value)
    )
    if found:
        given = [f"--{flag}" for flag in ("source", "detector", "stream") if getattr(args, flag) is not None]
        if not config.producer:
            given.append("--no-producer")
        if given:
            raise CameraError(
                f"{given[0]} is for the single producer and cannot be combined with --config/--camera:"
                " set source, detector... per camera instead (e.g. --camera NAME=SOURCE,detector=qr)"
            )
    return found


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


class _Interrupted(BaseException):
    """SIGINT or SIGTERM during start-up (a BaseException: no ``except Exception`` may swallow it)."""


def main(argv: Sequence[str] | None = None, *, prog: str = "framecast up") -> int:
    """Run the local topology until Ctrl-C or SIGTERM."""
    config, args = settings.parse_with_args(
        UpConfig,
        argv,
        prog=prog,
        extra=cameras.add_flag,
        description=(
            "Run framecast's whole topology on this machine: an embedded valkey-server (unless REDIS_URL\n"
            "is set), N gateways on free loopback ports, the producer, and nginx balancing HTTP and\n"
            "WebSocket traffic across the gateways. No Docker, no camera, no root needed.\n\n"
            "Children's output is echoed with a prefix. A child that exits is reported and restarted with\n"
            "backoff (--no-restart: reported only). Ctrl-C or SIGTERM stops everything.\n\n" + cameras.SUMMARY
        ),
        epilog=(
            "Gateways and the producer also read their own FRAMECAST_* variables from the environment\n"
            "(e.g. FRAMECAST_SEND_DEADLINE, FRAMECAST_MAX_FPS): see 'framecast gateway --help' and\n"
            "'framecast producer --help'.\n\n"
            "Fatal at start (one line, exit 1): the port is in use, REDIS_URL does not answer, a source\n"
            "file or device that cannot be opened, an unknown detector (the producer's own message\n"
            "follows). Retried, not fatal: a network camera that is down (the stream shows offline),\n"
            "a child that dies later (restarted with backoff). Bad flags exit 2, and so does\n"
            "--monitoring without Prometheus (install Debian's prometheus package or set\n"
            "FRAMECAST_PROMETHEUS); Ctrl-C or SIGTERM exits 0, also during start-up (what had\n"
            "started is stopped).\n\n" + cameras.EXAMPLE
        ),
    )
    stop = threading.Event()
    starting = [True]

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        if starting[0]:
            # Interrupt start-up wherever it is (a child starting, a wait): Stack.start stops what
            # it started. Once only, so a second Ctrl-C cannot interrupt that clean-up.
            starting[0] = False
            raise _Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def echo(line: str) -> None:
        print(line, flush=True)

    stack: Stack | None = None
    try:
        config = dataclasses.replace(config, cameras=resolve_cameras(config, args, environ=os.environ))
        config = dataclasses.replace(config, predictors=predictors.resolve(config.config, config.cameras))
        if bool(config.tls_cert) != bool(config.tls_key):
            given, missing = ("--tls-cert", "--tls-key") if config.tls_cert else ("--tls-key", "--tls-cert")
            return settings.fail(
                prog, f"{given} needs {missing} (the certificate and its key go together)", 2
            )
        stack = Stack(config, echo=echo, env=dict(os.environ))
        stack.start()
        starting[0] = False
    except _Interrupted as exc:
        if stack is not None:
            stack.stop()  # start() stopped what it had started; this covers a signal just after it
        print(f"{prog}: {exc} during start-up: stopped", file=sys.stderr, flush=True)
        return 0
    except CameraError as exc:
        return settings.fail(prog, str(exc), 2)
    except (monitoring.MonitoringError, ConfigError) as exc:  # a setup problem, like a bad flag
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except (UpError, EmbeddedError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        starting[0] = False
    streams = ", ".join(stack.streams) or "none"
    print(
        f"framecast up: viewer at {stack.url}  (WebSocket: {stack.ws_url()}/<stream>; streams: {streams}; "
        f"{config.gateways} gateways; Redis {redact_url(stack.redis_url)}). Ctrl-C stops.",
        flush=True,
    )
    if stack.tls_url is not None:
        print(
            f"framecast up: viewer over HTTPS at {stack.tls_url} (live video for remote browsers)", flush=True
        )
    if stack.prometheus is not None:
        print(f"framecast up: Prometheus at {stack.prometheus.url}", flush=True)
    while not stop.wait(0.5):
        if stack.failure and not config.restart:
            break
    stack.stop()
    print("framecast up: stopped", flush=True)
    return 1 if stack.failure else 0


if __name__ == "__main__":
    sys.exit(main())
