"""Live video of one stream: encode the predictor's frames while someone watches, publish them.

The feeder hands every frame it gives the predictor to :meth:`VideoFeed.offer`, which never
blocks: the frame waits in a one-frame slot (a newer one replaces it, counted as skipped) until
the encoder's own thread is free, so encoding never delays a prediction and holds at most one
waiting frame. Each encoded frame is framed with its identity (``wire.encode_video``: epoch,
seq, group, source frame index, capture time) and published on ``wire.video_channel`` in order.

Demand, like previews: every :data:`DEMAND_POLL` seconds the feed asks how many subscribe to the
video channel (gateways subscribe only while one of their clients watches video). With none the
encoder is closed and nothing is encoded; the first viewer opens it again, with a keyframe.

A chain that broke on the producer's side (a publish failed, the epoch changed, the frame size
changed) restarts with a forced keyframe, so no subscriber is ever sent a delta frame whose
reference it cannot have.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from framecast import wire
from producer.config import Config
from producer.encoder import Codec, EncodeError, Encoder, Packet, check_codec, check_size, video_size
from producer.latest import Frame
from producer.publisher import Publisher
from producer.sources import Reader, Source, opener

__all__ = ["DEMAND_POLL", "VideoFeed", "VideoMetrics", "check_video", "frame_size", "from_config"]

log = logging.getLogger("producer.video")

DEMAND_POLL = 0.5
"""Seconds between counts of video subscribers: encoding starts within this of the first viewer."""


class VideoMetrics:
    """The video feed's Prometheus metrics, in the producer's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        p = "framecast_producer_video_"
        r = registry
        self.frames = Counter(p + "frames", "Encoded video frames published.", registry=r)
        self.keyframes = Counter(p + "keyframes", "Keyframes among them.", registry=r)
        self.bytes = Counter(p + "bytes", "Bytes of video published (framing included).", registry=r)
        self.skipped = Counter(
            p + "skipped", "Frames not encoded: a newer one came while the encoder was busy.", registry=r
        )
        self.errors = Counter(p + "errors", "Frames the encoder failed on, or not published.", registry=r)
        self.encoding = Gauge(
            p + "encoding", "1 while someone watches video and the encoder runs.", registry=r
        )
        self.delay = Histogram(
            p + "encode_delay_seconds",
            "From a frame's capture to its encoded bytes (waiting for the encoder included).",
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )


class VideoFeed:
    """Encodes and publishes one stream's video while it has viewers.

    Args:
        codec: The codec (checked with :func:`producer.encoder.check_codec`).
        stream: Stream name.
        epoch: Returns the publisher's current epoch (it can change during a run).
        publish: Publishes one framed video message; returns False when Redis did not take it.
        viewers: Counts the video channel's subscribers; None when Redis is unreachable.
        metrics: Where to count.
        bitrate: Bitrate cap in bits/s.
        keyframe_interval: Seconds between keyframes.
        max_width: Largest encoded width.
        fps: The rate the encoder's rate control plans for.
    """

    def __init__(
        self,
        codec: Codec,
        *,
        stream: str,
        epoch: Callable[[], str],
        publish: Callable[[bytes], Awaitable[bool]],
        viewers: Callable[[], Awaitable[int | None]],
        metrics: VideoMetrics,
        bitrate: int,
        keyframe_interval: float,
        max_width: int,
        fps: float,
    ) -> None:
        self.codec = codec
        self.stream = stream
        self._epoch = epoch
        self._publish = publish
        self._viewers = viewers
        self.metrics = metrics
        self._bitrate = bitrate
        self._interval = keyframe_interval
        self._max_width = max_width
        self._fps = fps
        self.wanted = False
        """Whether someone watches video (the encoder runs only then)."""
        self._slot: Frame | None = None
        self._ready = asyncio.Event()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="encode")
        self._encoder: Encoder | None = None  # touched on the encoder thread only
        self._failed_size: tuple[int, int] | None = None
        self._sent_epoch: str | None = None
        self._seq = 0
        self._group = 0
        self._rekey = True

    # ---------------------------------------------------------------- from the feeder

    def offer(self, frame: Frame) -> None:
        """Take ``frame`` for encoding if someone watches; never blocks (newest wins)."""
        if not self.wanted:
            return
        if self._slot is not None:
            self.metrics.skipped.inc()
        self._slot = frame
        self._ready.set()

    # ---------------------------------------------------------------- tasks

    async def run(self) -> None:
        """Watch demand and encode until cancelled."""
        watch = asyncio.create_task(self._watch(), name="video-demand")
        try:
            await self._encode_forever()
        except Exception:
            # A defect here must not stop the predictions: log it, stop the video, carry on.
            log.exception("stream %s: video stopped", self.stream)
            self.wanted = False
            self.metrics.encoding.set(0)
            await asyncio.Event().wait()
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch

    async def close(self) -> None:
        """Release the encoder and its thread."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(RuntimeError):
            await loop.run_in_executor(self._thread, self._close_encoder)
        self._thread.shutdown(wait=False)

    async def _watch(self) -> None:
        while True:
            count = await self._viewers()
            if count is not None:
                self._set_wanted(count > 0)
            await asyncio.sleep(DEMAND_POLL)

    def _set_wanted(self, wanted: bool) -> None:
        if wanted == self.wanted:
            return
        self.wanted = wanted
        if wanted:
            self.metrics.encoding.set(1)
            log.info("stream %s: a video viewer subscribed: encoding %s", self.stream, self.codec.name)
        else:
            log.info("stream %s: no video viewers: encoder stopped", self.stream)
            self._slot = None
            self._ready.set()  # the encode loop closes the encoder

    async def _encode_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._ready.wait()
            self._ready.clear()
            frame, self._slot = self._slot, None
            if not self.wanted or frame is None:
                if self._encoder is not None:
                    await loop.run_in_executor(self._thread, self._close_encoder)
                    self._rekey = True
                if not self.wanted:
                    # Here, not where demand dropped: a frame being encoded then is still sent, and
                    # "stopped" must mean that no frame follows.
                    self.metrics.encoding.set(0)
                continue
            epoch = self._epoch()
            if epoch != self._sent_epoch:
                # A new epoch starts its own numbering, at a keyframe.
                self._sent_epoch, self._seq, self._group, self._rekey = epoch, 0, 0, True
            key, self._rekey = self._rekey, False
            try:
                packets = await loop.run_in_executor(self._thread, self._encode, frame, key)
            except EncodeError as exc:
                self.metrics.errors.inc()
                log.error("stream %s: the %s encoder failed: %s", self.stream, self.codec.name, exc)
                self._rekey = True
                continue
            self.metrics.delay.observe(max(0.0, time.time() - frame.captured_at))
            for packet in packets:
                if not await self._send(frame, epoch, packet):
                    self._rekey = True  # subscribers missed a frame: the chain restarts at a key
                    break

    def _encode(self, frame: Frame, key: bool) -> list[Packet]:
        """On the encoder thread: (re)open the encoder for this frame's size, encode."""
        height, width = frame.image.shape[:2]
        size = video_size(width, height, max_width=self._max_width)
        if self._encoder is not None and (self._encoder.width, self._encoder.height) != size:
            self._close_encoder()
        if self._encoder is None:
            if self._failed_size == size:
                return []
            try:
                self._encoder = Encoder(
                    self.codec,
                    width=size[0],
                    height=size[1],
                    fps=self._fps,
                    bitrate=self._bitrate,
                    keyframe_interval=self._interval,
                )
            except EncodeError:
                self._failed_size = size  # logged once by the caller, not once per frame
                raise
            key = True
        return self._encoder.encode(frame.image, frame.captured_at, key=key)

    def _close_encoder(self) -> None:
        if self._encoder is not None:
            self._encoder.close()
            self._encoder = None

    async def _send(self, frame: Frame, epoch: str, packet: Packet) -> bool:
        if not packet.key and self._group == 0:
            return True  # nothing to depend on yet (never seen: the first frame is forced key)
        self._seq += 1
        if packet.key:
            self._group = self._seq
        data = wire.encode_video(
            wire.VideoFrame(
                stream=self.stream,
                epoch=epoch,
                seq=self._seq,
                group=self._group,
                frame=frame.index,
                captured_at=frame.captured_at,
                width=packet.width,
                height=packet.height,
                key=packet.key,
                codec=packet.codec if packet.key else "",
                data=packet.data,
            )
        )
        if not await self._publish(data):
            self.metrics.errors.inc()
            return False
        self.metrics.frames.inc()
        self.metrics.bytes.inc(len(data))
        if packet.key:
            self.metrics.keyframes.inc()
        return True


def from_config(config: Config, publisher: Publisher, registry: CollectorRegistry) -> VideoFeed | None:
    """The video feed ``config`` asks for (None with ``--no-video``), publishing through ``publisher``."""
    if not config.video:
        return None
    return VideoFeed(
        check_codec(config.video_codec),
        stream=config.stream,
        epoch=lambda: publisher.epoch,
        publish=publisher.video,
        viewers=publisher.video_viewers,
        metrics=VideoMetrics(registry),
        bitrate=config.video_bitrate * 1000,
        keyframe_interval=config.video_keyframe_interval,
        max_width=config.video_width,
        fps=config.max_fps or 30.0,
    )


def frame_size(source: Source, first: Reader | None) -> tuple[int, int] | None:
    """The source's frame size when it is known before the first frame (synthetic, files, devices)."""
    if first is None and source.kind == "synthetic":
        first = opener(source)()
    size = getattr(first, "size", None)
    return size if isinstance(size, tuple) else None


def check_video(config: Config, size: tuple[int, int] | None) -> str | None:
    """One line naming the setting the encoder refuses at this frame size, or None if it takes it.

    The codec itself was checked with the settings (``--video-codec``); this opens the encoder as
    the producer will and encodes one frame. A size known only once frames arrive (a network
    camera) is checked then: a refusal is logged once and that stream has no video.
    """
    if size is None:
        return None
    codec = check_codec(config.video_codec)
    width, height = video_size(*size, max_width=config.video_width)
    try:
        check_size(codec, width, height, fps=config.max_fps or 30.0, bitrate=config.video_bitrate * 1000)
    except EncodeError as exc:
        return (
            f"--video-width={config.video_width}: {codec.encoder} refuses {width}x{height} frames (the "
            f"source is {size[0]}x{size[1]}): {exc}"
        )
    return None
