"""Shared fixtures: real servers and real processes, all on 127.0.0.1."""

from __future__ import annotations

import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from framecast.local.embedded import free_port
from tests.support import procs
from tests.support.valkey import RedisServer, spawn_valkey

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

# Hypothesis fails an example that runs over 200 ms by default: a timing threshold, and one a
# loaded machine crosses (a video frame's round trip took 390 ms at load 17). The properties are
# about what the code does, not how fast: no deadline, for every property test of the suite.
settings.register_profile("framecast", deadline=None)
settings.load_profile("framecast")


def pytest_configure(config: pytest.Config) -> None:
    # A suite started as a background job by a non-interactive shell (`scripts/test.sh &`, some CI
    # runners) inherits SIGINT ignored, and so does every child it starts: Python then installs no
    # KeyboardInterrupt handler and asyncio.run() no Ctrl-C handler, so the SIGINT a test sends to
    # `framecast watch` is dropped by the kernel. Children get what a terminal gives them instead.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh valkey-server per test (state never leaks between tests)."""
    with tempfile.TemporaryDirectory(prefix="framecast-valkey-") as workdir:
        port = free_port()
        server = RedisServer(port, spawn_valkey(port, workdir), workdir)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def child_env() -> dict[str, str]:
    """Environment for child processes: this checkout importable, no stray FRAMECAST_* settings."""
    return procs.child_env()


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
