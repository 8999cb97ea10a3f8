"""The running producer: capture -> predict (off the event loop) -> publish, with heartbeats and demand.

One asyncio loop runs four tasks: the *feeder* takes the newest frame and hands it to the
predictor's :class:`~producer.workers.Workers`, the *collector* awaits predictions in order and
publishes them, the *heartbeat* publishes a status at least once per second, and the *demand*
watcher pauses the predictor while nobody subscribes. Capture runs on its own thread
(:class:`~producer.capture.Grabber`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import BrokenExecutor, ThreadPoolExecutor
from typing import Any

from framecast import logs, wire
from framecast.broker import open_broker
from producer.analytics import Analysis, Analyzer
from producer.capture import Grabber
from producer.config import Config
from producer.detectors import Predictor
from producer.latest import Frame, LatestFrame
from producer.metrics import Metrics, Rates
from producer.preview import render
from producer.publisher import Draft, Publisher
from producer.sources import Opener, Reader
from producer.videofeed import from_config as video_feed
from producer.workers import Prediction, for_config

__all__ = ["Producer"]

log = logging.getLogger("producer")

DEMAND_POLL = 0.5
"""Seconds between subscriber counts: the predictor resumes within this of the first viewer."""
REDIS_TIMEOUT = 2.0
"""Seconds any Redis call may take before the link counts as lost."""
ERROR_LOG_INTERVAL = 10.0
"""Seconds between two log lines about a failing predictor."""
END_FLUSH_TIMEOUT = 60.0
"""Seconds a finite source that ended waits for Redis to publish its last, parked result."""


async def _wait(event: asyncio.Event, timeout: float) -> None:
    """Wait for ``event`` at most ``timeout`` seconds.

    Not ``asyncio.wait_for``: on Python 3.11 it can swallow a cancellation that arrives as the
    event is set, which left a task running after shutdown. ``asyncio.timeout`` does not.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


class Producer:
    """One stream's producer in the running event loop (see :func:`producer.service.run`)."""

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
        analyzer: Analyzer | None = None,
    ) -> None:
        self.config = config
        self.analyzer = analyzer
        layout = analyzer.analytics.layout if analyzer and analyzer.analytics else None
        # Every heartbeat says where the zones and lines are, so a viewer can draw them.
        self.zone_shapes = {z.name: z.polygon for z in layout.zones} if layout and layout.zones else None
        self.line_shapes = (
            {line.name: line.points for line in layout.lines} if layout and layout.lines else None
        )
        # Tracking is stateful and ordered: one thread of its own, off the event loop, in frame order.
        self.tracking_pool = ThreadPoolExecutor(1, thread_name_prefix="track") if analyzer else None
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
        # Outages are the publisher's job (with backoff, keeping only the newest result).
        broker = open_broker(
            config.redis_url,
            timeout=REDIS_TIMEOUT,
            cluster=config.cluster,
            sharded=config.sharded or config.cluster,
        )
        self.publisher = Publisher(
            broker,
            stream=config.stream,
            history=config.history,
            status_ttl=max(3.0, 3 * config.heartbeat_interval),
            where=f"Redis at {logs.redact_url(config.redis_url)}",
            on_link=lambda up: self.metrics.redis_connected.set(1 if up else 0),
            on_publish=self.metrics.capture_to_publish.observe,
            events=bool(analyzer and analyzer.analytics),
            event_history=config.event_history,
        )
        self.video = video_feed(config, self.publisher, metrics.registry)
        self.workers = for_config(config, predictor=predictor, on_state=self.beat_now.set)
        self.capacity = asyncio.Semaphore(self.workers.slots)
        self.queue: asyncio.Queue[tuple[Frame, asyncio.Future[Prediction], object] | None] = asyncio.Queue()
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
        self.provider = ""
        self._describe(provider=self.workers.provider)
        metrics.active.set(1 if self.active else 0)

    def _describe(self, *, provider: str) -> None:
        """(Re)label the info metric; the provider of a shared worker or worker processes comes later."""
        self.provider = provider
        self.metrics.info.info(
            {
                "stream": self.config.stream,
                "source": self.description,
                # A camera of a shared worker does not load the model: the worker's socket says which.
                "detector": f"shared:{self.config.predictor_socket}"
                if self.config.predictor_socket
                else self.config.detector,
                "epoch": self.publisher.epoch,
                "provider": provider,
            }
        )

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
        if self.config.predictor_socket:
            runs = f"the shared inference worker at {self.config.predictor_socket}"
        else:
            where = f"{self.config.workers} worker processes" if self.config.workers else "1 worker thread"
            on = f" on {self.workers.provider}" if self.workers.provider else ""
            runs = f"detector {self.config.detector}{on}, {where}"
        log.info(
            "stream %s: source %s, %s, epoch %s",
            self.config.stream,
            self.description,
            runs,
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
        # Not among the tasks whose end stops the producer: video never takes predictions down.
        video = asyncio.create_task(self.video.run(), name="video") if self.video else None
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
                await self._flush_at_end(stopper)
                log.info("source ended: %d results published, stopping", self.publisher.published)
        finally:
            everything = [collector, stopper, *tasks, *([video] if video else [])]
            for task in everything:
                task.cancel()
            _, stuck = await asyncio.wait(everything, timeout=5)
            if stuck:  # never seen; a stop must not hang on it
                log.warning("tasks still running at shutdown: %s", ", ".join(t.get_name() for t in stuck))
            await self.loop.run_in_executor(None, self.grabber.stop)
            if self.video is not None:
                await self.video.close()
            await self.publisher.close(self._status(state="offline"))
            self._sync_metrics()
            if self.tracking_pool is not None:
                self.tracking_pool.shutdown(wait=False, cancel_futures=True)
            await self.workers.stop()
            self.metrics.close()
        return status

    async def _flush_at_end(self, stopper: asyncio.Task[Any]) -> None:
        """A finite source ended with a result parked for Redis: give Redis a while to return.

        The heartbeat goes on meanwhile (its offline/online link state is the publisher's), and a
        stop signal cuts the wait short; whatever is still parked then is logged by ``close``.
        """
        if self.publisher.parked is None:
            return
        log.warning(
            "source ended while Redis is unreachable: waiting up to %g s to publish the last result",
            END_FLUSH_TIMEOUT,
        )
        flush = asyncio.create_task(self.publisher.flush(), name="flush")
        try:
            await asyncio.wait(
                [flush, stopper], timeout=END_FLUSH_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            flush.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flush
        if self.publisher.parked is None:
            log.info("Redis is back: the last result was published")

    # ---------------------------------------------------------------- feeder and collector

    async def _feed(self) -> None:
        """Hand the newest frame to the predictor whenever it has room (and --max-fps allows).

        --max-fps is a virtual schedule (GCRA): each processed frame moves the next due capture
        time ``interval`` past the later of its due time and its capture, and a frame captured
        more than half an interval before that is not taken. So consecutive processed frames are
        captured at least half an interval apart and ``n`` of them span at least ``n - 1.5``
        intervals, on any machine, while a camera whose frames do not fall on the schedule
        still gets the full rate (the half interval absorbs the quantisation).
        """
        interval = 1.0 / self.config.max_fps if self.config.max_fps else 0.0
        tolerance = interval / 2
        last = -1
        due = 0.0  # Unix time: captures are stamped with time.time()
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
                if not self.workers.ready:
                    # A shared worker is gone (restarting): frames go by as skipped meanwhile.
                    if self.slot.closed:
                        return
                    await self.workers.wait_ready(0.5)
                    continue
                await self.capacity.acquire()
                handed_over = False
                try:
                    earliest = 0.0
                    if interval:
                        now = time.time()
                        # Never more than this ahead (a frame is taken at most tolerance early):
                        # a clock stepped back must not stall the feeder.
                        due = min(due, now + interval + tolerance)
                        earliest = due - tolerance
                        if earliest > now:
                            await asyncio.sleep(earliest - now)
                    # Held back by --max-fps: the first frame captured from then on, not the
                    # one that has been aging in the slot (half a capture interval on average).
                    frame = await self._next_frame(after=last, fresh_since=earliest)
                    if frame is None:
                        if self.slot.closed:
                            return
                        continue
                    if interval:
                        due = max(due, frame.captured_at) + interval
                    last = frame.index
                    future, token = self.workers.submit(frame)
                    self.queue.put_nowait((frame, future, token))
                    handed_over = True
                    if self.video is not None:
                        self.video.offer(frame)  # never blocks: the encoder has its own thread
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
            frame, future, token = item
            try:
                try:
                    detections, seconds = await future
                except BrokenExecutor as exc:
                    self._executor_broken(token, exc)
                    continue
                except Exception as exc:
                    self._predict_failed(frame, exc)
                    continue
                self.processed += 1
                self.metrics.processed.inc()
                self.metrics.predict_seconds.observe(seconds)
                height, width = frame.image.shape[:2]
                draft = Draft(frame.index, frame.captured_at, width, height, detections)
                if self.analyzer is not None:
                    draft = await self._analyze(draft, frame.shows)
                result = await self.publisher.publish(draft)
                if result is not None and self._preview_due():
                    await self._send_preview(frame, result)
            finally:
                self.capacity.release()

    async def _analyze(self, draft: Draft, shows: float | None) -> Draft:
        """Track the draft's detections and derive its events (off the loop, in frame order).

        ``shows`` is the frame's time on its recording's own clock (None for a live source).
        """
        assert self.analyzer is not None
        analysis: Analysis = await self.loop.run_in_executor(
            self.tracking_pool,
            self.analyzer.step,
            draft.detections,
            draft.captured_at,
            draft.width,
            draft.height,
            shows,
        )
        self.metrics.track_seconds.observe(analysis.seconds)
        self.metrics.active_tracks.set(analysis.active)
        for event in analysis.events:
            self.metrics.events.labels(event.kind).inc()
        return Draft(
            draft.frame,
            draft.captured_at,
            draft.width,
            draft.height,
            analysis.detections,
            events=analysis.events,
            occupancy=analysis.occupancy,
            crossings=analysis.crossings,
        )

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

    def _executor_broken(self, token: object, exc: BaseException) -> None:
        self.metrics.predict_errors.inc()
        if self.workers.replace(token):  # later frames of the same broken pool stay quiet
            log.error("the predictor's workers died (%s); starting new ones", exc)

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
            event_seq=self.publisher.event_seq,
            zones=self.zone_shapes,
            lines=self.line_shapes,
            video=self.config.video_codec.lower() if self.config.video else "",
            predictor=self.workers.state,
            predictor_restarts=self.workers.restarts if self.workers.state else None,
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
        m.advance(m.events_dropped, self.publisher.events_dropped)
        m.advance(m.publish_refused, self.publisher.refused)
        m.capture_fps.set(self.capture_fps)
        m.process_fps.set(self.process_fps)
        # Uncapped, the source's own rate is the aim; the grabber measures it as delivered.
        m.target_fps.set(self.config.max_fps or self.capture_fps)
        if self.workers.provider != self.provider:
            self._describe(provider=self.workers.provider)

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
