"""Process limits a server that holds thousands of sockets needs raised."""

from __future__ import annotations

import contextlib
import resource

__all__ = ["raise_open_files_limit"]


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit, and return the limit now in force.

    Every WebSocket client costs a gateway one descriptor (and nginx two); the usual soft limit
    of 1024 would cap a process at about a thousand clients however large ``--max-connections``
    is. Children started afterwards inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft
