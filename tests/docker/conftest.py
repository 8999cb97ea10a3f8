"""A Docker Engine for the `docker` tests: prepared by scripts/ci-docker.sh, stopped if we started it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.docker._compose import ROOT, docker


def _engine_answers() -> bool:
    try:
        docker("info", timeout=30)
    except (AssertionError, OSError, subprocess.TimeoutExpired):
        return False
    return True


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[None]:
    """Install docker.io/docker-compose/debootstrap if missing, start dockerd, build the stand-ins."""
    was_running = _engine_answers()
    # Cold: debootstrap (~1 min) and three image builds; warm: a few `docker image inspect`s.
    subprocess.run(["bash", str(ROOT / "scripts/ci-docker.sh")], check=True, timeout=900, env=os.environ)
    try:
        yield
    finally:
        if not was_running:
            subprocess.run(["bash", str(ROOT / "scripts/ci-docker.sh"), "stop"], check=False, timeout=120)
