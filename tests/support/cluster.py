"""A real 3-primary valkey cluster on 127.0.0.1 for tests: started, joined and stopped here."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from framecast.local import launch
from framecast.local.embedded import free_port, wait_for_port

__all__ = ["Cluster", "running_cluster"]

_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))


@dataclass
class Cluster:
    """A running cluster: one primary per port, owning :data:`_RANGES` in order."""

    ports: list[int]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def node(self, port: int) -> redis.Redis:
        """A plain client to one node (no redirections followed)."""
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def owner(self, slot: int) -> int:
        """Port of the primary owning ``slot``."""
        for port, (low, high) in zip(self.ports, _RANGES, strict=True):
            if low <= slot <= high:
                return port
        raise ValueError(f"slot {slot} out of range")


def _command(client: redis.Redis, *args: str | int) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _wait_ok(clients: list[redis.Redis], *, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.05) + 1):
        infos = [_command(c, "CLUSTER", "INFO") for c in clients]
        texts = [i.decode() if isinstance(i, bytes) else str(i) for i in infos]
        if all("cluster_state:ok" in t for t in texts) and all(
            len(_command(c, "CLUSTER", "SLOTS")) == len(_RANGES) for c in clients
        ):
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise TimeoutError(f"the cluster did not reach cluster_state:ok within {timeout} s")


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster]:
    """Three cluster-enabled valkey-servers, slots assigned, joined, ``cluster_state:ok``."""
    with tempfile.TemporaryDirectory(prefix="framecast-cluster-") as workdir:
        cluster = Cluster([free_port() for _ in _RANGES])
        buses = [free_port() for _ in _RANGES]
        clients: list[redis.Redis] = []
        try:
            for port, bus in zip(cluster.ports, buses, strict=True):
                # The bus defaults to port + 10000, which may not exist for a high ephemeral port.
                spec = launch.Valkey(
                    port=port,
                    workdir=Path(workdir),
                    args=(
                        *(
                            "--cluster-enabled",
                            "yes",
                            "--cluster-config-file",
                            f"{workdir}/nodes-{port}.conf",
                        ),
                        *("--cluster-port", str(bus)),
                    ),
                )
                cluster.processes.append(
                    subprocess.Popen(spec.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )
            for port, process in zip(cluster.ports, cluster.processes, strict=True):
                wait_for_port(port, timeout=10, process=process)
                clients.append(cluster.node(port))
            for client, (low, high) in zip(clients, _RANGES, strict=True):
                _command(client, "CLUSTER", "ADDSLOTSRANGE", low, high)
            for port, bus in zip(cluster.ports[1:], buses[1:], strict=True):
                _command(clients[0], "CLUSTER", "MEET", "127.0.0.1", port, bus)
            _wait_ok(clients)
            yield cluster
        finally:
            for client in clients:
                client.close()
            for process in cluster.processes:
                process.terminate()
            for process in cluster.processes:
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
