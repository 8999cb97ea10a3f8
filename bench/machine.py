"""What the benchmark runs on, and what each process costs, read from ``/proc``.

CPU time comes from ``/proc/<pid>/stat`` (``utime + stime``), the figure that
survives a machine shared with other work: wall-clock rates drop when a
neighbour takes the CPU, CPU seconds per delivery do not.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import re
import resource
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["Usage", "cpu_seconds", "cpu_times", "describe", "raise_fd_limit", "rss_bytes", "tree", "usage"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds the process has used so far.

    Raises:
        OSError: The process does not exist (any more).
    """
    fields = _stat_fields(pid)
    # After the name: state is index 0, so utime (field 14) is index 11 and stime (15) index 12.
    return int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far.

    Raises:
        OSError: The process does not exist (any more).
    """
    user, system = cpu_times(pid)
    return user + system


def rss_bytes(pid: int) -> int:
    """Resident set size of the process, in bytes (0 if it is gone)."""
    try:
        return int(_stat_fields(pid)[21]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (nginx's master and its workers, for instance)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry.name))[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 10_000:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


@dataclass(frozen=True)
class Usage:
    """CPU seconds (user + system, and user alone) and RSS of a set of processes at one instant."""

    cpu: float
    rss: int
    user: float = 0.0


def usage(pids: Iterable[int]) -> Usage:
    """Summed CPU seconds and RSS of ``pids``; processes that are gone count as zero."""
    cpu, user, rss = 0.0, 0.0, 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            own_user, own_system = cpu_times(pid)
            cpu += own_user + own_system
            user += own_user
            rss += rss_bytes(pid)
    return Usage(cpu, rss, user)


def raise_fd_limit(wanted: int) -> None:
    """Raise this process's open-file limit towards ``wanted`` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _binary_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def describe() -> dict[str, Any]:
    """The machine, the versions and the date, stated next to every figure."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count() or 0,
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "websockets": _version("websockets"),
        "redis_py": _version("redis"),
        "hiredis": _version("hiredis"),
        "numpy": _version("numpy"),
        "opencv": _version("opencv-python-headless"),
        "framecast": _version("framecast"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    with contextlib.suppress(Exception):
        from framecast.local.embedded import nginx_binary, valkey_binary

        valkey = _binary_version([str(valkey_binary()), "--version"])
        nginx = _binary_version([str(nginx_binary()), "-v"])
        found = re.search(r"v=(\S+)", valkey)
        info["valkey"] = found.group(1) if found else valkey
        found = re.search(r"nginx/(\S+)", nginx)
        info["nginx"] = found.group(1) if found else nginx
    return info
