"""Prediction off the event loop: one worker thread, or a pool of worker processes.

:class:`Workers` hands a frame to the predictor and returns an asyncio future of its
:data:`Prediction`; a process pool whose workers died is replaced by a fresh one.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from framecast import wire
from producer import detectors
from producer.config import Config
from producer.detectors import Predictor

__all__ = ["Prediction", "Workers", "options"]

Prediction = tuple[tuple[wire.Detection, ...], float]
"""Checked detections and the seconds the predictor took."""


def options(config: Config) -> detectors.Options:
    """The built-in predictors' tuning, from the producer's settings."""
    return detectors.Options(
        min_area=config.min_area,
        confidence=config.confidence,
        nms=config.nms,
        classes=config.classes,
        input_size=config.input_size,
    )


def _predict(predictor: Predictor, image: Any) -> Prediction:
    """Call the predictor and check its output, timing the call (runs in the worker)."""
    started = time.perf_counter()
    raw = predictor(image)
    height, width = image.shape[:2]
    found = detectors.clip(raw, width, height)
    return found, time.perf_counter() - started


_worker_predictor: Predictor | None = None


def _init_worker(spec: str, options: detectors.Options) -> None:
    global _worker_predictor
    import cv2

    # Parallelism comes from the processes; OpenCV's own threads would only fight over cores.
    cv2.setNumThreads(1)
    _worker_predictor = detectors.load(spec, options=options)


def _predict_in_worker(image: Any) -> Prediction:
    assert _worker_predictor is not None, "worker not initialised"
    return _predict(_worker_predictor, image)


class Workers:
    """Where predictions run.

    Args:
        config: Settings: ``workers`` (0: one thread) and, for processes, ``detector``.
        predictor: The predictor for the thread; must be None with worker processes (each
            builds its own from ``config.detector``).
    """

    def __init__(self, config: Config, *, predictor: Predictor | None) -> None:
        if predictor is not None and config.workers:
            raise ValueError("a predictor object cannot be sent to worker processes: pass config.detector")
        if predictor is None and not config.workers:
            raise ValueError("one worker thread needs a predictor")
        self._config = config
        self._predictor = predictor
        self.executor = self._make_executor()
        """The executor new frames go to (replaced when its processes die)."""

    @property
    def slots(self) -> int:
        """Frames that may be in flight at once."""
        return max(1, self._config.workers)

    def submit(self, image: Any) -> tuple[asyncio.Future[Prediction], Executor]:
        """Start predicting on ``image``; returns the future and the executor it runs on."""
        loop = asyncio.get_running_loop()
        executor = self.executor
        if self._config.workers:
            return loop.run_in_executor(executor, _predict_in_worker, image), executor
        assert self._predictor is not None
        return loop.run_in_executor(executor, functools.partial(_predict, self._predictor, image)), executor

    def replace(self, executor: Executor) -> bool:
        """Replace ``executor`` (its processes died) unless it was already replaced.

        Returns:
            Whether this call replaced it (the first frame to see a broken pool logs it).
        """
        if executor is not self.executor:
            return False
        executor.shutdown(wait=False, cancel_futures=True)
        self.executor = self._make_executor()
        return True

    def shutdown(self) -> None:
        """Stop taking work, without waiting for predictions in progress."""
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _make_executor(self) -> Executor:
        if self._config.workers:
            return ProcessPoolExecutor(
                self._config.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self._config.detector, options(self._config)),
            )
        return ThreadPoolExecutor(1, thread_name_prefix="predict")
