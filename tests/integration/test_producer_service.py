"""The producer's loop in-process, against a real valkey, with a camera and predictor the test drives.

Driving both ends by hand makes the ordering claims exact: no sleeps, no timing thresholds.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from producer.config import Config
from producer.metrics import Metrics
from producer.service import run
from tests.support.producer import Listener, history

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer


class _HandCamera:
    """A camera that delivers exactly the frames the test pushes, when it pushes them."""

    def __init__(self) -> None:
        self.frames: queue.Queue[np.ndarray] = queue.Queue()
        self.reads_started = 0
        self.closed = threading.Event()

    def push(self, value: int) -> None:
        self.frames.put(np.full((48, 64, 3), value, np.uint8))

    def open(self) -> _HandCamera:
        return self

    def read(self) -> np.ndarray | None:
        self.reads_started += 1
        while not self.closed.is_set():
            try:
                return self.frames.get(timeout=0.05)
            except queue.Empty:
                continue
        return None

    def close(self) -> None:
        self.closed.set()


async def _until(condition: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.01) + 1):
        if condition():
            return
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def _until_at_least(count: Callable[[], int], target: int, *, what: str) -> None:
    await _until(lambda: count() >= target, what=what)


def _config(redis_server: RedisServer, **overrides: Any) -> Config:
    settings: dict[str, Any] = {
        "redis_url": redis_server.url,
        "demand": False,
        "max_fps": 0.0,
        "heartbeat_interval": 0.2,
        "stall_timeout": 30.0,
    }
    settings.update(overrides)
    return Config(**settings)


async def test_a_slow_predictor_always_gets_the_newest_frame(redis_server: RedisServer) -> None:
    camera = _HandCamera()
    gates = [threading.Event() for _ in range(5)]
    seen: list[int] = []

    def slow(frame: np.ndarray) -> list[tuple[str, float, tuple[int, int, int, int]]]:
        call = len(seen)
        seen.append(int(frame[0, 0, 0]))
        assert gates[call].wait(20), "the test never released the predictor"
        return [(f"value {seen[-1]}", 1.0, (0, 0, 8, 8))]

    stop = asyncio.Event()
    with Listener(redis_server.url) as heard:
        task = asyncio.create_task(
            run(_config(redis_server), predictor=slow, open_source=camera.open, description="hand", stop=stop)
        )
        try:
            camera.push(1)
            await _until(lambda: seen == [1], what="the predictor to start on frame 1")
            expected = [1]
            for round_ in range(3):
                # While the predictor is busy, the camera delivers five more frames...
                base = 10 * (round_ + 1)
                for value in range(base, base + 5):
                    camera.push(value)
                # The camera reads again only after the previous frame went into the slot.
                pushed = 1 + 5 * (round_ + 1)
                await _until_at_least(lambda: camera.reads_started, pushed + 1, what="the camera to deliver")
                # ...and once it is free it must take the newest of them, never an older one.
                gates[round_].set()
                await _until_at_least(lambda: len(seen), len(expected) + 1, what="the next prediction")
                expected.append(base + 4)
                assert seen == expected
            gates[3].set()
            await _until(lambda: len(heard.results) == 4, what="4 results")
        finally:
            for gate in gates:
                gate.set()
            stop.set()
            status = await asyncio.wait_for(task, 30)
    assert status == 0
    results = heard.results
    assert [r.seq for r in results] == [1, 2, 3, 4]
    assert [r.frame for r in results] == [0, 5, 10, 15]  # each the newest frame at the time it was taken
    assert [r.detections[0].label for r in results] == ["value 1", "value 14", "value 24", "value 34"]
    assert max(s.skipped for s in heard.statuses) == 12  # 4 of every 5 frames pushed meanwhile


async def test_a_failing_predictor_is_counted_and_the_loop_goes_on(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    camera = _HandCamera()
    calls: list[int] = []

    def flaky(frame: np.ndarray) -> list[Any]:
        calls.append(int(frame[0, 0, 0]))
        if len(calls) % 2 == 0:
            raise ValueError("model hiccup")
        if len(calls) == 5:
            return ["not a detection"]  # bad output counts as a failure too
        return []

    metrics = Metrics()
    stop = asyncio.Event()
    caplog.set_level(logging.ERROR, logger="producer")
    task = asyncio.create_task(
        run(_config(redis_server), predictor=flaky, open_source=camera.open, stop=stop, metrics=metrics)
    )
    try:
        for value in range(1, 9):
            camera.push(value)
            await _until_at_least(lambda: len(calls), value, what=f"prediction {value}")
        await _until(lambda: len(history(redis_server.url)) == 3, what="3 results")
    finally:
        stop.set()
        status = await asyncio.wait_for(task, 30)
    assert status == 0
    assert calls == list(range(1, 9))
    entries = [result for _, result in history(redis_server.url)]
    # Calls 1, 3 and 7 succeeded; 2, 4, 6, 8 raised and 5 returned garbage: 5 failures, no seq lost.
    assert [r.seq for r in entries] == [1, 2, 3]
    assert [r.frame for r in entries] == [0, 2, 6]
    assert metrics.registry.get_sample_value("framecast_producer_predict_errors_total") == 5
    failures = [r for r in caplog.records if "predictor failed" in r.getMessage()]
    assert len(failures) == 1  # rate-limited: one line, not one per frame
    assert "frame 1" in failures[0].getMessage()


async def test_results_wait_for_redis_and_only_the_newest_is_kept(redis_server: RedisServer) -> None:
    """Redis is down when results are made: the newest one is published when it is back."""
    redis_server.stop()
    camera = _HandCamera()
    calls: list[int] = []

    def tagging(frame: np.ndarray) -> list[Any]:
        calls.append(int(frame[0, 0, 0]))
        return [(f"value {calls[-1]}", 1.0, (0, 0, 4, 4))]

    metrics = Metrics()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run(_config(redis_server), predictor=tagging, open_source=camera.open, stop=stop, metrics=metrics)
    )
    try:
        for value in range(1, 6):
            camera.push(value)
            await _until_at_least(lambda: len(calls), value, what=f"prediction {value}")
        await asyncio.to_thread(redis_server.restart)
        await _until(lambda: len(history(redis_server.url)) >= 1, what="the parked result")
        entries = [result for _, result in history(redis_server.url)]
        assert len(entries) == 1
        assert entries[0].seq == 1
        assert entries[0].detections[0].label == "value 5"  # the newest; 1-4 were stale and dropped
        camera.push(6)
        await _until(lambda: len(history(redis_server.url)) == 2, what="a live result after the outage")
    finally:
        stop.set()
        status = await asyncio.wait_for(task, 30)
    assert status == 0
    assert [r.seq for _, r in history(redis_server.url)] == [1, 2]
    assert (metrics.registry.get_sample_value("framecast_producer_publish_errors_total") or 0) >= 1
