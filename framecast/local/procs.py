"""What every child process framecast starts gets: an environment and a tie to its parent.

``framecast up``, the benchmark and the tests start gateways, producers, valkey and
nginx as children; they all use these two helpers so that a child behaves the same
whoever started it.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["ROOT", "child_env", "die_with_parent"]

ROOT = Path(__file__).resolve().parents[2]
"""The directory holding the ``framecast`` package (the checkout, for an editable install)."""

# Loaded before any fork: a child must not dlopen() between fork and exec (threads may hold its lock).
_prctl: Callable[..., int] | None
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (a ``preexec_fn``).

    A parent killed without cleaning up (SIGKILL, a crash) then leaves no orphans
    holding ports. Does nothing where ``prctl`` does not exist.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child: this checkout importable, unbuffered output,
    no stray ``FRAMECAST_*`` or ``REDIS_URL`` from the shell.

    Args:
        extra: Variables to set on top (e.g. ``{"FRAMECAST_LOG_LEVEL": "WARNING"}``).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMECAST_") and k != "REDIS_URL"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env
