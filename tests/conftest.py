"""Shared fixtures: real servers and real processes, all on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from framecast.embedded import free_port, valkey_command, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@dataclass
class RedisServer:
    """A real valkey-server started for the tests."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def restart(self) -> None:
        """Stop and start again on the same port (clients must reconnect)."""
        self.stop()
        self.process = _spawn_valkey(self.port, self.workdir)


def _spawn_valkey(port: int, workdir: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        valkey_command(port, workdir=workdir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process=process, timeout=10)
    return process


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh valkey-server per test (state never leaks between tests)."""
    with tempfile.TemporaryDirectory(prefix="framecast-valkey-") as workdir:
        port = free_port()
        server = RedisServer(port, _spawn_valkey(port, workdir), workdir)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def child_env() -> dict[str, str]:
    """Environment for child processes: this checkout importable, no stray FRAMECAST_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMECAST_") and k != "REDIS_URL"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
