"""The fault suite's topology: valkey, a TCP proxy, gateways, the producer and nginx (bench/faults.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from bench.procs import wait_http
from framecast.limits import raise_open_files_limit
from framecast.local import launch
from framecast.local.embedded import free_port, wait_for_port
from framecast.local.procs import child_env

if TYPE_CHECKING:
    from bench.faults import FaultsConfig

__all__ = ["ROOT", "Topology"]

ROOT = Path(__file__).resolve().parents[1]


class Topology:
    """valkey, a fault proxy, gateways, the producer and nginx, each a real process."""

    def __init__(self, config: FaultsConfig) -> None:
        from tests.support.proxy import Proxy  # run from a checkout

        self.config = config
        self.open_files = raise_open_files_limit()
        self._tmp = tempfile.TemporaryDirectory(prefix="framecast-faults-")
        self.workdir = Path(self._tmp.name)
        self.workdir.chmod(0o755)
        self.redis_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.start_valkey()
        self.proxy = Proxy(self.redis_port)
        self.proxy.start()
        for i in range(1, config.gateways + 1):
            self.ports[f"gw{i}"] = free_port()
            self.start_gateway(f"gw{i}")
        self.start_producer()
        self.nginx_port = free_port()
        self.start_nginx()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.nginx_port}"

    def _spawn(self, name: str, spec: launch.Spec) -> None:
        spec.prepare()
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.procs[name] = subprocess.Popen(
            spec.argv(), stdout=log, stderr=subprocess.STDOUT, env=child_env(spec.env()), cwd=ROOT
        )

    def start_valkey(self) -> None:
        self._spawn("valkey", launch.Valkey(port=self.redis_port, workdir=self.workdir / "valkey"))
        wait_for_port(self.redis_port, timeout=10)

    def start_gateway(self, name: str) -> None:
        gateway = launch.Gateway(
            id=name,
            port=self.ports[name],
            redis_url=f"redis://127.0.0.1:{self.proxy.port}/0",  # through the fault proxy
            max_connections=self.config.max_connections,
            log_level="WARNING",
        )
        self._spawn(name, gateway)
        wait_http(gateway.port, "/readyz")

    def start_producer(self) -> None:
        producer = launch.Producer(
            redis_url=f"redis://127.0.0.1:{self.redis_port}/0",
            source="synthetic",
            stream="default",
            detector="motion",
            log_level="WARNING",
            args=("--max-fps", "30", "--no-demand"),
        )
        self._spawn("producer", producer)

    def start_nginx(self) -> None:
        nginx = launch.Nginx(
            port=self.nginx_port,
            upstreams=tuple(f"127.0.0.1:{p}" for p in self.ports.values()),
            workdir=self.workdir,
            open_files=self.open_files,
        )
        self._spawn("nginx", nginx)
        wait_for_port(nginx.port, timeout=10)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.procs[name]
        if process.poll() is None:
            process.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            process.wait(timeout=20)

    def metric(self, name: str, metric: str) -> float:
        """One unlabelled metric of gateway ``name`` (0 when it does not answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name]}/metrics", timeout=5) as answer:
                text = answer.read().decode()
        except OSError:
            return 0.0
        for line in text.splitlines():
            if line.startswith(metric + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def gateway_usage(self) -> tuple[int, int]:
        """Sum of the gateways' RSS (bytes) and open fds now."""
        rss = fds = 0
        for name, process in self.procs.items():
            if not name.startswith("gw") or process.poll() is not None:
                continue
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{process.pid}/status").read_text()
                # A killed child not yet reaped has no VmRSS line.
                rss += next(
                    (int(ln.split()[1]) * 1024 for ln in status.splitlines() if ln.startswith("VmRSS")), 0
                )
                fds += len(os.listdir(f"/proc/{process.pid}/fd"))
        return rss, fds

    def close(self) -> None:
        for name in reversed(list(self.procs)):
            process = self.procs[name]
            if process.poll() is None:
                with contextlib.suppress(OSError):
                    os.kill(process.pid, signal.SIGCONT)
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        self.proxy.close()
        self._tmp.cleanup()
