"""Part 3: the producer's built-in predictors on 640x480 frames.

Two measurements per predictor:

* **alone**: the predictor called back to back on pre-rendered frames of the
  synthetic scene: frames/s, milliseconds per frame, CPU per frame.
* **in the producer**: :func:`producer.service.run` with the synthetic camera
  (30 fps), the predictor as fast as it goes (``max_fps=0``) and a 1 ms
  loop-lag probe on the producer's own event loop. The predictor is wrapped to
  note when each call starts; the n-th call made the n-th result, whose
  ``captured_at`` the producer published, so their difference is the frame's
  age at inference (capture→predict start).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.probe import LoopProbe
from bench.procs import Children, start_valkey
from bench.stats import percentiles
from framecast import wire

__all__ = ["PredictorOptions", "run"]


@dataclass(frozen=True, kw_only=True)
class PredictorOptions:
    """What part 3 runs (see ``python -m bench --help``)."""

    names: tuple[str, ...] = ("motion", "faces", "people", "qr")
    alone: float = 3.0
    service: float = 5.0
    max_frames: int = 2000


def _alone(name: str, seconds: float, max_frames: int) -> dict[str, Any]:
    from producer import detectors
    from producer.synthetic import Scene

    predictor = detectors.load(name)
    scene = Scene(width=640, height=480)
    frames = [scene.render(i) for i in range(60)]
    for frame in frames[:3]:
        predictor(frame)
    times: list[float] = []
    cpu_start = time.process_time()
    start = time.perf_counter()
    end = start + seconds
    found = 0
    for index in range(max_frames):
        before = time.perf_counter()
        if before >= end and index >= 5:
            break
        found += len(list(predictor(frames[index % len(frames)]) or ()))
        times.append(time.perf_counter() - before)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    return {
        "frames": len(times),
        "fps": round(len(times) / wall, 2),
        "ms_per_frame": percentiles(times, scale=1e3),
        "cpu_ms_per_frame": round(cpu / len(times) * 1e3, 3),
        "detections_per_frame": round(found / len(times), 2),
    }


class _Timed:
    """Wraps a predictor to note the wall-clock time each call starts."""

    def __init__(self, predictor: Callable[[Any], Iterable[Any] | None]) -> None:
        self._predictor = predictor
        self.starts: list[float] = []

    def __call__(self, image: Any) -> Iterable[Any] | None:
        self.starts.append(time.time())
        return self._predictor(image)


async def _window(
    timed: _Timed, seconds: float, stop: asyncio.Event, *, startup: float = 60.0
) -> float | None:
    """Set ``stop`` ``seconds`` after the first prediction, not after the start.

    The producer's start (camera, Redis, the predictor's first load) takes a time of its own that
    grows with the machine's load: a window counted from the start measured nothing on a busy
    machine (0 results in a 0.6 s quick run). ``startup`` bounds the wait for a first prediction.
    Returns when the first prediction started (``time.monotonic()``), or None if none did.
    """
    deadline = time.monotonic() + startup
    first: float | None = None
    while first is None and time.monotonic() < deadline and not stop.is_set():
        if timed.starts:
            first = time.monotonic()
        else:
            await asyncio.sleep(0.01)
    if first is not None:
        await asyncio.sleep(seconds)
    stop.set()
    return first


async def _service(name: str, seconds: float, redis_url: str) -> dict[str, Any]:
    from redis.asyncio import Redis

    from producer import detectors, service
    from producer.config import Config

    stream = f"bench-{name}"
    config = Config(
        source="synthetic",
        detector=name,
        max_fps=0.0,
        demand=False,
        stream=stream,
        history=100_000,
        preview_fps=0.0,
        redis_url=redis_url,
        log_level="WARNING",
    )
    timed = _Timed(detectors.load(name))
    probe = LoopProbe()
    probe.start()
    stop = asyncio.Event()
    start = time.monotonic()
    window = asyncio.create_task(_window(timed, seconds, stop))
    cpu_start = time.process_time()
    first: float | None = None
    try:
        status = await service.run(config, predictor=timed, stop=stop)
    finally:
        window.cancel()  # a no-op once it set ``stop``; it must not outlive a run that failed
        with contextlib.suppress(asyncio.CancelledError):
            first = await window
    end = time.monotonic()
    wall = end - start
    cpu = time.process_time() - cpu_start
    await probe.stop()
    lags = probe.window(start, start + wall)
    redis = Redis.from_url(redis_url)
    try:
        entries = await redis.xrange(wire.history_key(stream))
    finally:
        await redis.aclose()
    results = [wire.decode(fields[wire.HISTORY_FIELD.encode()]) for _, fields in entries or () if fields]
    captured = [r.captured_at for r in results if isinstance(r, wire.Result)]
    ages: list[float] = []
    if captured and len(captured) <= len(timed.starts):
        ages = [s - c for s, c in zip(timed.starts, captured, strict=False)]
    frames = [r.frame for r in results if isinstance(r, wire.Result)]
    return {
        "exit_status": status,
        "results": len(captured),
        # Over the window from the first prediction: the producer's start-up is not its rate.
        "fps": round(len(captured) / max(end - (first or start), 1e-9), 2),
        "frames_skipped": (frames[-1] - frames[0] + 1 - len(frames)) if frames else 0,
        "frame_age_ms": percentiles(np.asarray(ages), scale=1e3),
        "loop_lag_ms": percentiles(lags, scale=1e3),
        "process_cpu_cores": round(cpu / wall, 3),
    }


def run(options: PredictorOptions, *, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Run part 3; returns one entry per predictor."""
    results: list[dict[str, Any]] = []
    with Children() as children, tempfile.TemporaryDirectory(prefix="framecast-bench-valkey-") as workdir:
        redis_url = start_valkey(children, workdir)
        for name in options.names:
            say(f"producer: {name}")
            entry: dict[str, Any] = {"predictor": name}
            try:
                entry["alone"] = _alone(name, options.alone, options.max_frames)
                if options.service > 0:
                    entry["service"] = asyncio.run(_service(name, options.service, redis_url))
            except Exception as exc:  # a broken predictor is a finding, not a reason to stop the run
                say(f"producer: {name} failed: {type(exc).__name__}: {exc}")
                entry["error"] = f"{type(exc).__name__}: {exc}"
            results.append(entry)
            with contextlib.suppress(KeyError):
                alone, svc = entry["alone"], entry["service"]
                say(
                    f"  alone {alone['fps']} fps ({alone['ms_per_frame']['p50']} ms/frame); in the producer "
                    f"{svc['fps']} fps, frame age p50 {svc['frame_age_ms']['p50']} ms, loop lag p99 "
                    f"{svc['loop_lag_ms']['p99']} ms max {svc['loop_lag_ms']['max']} ms"
                )
    return results
