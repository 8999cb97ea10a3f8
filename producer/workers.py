"""Prediction off the event loop: one worker thread, or a pool of worker processes.

:class:`Workers` hands a frame to the predictor and returns an asyncio future of its
:data:`Prediction`; a process pool whose workers died is replaced by a fresh one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, ParamSpec, Protocol, TypeVar

from framecast import wire
from producer import detectors
from producer.config import Config
from producer.detectors import Predictor
from producer.latest import Frame

__all__ = ["STOP_GRACE", "Prediction", "Runner", "Workers", "for_config", "options"]

log = logging.getLogger(__name__)

STOP_GRACE = 2.0
"""Seconds a stop waits for predictions in progress before abandoning (thread) or killing them."""

_P = ParamSpec("_P")
_T = TypeVar("_T")

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
        engine=config.engine,
        device=config.device,
        # Parallelism comes from the processes: an engine's own threads would fight over cores.
        threads=config.threads or (1 if config.workers else 0),
    )


class Runner(Protocol):
    """Where predictions run, as the producer's loop sees it (:class:`Workers` or a shared worker)."""

    @property
    def slots(self) -> int:
        """Frames that may be in flight at once."""
        ...

    @property
    def ready(self) -> bool:
        """Whether a frame submitted now can be predicted (a shared worker may be unreachable)."""
        ...

    @property
    def state(self) -> wire.PredictorState | None:
        """``ready``/``down`` for a shared worker, None for a predictor in this process (heartbeats)."""
        ...

    @property
    def restarts(self) -> int:
        """Times a lost shared worker was found again (0 in this process)."""
        ...

    @property
    def provider(self) -> str:
        """What runs the model (``CPUExecutionProvider``...), "" when unknown or not a model."""
        ...

    async def wait_ready(self, timeout: float) -> None:
        """Return once :attr:`ready`, or after ``timeout`` seconds."""
        ...

    def submit(self, frame: Frame) -> tuple[asyncio.Future[Prediction], object]:
        """Start predicting on ``frame``; returns the future and a token for :meth:`replace`."""
        ...

    def replace(self, token: object) -> bool:
        """The future of ``token`` failed with ``BrokenExecutor``: recover; True to log it."""
        ...

    async def stop(self) -> bool:
        """Stop, waiting a while for predictions in progress; True if all finished."""
        ...


def for_config(
    config: Config, *, predictor: Predictor | None, on_state: Callable[[], None] | None = None
) -> Runner:
    """The runner the settings ask for: a shared worker (``--predictor-socket``) or :class:`Workers`.

    Args:
        config: Settings.
        predictor: The predictor for one worker thread (None with processes or a shared worker).
        on_state: Called (in the event loop) when a shared worker goes or comes back.
    """
    if config.predictor_socket:
        from producer.inference.client import SharedWorkers

        if predictor is not None:
            raise ValueError("a predictor object cannot be used with a shared worker (predictor_socket)")
        return SharedWorkers(config, on_state=on_state)
    return Workers(config, predictor=predictor)


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


def _provider_in_worker() -> str:
    return provider_of(_worker_predictor)


def provider_of(predictor: object) -> str:
    """What runs a predictor's model (``CPUExecutionProvider``, ``opencv``...), "" if it has none."""
    return str(getattr(getattr(predictor, "engine", None), "provider", ""))


class _DaemonThread(Executor):
    """One daemon thread running calls in order.

    Not a ``ThreadPoolExecutor``: the interpreter joins those threads at exit, so a predictor
    that never returns would keep a stopped producer alive forever. A daemon thread is left.
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._closed = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future: Future[_T] = Future()
        self._calls.put((future, functools.partial(fn, *args, **kwargs)))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        if cancel_futures:
            while True:
                try:
                    item = self._calls.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        self._calls.put(None)
        if wait:
            self.thread.join()

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:  # handed to the awaiting side, like any executor does
                future.set_exception(exc)
            else:
                future.set_result(result)


class Workers:
    """Where predictions run.

    Args:
        config: Settings: ``workers`` (0: one thread) and, for processes, ``detector``.
        predictor: The predictor for the thread; must be None with worker processes (each
            builds its own from ``config.detector``).
        stop_grace: Seconds :meth:`stop` waits for predictions in progress.
    """

    def __init__(
        self, config: Config, *, predictor: Predictor | None, stop_grace: float = STOP_GRACE
    ) -> None:
        if predictor is not None and config.workers:
            raise ValueError("a predictor object cannot be sent to worker processes: pass config.detector")
        if predictor is None and not config.workers:
            raise ValueError("one worker thread needs a predictor")
        self._config = config
        self._predictor = predictor
        self._stop_grace = stop_grace
        self._provider: Future[str] | None = None
        self.executor = self._make_executor()
        """The executor new frames go to (replaced when its processes die)."""

    @property
    def slots(self) -> int:
        """Frames that may be in flight at once."""
        return max(1, self._config.workers)

    @property
    def ready(self) -> bool:
        """Always: the predictor is in this process (a dead pool is replaced at once)."""
        return True

    @property
    def state(self) -> wire.PredictorState | None:
        """None: heartbeats say nothing of a predictor that lives in this process."""
        return None

    @property
    def restarts(self) -> int:
        return 0

    @property
    def provider(self) -> str:
        """The model's execution provider; in worker processes, known once the first one is up."""
        if self._predictor is not None:
            return provider_of(self._predictor)
        if self._provider is not None and self._provider.done() and not self._provider.exception():
            return self._provider.result()
        return ""

    async def wait_ready(self, timeout: float) -> None:
        return

    def submit(self, frame: Frame) -> tuple[asyncio.Future[Prediction], Executor]:
        """Start predicting on ``frame``; returns the future and the executor it runs on."""
        loop = asyncio.get_running_loop()
        executor = self.executor
        if self._config.workers:
            return loop.run_in_executor(executor, _predict_in_worker, frame.image), executor
        assert self._predictor is not None
        call = functools.partial(_predict, self._predictor, frame.image)
        return loop.run_in_executor(executor, call), executor

    def replace(self, token: object) -> bool:
        """Replace the executor ``token`` (its processes died) unless it was already replaced.

        Returns:
            Whether this call replaced it (the first frame to see a broken pool logs it).
        """
        executor = self.executor
        if token is not executor:
            return False
        executor.shutdown(wait=False, cancel_futures=True)
        self.executor = self._make_executor()
        return True

    async def stop(self) -> bool:
        """Stop taking work and wait up to ``stop_grace`` for predictions in progress.

        A predictor still running then is abandoned on its daemon thread (it cannot be
        interrupted) or, in worker processes, killed; the log says which.

        Returns:
            Whether every prediction finished in time.
        """
        executor = self.executor
        # Read before shutdown(), which forgets them; private, but the pool offers no other way.
        pool: dict[int, Any] = getattr(executor, "_processes", None) or {}
        processes = list(pool.values())
        executor.shutdown(wait=False, cancel_futures=True)
        if isinstance(executor, _DaemonThread):
            await asyncio.to_thread(executor.thread.join, self._stop_grace)
            if not executor.thread.is_alive():
                return True
            log.warning(
                "the predictor did not return within %g s of the stop: abandoning its thread",
                self._stop_grace,
            )
            return False
        deadline = time.monotonic() + self._stop_grace
        for process in processes:
            await asyncio.to_thread(process.join, max(0.0, deadline - time.monotonic()))
        stuck = [p for p in processes if p.is_alive()]
        if not stuck:
            return True
        log.warning(
            "the predictor did not return within %g s of the stop: killing %d worker process%s",
            self._stop_grace,
            len(stuck),
            "" if len(stuck) == 1 else "es",
        )
        for process in stuck:
            process.kill()
        for process in stuck:
            await asyncio.to_thread(process.join, 5.0)
        return False

    def _make_executor(self) -> Executor:
        if self._config.workers:
            pool = ProcessPoolExecutor(
                self._config.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self._config.detector, options(self._config)),
            )
            self._provider = pool.submit(_provider_in_worker)  # for the info metric's label
            return pool
        return _DaemonThread("predict")
