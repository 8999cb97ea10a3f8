"""The one way tests wait: poll a condition, bounded in time and in count, never a bare sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_STEP = 0.02


def wait_until(condition: Callable[[], T], *, timeout: float = 20.0, what: str = "condition") -> T:
    """Call ``condition`` until it returns something truthy, and return that (blocking)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / _STEP) + 1):
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            break
        time.sleep(_STEP)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


async def poll(condition: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition") -> Any:
    """Like :func:`wait_until`, without blocking the event loop."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / _STEP) + 1):
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(_STEP)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
