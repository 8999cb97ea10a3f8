"""Drive docker-compose.yml on a real Docker Engine: a project, its containers, their health."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
# Debian's client speaks to Debian's 20.10 daemon; a newer client elsewhere on PATH may not.
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else (shutil.which("docker") or "docker")
COMPOSE = shutil.which("docker-compose") or "docker-compose"


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    """Run ``docker ARGS`` and return its stdout (raise with its stderr on failure)."""
    out = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and out.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout


def docker_ok(*args: str, timeout: float = 60) -> bool:
    """Whether ``docker ARGS`` exits 0."""
    return subprocess.run([DOCKER, *args], capture_output=True, timeout=timeout, check=False).returncode == 0


@dataclass
class Project:
    """One compose project made by a test: ``docker-compose -p NAME`` with its own published ports."""

    name: str
    env: dict[str, str]
    profiles: Sequence[str] = ()
    log: list[str] = field(default_factory=list)
    _dangling_before: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        # Build stages leave untagged images behind; down() removes the ones this project made.
        self._dangling_before = set(_dangling())

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        """Run ``docker-compose -p NAME ARGS`` in the repository root and return its stdout."""
        profiles = [arg for p in self.profiles for arg in ("--profile", p)]
        command = [COMPOSE, "-p", self.name, *profiles, *args]
        out = subprocess.run(
            command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        self.log.append(f"$ {' '.join(command)}\n{out.stdout}{out.stderr}")
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
        return out.stdout

    def containers(self, service: str) -> list[str]:
        """Ids of the service's running containers (replica order is not meaningful)."""
        return self.compose("ps", "-q", service, timeout=60).split()

    def health(self, container: str) -> str:
        """Docker's health status of a container: starting, healthy, unhealthy (or its state)."""
        state = json.loads(docker("inspect", "-f", "{{json .State}}", container))
        return str(state["Health"]["Status"] if state.get("Health") else state["Status"])

    def wait_healthy(self, service: str, count: int, *, timeout: float = 180) -> list[str]:
        """Wait until the service has ``count`` containers, all healthy; return their ids."""

        def ready() -> list[str]:
            ids = self.containers(service)
            return ids if len(ids) == count and all(self.health(c) == "healthy" for c in ids) else []

        return wait_until(ready, timeout=timeout, what=f"{count} healthy {service} container(s)")

    def hostname(self, container: str) -> str:
        """The container's hostname: the first part of its gateway id (``<hostname>-<pid>``)."""
        return docker("inspect", "-f", "{{.Config.Hostname}}", container).strip()

    def started_at(self, container: str) -> str:
        return docker("inspect", "-f", "{{.State.StartedAt}}", container).strip()

    def down(self) -> None:
        """Remove every container, network, volume and built image of the project."""
        self.compose("down", "--volumes", "--rmi", "local", "--remove-orphans", "--timeout", "5", check=False)
        made = [image for image in _dangling() if image not in self._dangling_before]
        if made:
            docker("rmi", *made, check=False)


def _dangling() -> list[str]:
    return docker("images", "-q", "--no-trunc", "--filter", "dangling=true").split()
