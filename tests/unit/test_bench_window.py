"""The producer part of the bench measures from the first prediction, not from the start.

A quick run once measured "motion: 0 results": its 0.6 s window was counted from the producer's
start, and on a loaded machine the start-up alone took longer.
"""

from __future__ import annotations

import asyncio
import time

from bench.predictors import _Timed, _window


async def _stopped_at(stop: asyncio.Event) -> float:
    await stop.wait()
    return time.monotonic()


async def test_the_window_opens_at_the_first_prediction_however_late_it_comes() -> None:
    timed = _Timed(lambda image: None)
    stop = asyncio.Event()
    window = asyncio.create_task(_window(timed, 0.05, stop))
    stopped = asyncio.create_task(_stopped_at(stop))
    await asyncio.sleep(0.2)  # a start-up four windows long
    assert not stop.is_set()
    called = time.monotonic()
    timed(None)
    first = await window
    assert first is not None and first >= called
    assert await stopped >= first + 0.05


async def test_a_producer_that_never_predicts_is_stopped_after_the_start_up_bound() -> None:
    stop = asyncio.Event()
    assert await _window(_Timed(lambda image: None), 10.0, stop, startup=0.05) is None
    assert stop.is_set()
