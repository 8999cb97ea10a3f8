"""Event-loop lag probe: a task that sleeps 1 ms and records how late it wakes up.

Anything that holds the loop (a fan-out to 1000 clients, a burst of Redis
messages read without yielding, a predictor run on the loop thread) shows up
as lag, because the probe cannot run until the loop is free again.

Two ways in:

* :class:`LoopProbe` inside a process the benchmark owns (``bench.server``).
* :func:`install_from_env` from a ``sitecustomize`` module the benchmark puts on
  ``PYTHONPATH`` of a process it does not own (a real gateway or producer): every
  event loop the process creates gets a probe that appends its samples to
  ``<BENCH_LOOP_PROBE_DIR>/lag-<pid>.bin``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from array import array
from pathlib import Path

__all__ = ["ENV_DIR", "LoopProbe", "install_from_env", "read_samples"]

ENV_DIR = "BENCH_LOOP_PROBE_DIR"
"""Environment variable naming the directory a probed process writes its samples to."""

# The loop holds tasks weakly: keep the probes that install_from_env starts alive.
_INSTALLED: list[LoopProbe] = []


class LoopProbe:
    """Measure event-loop lag with a periodic sleeper.

    Samples are kept as two flat arrays (``time.monotonic()`` at wake-up, lag
    in seconds), bounded by ``max_samples``; the newest are kept when it is hit.

    Args:
        interval: How long the probe asks to sleep, in seconds.
        max_samples: Upper bound on samples kept in memory.
        sink: Called every ``flush_every`` seconds with the new samples (interleaved
            ``t, lag`` pairs) so another process can read them.
        flush_every: Seconds between calls to ``sink``.
    """

    def __init__(
        self,
        *,
        interval: float = 0.001,
        max_samples: int = 2_000_000,
        sink: Path | None = None,
        flush_every: float = 0.25,
    ) -> None:
        self.interval = interval
        self.max_samples = max_samples
        self.times = array("d")
        self.lags = array("d")
        self._sink = sink
        self._flush_every = flush_every
        self._flushed = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="bench-loop-probe")

    async def stop(self) -> None:
        """Stop sampling (and flush what the sink has not seen)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._flush()

    def window(self, start: float, end: float) -> array[float]:
        """Lags sampled between two ``time.monotonic()`` instants."""
        return _window(self.times, self.lags, start, end)

    async def _run(self) -> None:
        interval = self.interval
        monotonic = time.monotonic
        next_flush = monotonic() + self._flush_every
        while True:
            before = monotonic()
            await asyncio.sleep(interval)
            now = monotonic()
            self.times.append(now)
            self.lags.append(max(0.0, now - before - interval))
            if len(self.times) > self.max_samples:
                half = self.max_samples // 2
                del self.times[:half]
                del self.lags[:half]
                self._flushed = max(0, self._flushed - half)
            if self._sink is not None and now >= next_flush:
                next_flush = now + self._flush_every
                self._flush()

    def _flush(self) -> None:
        if self._sink is None or self._flushed >= len(self.times):
            return
        pairs = array("d")
        for t, lag in zip(self.times[self._flushed :], self.lags[self._flushed :], strict=True):
            pairs.append(t)
            pairs.append(lag)
        with contextlib.suppress(OSError), self._sink.open("ab") as out:
            pairs.tofile(out)
        self._flushed = len(self.times)


def _window(times: array[float], lags: array[float], start: float, end: float) -> array[float]:
    import bisect

    lo = bisect.bisect_left(times, start)
    hi = bisect.bisect_right(times, end)
    return lags[lo:hi]


def read_samples(path: Path, start: float, end: float) -> array[float]:
    """Lags a probed process wrote to ``path`` between two ``time.monotonic()`` instants."""
    pairs = array("d")
    with contextlib.suppress(OSError), path.open("rb") as src:
        data = src.read()
        pairs.frombytes(data[: len(data) - len(data) % (2 * pairs.itemsize)])
    return _window(pairs[0::2], pairs[1::2], start, end)


class _ProbedPolicy(asyncio.DefaultEventLoopPolicy):
    """Gives every new event loop a probe that writes to ``directory``."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self._directory = directory

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = super().new_event_loop()
        sink = self._directory / f"lag-{os.getpid()}.bin"
        probe = LoopProbe(sink=sink)
        _INSTALLED.append(probe)
        loop.call_soon(probe.start)
        return loop


def install_from_env() -> None:
    """Probe every event loop of this process if ``BENCH_LOOP_PROBE_DIR`` is set (else do nothing)."""
    directory = os.environ.get(ENV_DIR)
    if directory:
        asyncio.set_event_loop_policy(_ProbedPolicy(Path(directory)))
