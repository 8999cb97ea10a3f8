"""The producer: capture -> predict (off the event loop) -> publish, with heartbeats and demand.

One asyncio loop runs four tasks: the *feeder* takes the newest frame and hands it to the
predictor's executor, the *collector* awaits predictions in order and publishes them, the
*heartbeat* publishes a status at least once per second, and the *demand* watcher pauses the
predictor while nobody subscribes. Capture runs on its own thread (:class:`capture.Grabber`);
prediction on one worker thread, or on ``--workers`` processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from framecast import logs, settings, wire
from producer import detectors
from producer.capture import Frame, Grabber, LatestFrame, Opener, Reader, SourceError, opener, parse_source
from producer.config import DESCRIPTION, EPILOG, Config
from producer.detectors import DetectorError, Predictor
from producer.metrics import Metrics, Rates
from producer.preview import render
from producer.publisher import Draft, Publisher

__all__ = ["main", "run"]

log = logging.getLogger("producer")

DEMAND_POLL = 0.5
"""Seconds between subscriber counts: the predictor resumes within this of the first viewer."""
REDIS_TIMEOUT = 2.0
"""Seconds any Redis call may take before the link counts as lost."""
ERROR_LOG_INTERVAL = 10.0
"""Seconds between two log lines about a failing predictor."""


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m producer") -> int:
    """Run the producer until its source ends or it is told to stop.

    Returns:
        0 after SIGTERM/SIGINT or the end of a video file; 1 when the source or the metrics port
        cannot be used; 2 for a bad setting (including an unknown detector).
    """
    config = settings.parse(Config, argv, prog=prog, description=DESCRIPTION, epilog=EPILOG)
    logs.setup(config.log_level, name="producer")
    if config.log_level.upper() != "DEBUG":
        _quiet_opencv()
    try:
        predictor: Predictor | None = detectors.load(config.detector, options=_options(config))
    except DetectorError as exc:
        return settings.fail(prog, f"--detector={config.detector}: {exc}", 2)
    if config.workers:
        del predictor  # built only to fail fast; each worker process builds its own
        predictor = None
    try:
        source = parse_source(config.source)
    except SourceError as exc:
        return settings.fail(prog, f"--source: {exc}", 2)
    first: Reader | None = None
    if source.kind in ("file", "device"):
        # A missing file or camera will not appear by retrying: say so and stop. Network
        # cameras that reboot do come back, so those are retried instead (in the grabber).
        try:
            first = opener(source, timeout=config.stall_timeout)()
        except SourceError as exc:
            return settings.fail(prog, f"--source: {exc}", 1)
    try:
        status = asyncio.run(_serve(config, predictor=predictor, first=first))
    except OSError as exc:
        if first is not None:
            first.close()
        return settings.fail(
            prog,
            f"--metrics-port={config.metrics_port}: cannot listen on "
            f"{config.metrics_host}:{config.metrics_port}: {exc.strerror or exc}",
            1,
        )
    if any(t.name.startswith("reader-") and t.is_alive() for t in threading.enumerate()):
        # A read is still stuck inside FFmpeg: finalising the interpreter around it would abort
        # the process, so leave now (everything worth saving is already flushed below).
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _quiet_opencv() -> None:
    """Silence OpenCV's and FFmpeg's own stderr chatter: the producer logs each failure once, itself."""
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; inherited by worker processes
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


async def _serve(config: Config, *, predictor: Predictor | None, first: Reader | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return await run(config, predictor=predictor, first=first, stop=stop)


async def run(
    config: Config,
    *,
    predictor: Predictor | None = None,
    open_source: Opener | None = None,
    first: Reader | None = None,
    description: str | None = None,
    finite: bool | None = None,
    stop: asyncio.Event | None = None,
    metrics: Metrics | None = None,
) -> int:
    """Run a producer in the current event loop until ``stop`` is set or the source ends.

    Args:
        config: Settings.
        predictor: The predictor to call (in one worker thread); built from ``config.detector``
            when None. Must be None with ``config.workers`` > 0 (workers build their own).
        open_source: Opens the source; made from ``config.source`` when None.
        first: An already opened reader of that source.
        description: How the source is named in logs and heartbeats (from the source when None).
        finite: Whether the source ends instead of failing (from the source when None).
        stop: Set it to stop; the producer then publishes a last ``offline`` status.
        metrics: Where to count (a fresh registry when None).

    Returns:
        0 after a clean stop or the end of a finite source, 1 if a task failed.

    Raises:
        DetectorError: ``config.detector`` names no usable predictor.
        OSError: The metrics port cannot be bound.
    """
    if predictor is not None and config.workers:
        raise ValueError("a predictor object cannot be sent to worker processes: pass config.detector")
    source = parse_source(config.source)
    if open_source is None:
        open_source = opener(source, timeout=config.stall_timeout)
    if predictor is None and not config.workers:
        predictor = detectors.load(config.detector, options=_options(config))
    producer = _Producer(
        config,
        predictor=predictor,
        open_source=open_source,
        first=first,
        description=description or source.description,
        finite=source.finite if finite is None else finite,
        metrics=metrics or Metrics(),
    )
    return await producer.run(stop or asyncio.Event())


def _options(config: Config) -> detectors.Options:
    return detectors.Options(
        min_area=config.min_area,
        confidence=config.confidence,
        nms=config.nms,
        classes=config.classes,
        input_size=config.input_size,
    )


# --------------------------------------------------------------------------
# Prediction in a worker (thread or process)

Prediction = tuple[tuple[wire.Detection, ...], float]


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


async def _wait(event: asyncio.Event, timeout: float) -> None:
    """Wait for ``event`` at most ``timeout`` seconds.

    Not ``asyncio.wait_for``: on Python 3.11 it can swallow a cancellation that arrives as the
    event is set, which left a task running after shutdown. ``asyncio.timeout`` does not.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


# --------------------------------------------------------------------------
# The running producer


class _Producer:
    def __init__(
        self,
        config: Config,
        *,
        predictor: Predictor | None,
        open_source: Opener,
        first: Reader | None,
        description: str,
        finite: bool,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.description = description
        self.metrics = metrics
        self.wake = asyncio.Event()
        self.beat_now = asyncio.Event()
        self.slot = LatestFrame(on_put=self._frame_arrived)
        self.grabber = Grabber(
            open_source,
            self.slot,
            finite=finite,
            repeat=config.loop,
            stall_timeout=config.stall_timeout,
            first=first,
            description=description,
            on_state=self._source_state,
        )
        # Retrying is the publisher's job (with backoff, keeping only the newest result).
        redis: Redis | RedisCluster = (RedisCluster if config.cluster else Redis).from_url(
            config.redis_url,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self.publisher = Publisher(
            redis,
            stream=config.stream,
            history=config.history,
            status_ttl=max(3.0, 3 * config.heartbeat_interval),
            where=f"Redis at {logs.redact_url(config.redis_url)}",
            on_link=lambda up: self.metrics.redis_connected.set(1 if up else 0),
            sharded=config.sharded or config.cluster,
        )
        self.predictor = predictor
        self.executor = self._make_executor()
        self.capacity = asyncio.Semaphore(max(1, config.workers))
        self.queue: asyncio.Queue[tuple[Frame, asyncio.Future[Prediction], Executor] | None] = asyncio.Queue()
        self.active = not config.demand
        self.preview_wanted = False
        self.next_preview = 0.0
        self.rates = Rates()
        self.capture_fps = 0.0
        self.process_fps = 0.0
        self.processed = 0
        self.failures = 0
        self.failures_logged = 0
        self.failure_logged_at = -ERROR_LOG_INTERVAL
        metrics.info.info(
            {
                "stream": config.stream,
                "source": description,
                "detector": config.detector,
                "epoch": self.publisher.epoch,
            }
        )
        metrics.active.set(1 if self.active else 0)

    def _make_executor(self) -> Executor:
        if self.config.workers:
            return ProcessPoolExecutor(
                self.config.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.config.detector, _options(self.config)),
            )
        return ThreadPoolExecutor(1, thread_name_prefix="predict")

    def _call(self, image: Any) -> asyncio.Future[Prediction]:
        if self.config.workers:
            return self.loop.run_in_executor(self.executor, _predict_in_worker, image)
        assert self.predictor is not None
        return self.loop.run_in_executor(self.executor, functools.partial(_predict, self.predictor, image))

    # ---------------------------------------------------------------- threads -> loop

    def _frame_arrived(self, frame: Frame) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed while the grabber was stopping
            self.loop.call_soon_threadsafe(self.wake.set)

    def _source_state(self, online: bool) -> None:
        self.metrics.source_online.set(1 if online else 0)
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.beat_now.set)

    # ---------------------------------------------------------------- lifecycle

    async def run(self, stop: asyncio.Event) -> int:
        if self.config.metrics_port:
            self.metrics.serve(self.config.metrics_port, self.config.metrics_host)
        log.info(
            "stream %s: source %s, detector %s, %s, epoch %s",
            self.config.stream,
            self.description,
            self.config.detector,
            f"{self.config.workers} worker processes" if self.config.workers else "1 worker thread",
            self.publisher.epoch,
        )
        self.grabber.start()
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(self._feed(), name="feed"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
        ]
        if self.config.demand:
            tasks.append(asyncio.create_task(self._watch_demand(), name="demand"))
        collector = asyncio.create_task(self._collect(), name="collect")
        stopper = asyncio.create_task(stop.wait(), name="stop")
        status = 0
        try:
            await asyncio.wait([collector, stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in (collector, *tasks):
                if task.done() and not task.cancelled() and task.exception() is not None:
                    exc = task.exception()
                    log.error("%s task failed", task.get_name(), exc_info=exc)
                    status = 1
            if stop.is_set():
                log.info("stopping: %d results published", self.publisher.published)
            elif collector.done():
                log.info("source ended: %d results published, stopping", self.publisher.published)
        finally:
            everything = [collector, stopper, *tasks]
            for task in everything:
                task.cancel()
            _, stuck = await asyncio.wait(everything, timeout=5)
            if stuck:  # never seen; a stop must not hang on it
                log.warning("tasks still running at shutdown: %s", ", ".join(t.get_name() for t in stuck))
            await self.loop.run_in_executor(None, self.grabber.stop)
            await self.publisher.close(self._status(state="offline"))
            self._sync_metrics()
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.metrics.close()
        return status

    # ---------------------------------------------------------------- feeder and collector

    async def _feed(self) -> None:
        """Hand the newest frame to the predictor whenever it has room (and --max-fps allows)."""
        interval = 1.0 / self.config.max_fps if self.config.max_fps else 0.0
        last = -1
        next_due = 0.0
        try:
            while True:
                if not self.active:
                    # Paused: frames are dropped as they come, without counting them as skipped.
                    self.slot.discard()
                    if self.slot.closed:
                        return
                    self.wake.clear()
                    await _wait(self.wake, 0.5)
                    continue
                await self.capacity.acquire()
                handed_over = False
                try:
                    fresh_since = 0.0
                    delay = next_due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                        # Held back by --max-fps: take the first frame captured from now on, not the
                        # one that has been aging in the slot (half a capture interval on average).
                        fresh_since = time.time()
                    frame = await self._next_frame(after=last, fresh_since=fresh_since)
                    if frame is None:
                        if self.slot.closed:
                            return
                        continue
                    # Keep the --max-fps cadence from the due time, not from when a frame came.
                    next_due = (next_due if delay > 0 else time.monotonic()) + interval
                    last = frame.index
                    self.queue.put_nowait((frame, self._call(frame.image), self.executor))
                    handed_over = True
                finally:
                    if not handed_over:
                        self.capacity.release()
        finally:
            self.queue.put_nowait(None)

    async def _next_frame(self, *, after: int, fresh_since: float = 0.0) -> Frame | None:
        """The newest frame after ``after`` (captured since ``fresh_since`` while the source runs).

        Returns None once the source is closed and its last frame taken, or the predictor paused.
        """
        while True:
            self.wake.clear()
            closed = self.slot.closed  # read first: a closed slot gets no newer frame to wait for
            frame = self.slot.poll(after=after, captured_since=0.0 if closed else fresh_since)
            if frame is not None:
                return frame
            if closed or not self.active:
                return None
            await _wait(self.wake, 0.5)

    async def _collect(self) -> None:
        """Await predictions in the order frames were taken and publish them."""
        while True:
            item = await self.queue.get()
            if item is None:
                return
            frame, future, executor = item
            try:
                try:
                    detections, seconds = await future
                except BrokenExecutor as exc:
                    self._executor_broken(executor, exc)
                    continue
                except Exception as exc:
                    self._predict_failed(frame, exc)
                    continue
                self.processed += 1
                self.metrics.processed.inc()
                self.metrics.predict_seconds.observe(seconds)
                height, width = frame.image.shape[:2]
                draft = Draft(frame.index, frame.captured_at, width, height, detections)
                result = await self.publisher.publish(draft)
                if result is not None and self._preview_due():
                    await self._send_preview(frame, result)
            finally:
                self.capacity.release()

    def _predict_failed(self, frame: Frame, exc: BaseException) -> None:
        self.failures += 1
        self.metrics.predict_errors.inc()
        now = time.monotonic()
        if now - self.failure_logged_at < ERROR_LOG_INTERVAL:
            return
        more = self.failures - self.failures_logged - 1
        log.error(
            "predictor failed on frame %d: %s: %s%s",
            frame.index,
            type(exc).__name__,
            exc,
            f" ({more} more failures since the last report)" if more > 0 else "",
            exc_info=exc if self.failures_logged == 0 else None,
        )
        self.failures_logged = self.failures
        self.failure_logged_at = now

    def _executor_broken(self, executor: Executor, exc: BaseException) -> None:
        self.metrics.predict_errors.inc()
        if executor is not self.executor:
            return  # another frame of the same broken pool: already replaced
        log.error("the predictor's workers died (%s); starting new ones", exc)
        executor.shutdown(wait=False, cancel_futures=True)
        self.executor = self._make_executor()

    # ---------------------------------------------------------------- previews

    def _preview_due(self) -> bool:
        if not self.preview_wanted or not self.config.preview_fps:
            return False
        now = time.monotonic()
        if now < self.next_preview:
            return False
        self.next_preview = now + 1.0 / self.config.preview_fps
        return True

    async def _send_preview(self, frame: Frame, result: wire.Result) -> None:
        jpeg, width, height = await asyncio.to_thread(
            render,
            frame.image,
            result.detections,
            width=self.config.preview_width,
            quality=self.config.preview_quality,
        )
        preview = wire.Preview(
            stream=result.stream,
            epoch=result.epoch,
            seq=result.seq,
            frame=result.frame,
            captured_at=result.captured_at,
            width=width,
            height=height,
            jpeg=jpeg,
        )
        if await self.publisher.preview(wire.encode_preview(preview)):
            self.metrics.previews.inc()

    # ---------------------------------------------------------------- heartbeat and demand

    def _status(self, *, state: wire.StreamState | None = None) -> wire.Status:
        return wire.Status(
            stream=self.config.stream,
            epoch=self.publisher.epoch,
            seq=self.publisher.seq,
            sent_at=time.time(),
            state=state or ("online" if self.grabber.online else "offline"),
            reconnects=self.grabber.reconnects,
            capture_fps=self.capture_fps,
            process_fps=self.process_fps,
            skipped=self.slot.skipped,
            active=self.active,
            source=self.description,
        )

    async def _heartbeat(self) -> None:
        interval = self.config.heartbeat_interval
        next_beat = time.monotonic()
        while True:
            self.capture_fps, self.process_fps = self.rates.update(
                time.monotonic(), self.slot.captured, self.processed
            )
            self._sync_metrics()
            self.beat_now.clear()
            wanted = await self.publisher.heartbeat(self._status(), previews=self.config.preview_fps > 0)
            if wanted is not None:
                self.preview_wanted = wanted > 0
            next_beat = max(next_beat + interval, time.monotonic() + 0.05)
            # A source going on- or offline is announced at once, not at the next beat.
            await _wait(self.beat_now, next_beat - time.monotonic())

    def _sync_metrics(self) -> None:
        m = self.metrics
        m.advance(m.captured, self.slot.captured)
        m.advance(m.skipped, self.slot.skipped)
        m.advance(m.reconnects, self.grabber.reconnects)
        m.advance(m.published, self.publisher.published)
        m.advance(m.publish_errors, self.publisher.errors)
        m.capture_fps.set(self.capture_fps)
        m.process_fps.set(self.process_fps)

    async def _watch_demand(self) -> None:
        while True:
            subscribers = await self.publisher.subscribers()
            if subscribers is not None:
                self._set_active(subscribers > 0)
            await asyncio.sleep(DEMAND_POLL)

    def _set_active(self, active: bool) -> None:
        if active == self.active:
            return
        self.active = active
        self.metrics.active.set(1 if active else 0)
        log.info("%s", "a viewer subscribed: predictor running" if active else "no viewers: predictor paused")
        self.wake.set()
        self.beat_now.set()
