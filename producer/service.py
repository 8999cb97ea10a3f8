"""The producer's entry points: :func:`main` (the command line) and :func:`run` (embedding).

The work is split by job: :mod:`producer.sources` opens the camera, :mod:`producer.capture` reads
it into :mod:`producer.latest`'s one-frame slot, :mod:`producer.workers` runs the predictor off the
event loop, :mod:`producer.loop` ties them together with heartbeats and demand, and
:mod:`producer.publisher` writes to Redis.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from framecast import logs, settings, zones
from producer import detectors
from producer.analytics import Analyzer
from producer.config import DESCRIPTION, EPILOG, Config
from producer.detectors import DetectorError, Predictor
from producer.devices import DeviceError
from producer.loop import Producer
from producer.metrics import Metrics
from producer.sources import Opener, Reader, SourceError, opener, parse_source
from producer.videofeed import check_video, frame_size
from producer.workers import options

__all__ = ["main", "run"]

log = logging.getLogger("producer")


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
    predictor: Predictor | None = None
    if config.predictor_socket:
        if config.workers:
            return settings.fail(
                prog, "--workers and --predictor-socket exclude each other: the shared worker predicts", 2
            )
    else:
        try:
            predictor = detectors.load(config.detector, options=options(config))
        except DeviceError as exc:
            return settings.fail(prog, f"--device={config.device}: {exc}", 2)
        except DetectorError as exc:
            return settings.fail(prog, f"--detector={config.detector}: {exc}", 2)
        if config.workers:
            del predictor  # built only to fail fast; each worker process builds its own
            predictor = None
    try:
        analyzer = analyzer_for(config)
    except zones.ZoneError as exc:
        return settings.fail(prog, f"--zones: {exc}", 2)
    except ImportError as exc:
        return settings.fail(
            prog, f"--track: the tracker cannot be loaded ({exc}); install framecast[producer]", 2
        )
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
    if config.video:
        problem = check_video(config, frame_size(source, first))
        if problem:
            if first is not None:
                first.close()
            return settings.fail(prog, problem, 2)
    try:
        status = asyncio.run(_serve(config, predictor=predictor, first=first, analyzer=analyzer))
    except OSError as exc:
        if first is not None:
            first.close()
        return settings.fail(
            prog,
            f"--metrics-port={config.metrics_port}: cannot listen on "
            f"{config.metrics_host}:{config.metrics_port}: {exc.strerror or exc}",
            1,
        )
    if any(t.name.startswith(("reader-", "predict")) and t.is_alive() for t in threading.enumerate()):
        # A read is still stuck inside FFmpeg, or an abandoned predictor inside native code:
        # finalising the interpreter around it can abort the process, so leave now (everything
        # worth saving is already flushed below).
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


def analyzer_for(config: Config) -> Analyzer | None:
    """The tracker and zones ``config`` asks for (``--track``, ``--zones``), or None.

    Raises:
        framecast.zones.ZoneError: The zones file is unreadable or invalid.
        ImportError: The tracker's package is not installed.
    """
    layout = zones.load(config.zones) if config.zones else zones.Layout()
    if not (config.track or layout):
        return None
    return Analyzer(layout, lost_after=config.track_lost)


async def _serve(
    config: Config, *, predictor: Predictor | None, first: Reader | None, analyzer: Analyzer | None
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return await run(config, predictor=predictor, first=first, stop=stop, analyzer=analyzer)


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
    analyzer: Analyzer | None = None,
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
        analyzer: Tracker and zones; built from ``config`` (``--track``, ``--zones``) when None.

    Returns:
        0 after a clean stop or the end of a finite source, 1 if a task failed.

    Raises:
        DetectorError: ``config.detector`` names no usable predictor.
        DeviceError: ``config.device`` cannot be used here.
        framecast.zones.ZoneError: ``config.zones`` is unreadable or invalid.
        OSError: The metrics port cannot be bound.
    """
    source = parse_source(config.source)
    if open_source is None:
        open_source = opener(source, timeout=config.stall_timeout)
    if predictor is None and not config.workers and not config.predictor_socket:
        predictor = detectors.load(config.detector, options=options(config))
    if analyzer is None:
        analyzer = analyzer_for(config)
    producer = Producer(
        config,
        predictor=predictor,
        open_source=open_source,
        first=first,
        description=description or source.description,
        finite=source.finite if finite is None else finite,
        metrics=metrics or Metrics(),
        analyzer=analyzer,
    )
    return await producer.run(stop or asyncio.Event())
