"""The soak scenario of the fault suite (issue 12): steady load, clients churning, nothing growing.

While the suite's clients keep reading, ``churners`` more clients connect through nginx, read
for a moment and close, over and over, for ``duration`` seconds. The gateways' RSS, open fds and
asyncio task count (``framecast_gateway_asyncio_tasks`` on each gateway's ``/metrics``) are
sampled throughout; once the churn stops and its connections are closed, each must be back
within its bound of the level before the churn (:data:`BOUNDS`): a leak of one descriptor, task
or buffer per connection shows as thousands after a few minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import urllib.request
from typing import TYPE_CHECKING, Any

import websockets
from websockets.asyncio.client import connect

if TYPE_CHECKING:
    from bench.fault_topology import Topology

__all__ = ["BOUNDS", "soak"]

BOUNDS = {"rss_mb": 32.0, "fds": 32, "tasks": 32}
"""Growth allowed over the pre-churn level, all gateways together, once the churn is closed."""

_SAMPLE_EVERY = 2.0
_SETTLE_TIMEOUT = 30.0


def tasks(top: Topology) -> int:
    """Sum of the gateways' asyncio task counts, read from their ``/metrics``."""
    total = 0
    for name, port in top.ports.items():
        if top.procs[name].poll() is not None:
            continue
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                text = answer.read().decode()
            for line in text.splitlines():
                if line.startswith("framecast_gateway_asyncio_tasks "):
                    total += int(float(line.split()[1]))
    return total


def _usage(top: Topology) -> dict[str, float]:
    rss, fds = top.gateway_usage()
    return {"rss_mb": round(rss / 2**20, 1), "fds": fds, "tasks": tasks(top)}


async def _churner(url: str, stop: asyncio.Event, counts: dict[str, int], rng: random.Random) -> None:
    """Connect, read for 0.2-2 s, close; again until ``stop``."""
    for _ in range(1_000_000):
        if stop.is_set():
            return
        try:
            async with connect(f"{url}/ws/default", open_timeout=20, ping_interval=None) as ws:
                counts["connects"] += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(rng.uniform(0.2, 2.0)):
                        async for _ in ws:
                            counts["messages"] += 1
        except (OSError, websockets.WebSocketException, TimeoutError):
            counts["failures"] += 1
            await asyncio.sleep(0.5)


def _within(before: dict[str, float], now: dict[str, float]) -> bool:
    return all(now[key] - before[key] <= bound for key, bound in BOUNDS.items())


async def soak(
    top: Topology, *, duration: float, churners: int, seed: int = 12
) -> tuple[float, dict[str, Any]]:
    """Churn ``churners`` clients for ``duration`` s; returns the time it ended and the figures."""
    before = await asyncio.to_thread(_usage, top)
    stop = asyncio.Event()
    counts = {"connects": 0, "messages": 0, "failures": 0}
    rng = random.Random(seed)
    workers = [asyncio.create_task(_churner(top.url, stop, counts, rng)) for _ in range(churners)]
    samples: list[dict[str, float]] = []
    started = time.monotonic()
    try:
        for _ in range(int(duration / _SAMPLE_EVERY) + 1):
            if time.monotonic() - started >= duration:
                break
            await asyncio.sleep(_SAMPLE_EVERY)
            samples.append(await asyncio.to_thread(_usage, top))
    finally:
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
    ended = time.time()
    after = await asyncio.to_thread(_usage, top)
    deadline = time.monotonic() + _SETTLE_TIMEOUT
    for _ in range(int(_SETTLE_TIMEOUT / 0.5) + 1):
        if _within(before, after) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
        after = await asyncio.to_thread(_usage, top)
    peak = {key: max([s[key] for s in samples] or [before[key]]) for key in BOUNDS}
    return ended, {
        "duration_s": round(duration, 1),
        "churners": churners,
        **counts,
        "before": before,
        "peak": peak,
        "after": after,
        "bounds": BOUNDS,
        "flat": _within(before, after),
        "samples": len(samples),
    }
