"""``python -m bench.video_sample``: a few viewers that decode what they receive (capture -> paint).

The load clients (``bench.client``) count pictures and bytes but never decode them: that keeps
them cheap, so the gateway is what the video bench measures. This process stands for a sample
of the audience (8 of 100 or of 1000) that does what a viewer does with each picture:

* video (``FCV1``): decodes it with FFmpeg's decoder for its codec (PyAV, one decoding thread
  per viewer, no frame threading: a frame comes out of the packet that carries it, as with
  WebCodecs' ``optimizeForLatency``), feeding it only chains that start at a keyframe, as the
  viewer's ``video.js`` does;
* previews (``FCP1``): decodes the JPEG to pixels (OpenCV, ``cv2.imdecode``).

Per picture it records the picture's capture time (carried in its header), when it was on Redis
(a subscriber of the stream's video or preview channel in this process: capture -> published
is the producer's share, the encoder's delay included), when the whole message was read from
the WebSocket, and when it was decoded: ready to paint. A browser's paint adds its compositing
step on top (measured in Chromium in ``tests/browser/test_viewer_video.py``).

Each viewer is a thread with its own connection (``websockets``' sync client, no compression, as
the load clients negotiate none) and its own decoder; FFmpeg and OpenCV release the GIL while
they decode, so the viewers decode in parallel as separate tabs would. It runs in the bench's
client processes, never in the gateway's: the gateway's CPU is read from its own process.

**Spread across the audience.** The gateway writes a picture to its viewers in the order they
joined, so the last of 1000 gets it a whole fan-out pass after the first. With ``--spread N``
viewer ``i`` connects once the gateway counts ``i * N / K`` more connections than when this
process started (``framecast_gateway_connections``, polled while the load clients connect), so
the sample sits at evenly spaced places in the join order, not all at its end.

Lifecycle: print ``{"ready": ...}`` once the Redis subscriber listens, connect (spread), print
``{"connected": K, ...}``, read until SIGTERM or ``--max-seconds``, write ``--out`` (JSON) and
exit 0. Each SIGUSR1 marks ``[time, bytes, pictures, own CPU seconds]`` so far, like the load
clients' marks.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

import av
import cv2
import numpy as np
import redis
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect

from framecast import wire

__all__ = ["decoder_name", "main"]

# WebCodecs codec string (its prefix) -> FFmpeg decoder in the av wheel.
_DECODERS = {"vp8": "vp8", "vp09": "vp9", "avc1": "h264", "av01": "libdav1d"}


def decoder_name(codec: str) -> str:
    """The FFmpeg decoder for a WebCodecs codec string (``vp8``, ``vp09.00.31.08``, ``avc1...``)."""
    name = _DECODERS.get(codec.split(".", 1)[0])
    if name is None:
        raise ValueError(f"no decoder for codec {codec!r}")
    return name


def _frame_bytes(size: int) -> int:
    """Bytes on the wire of a server frame carrying ``size`` bytes (unmasked, no extension)."""
    return size + (2 if size < 126 else 4 if size < 65536 else 10)


class _Video:
    """One viewer's decoder: chains from a keyframe only, like ``gateway/static/video.js``."""

    def __init__(self) -> None:
        self.context: Any = None
        self.codec = ""
        self.last: tuple[str, int] | None = None  # (epoch, seq) of the last frame fed
        self.errors = 0
        self.skipped = 0

    def decode(self, data: bytes) -> tuple[float, bool] | None:
        """Decode one ``FCV1`` message: (captured_at, key) once a picture came out, else None."""
        frame = wire.decode_video(data)
        if frame.key:
            if self.context is None or frame.codec != self.codec:
                self.context = av.CodecContext.create(decoder_name(frame.codec), "r")
                self.context.thread_count = 1  # no frame threading: no frames of delay
                self.codec = frame.codec
        elif self.last != (frame.epoch, frame.seq - 1) or self.context is None:
            self.skipped += 1  # a delta frame without the frames before it: wait for a keyframe
            self.last = None
            return None
        try:
            pictures = self.context.decode(av.Packet(frame.data))
        except av.FFmpegError:
            self.errors += 1
            self.last = None
            return None
        self.last = (frame.epoch, frame.seq)
        return (frame.captured_at, frame.key) if pictures else None


def _decode_preview(data: bytes) -> tuple[float, bool] | None:
    preview = wire.decode_preview(data)
    pixels = cv2.imdecode(np.frombuffer(preview.jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    return (preview.captured_at, False) if pixels is not None else None


class _Viewer(threading.Thread):
    def __init__(self, index: int, url: str, mode: str, sampler: _Sampler) -> None:
        super().__init__(daemon=True, name=f"viewer-{index}")
        self.index = index
        self.mode = mode
        self.sampler = sampler
        self.url = url
        self.video = _Video()
        self.open = threading.Event()
        self.error = ""
        self.opened = 0.0
        self.first_picture = 0.0

    def run(self) -> None:
        try:
            with connect(self.url, compression=None, max_size=None, open_timeout=30) as ws:
                self.opened = time.time()
                self.open.set()
                self._read(ws)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.open.set()

    def _read(self, ws: ClientConnection) -> None:
        sampler, video = self.sampler, self.video
        decode = video.decode if self.mode == "video" else _decode_preview
        while not sampler.stopping.is_set():
            try:
                message = ws.recv(timeout=0.5)
            except TimeoutError:
                continue
            except ConnectionClosed:
                return
            received = time.time()
            if isinstance(message, str):
                sampler.count(_frame_bytes(len(message.encode())), 0)
                continue
            sampler.count(_frame_bytes(len(message)), 1)
            if not self.first_picture:
                self.first_picture = received
            try:
                decoded = decode(message)
            except (wire.WireError, ValueError):
                video.errors += 1
                continue
            if decoded is not None:
                sampler.record(self.index, decoded[0], received, time.time(), decoded[1])


class _Sampler:
    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.bytes = 0
        self.pictures = 0
        self.marks: list[list[float]] = []
        self.samples: list[tuple[int, float, float, float, bool]] = []
        self.published: dict[float, float] = {}  # captured_at -> when it was on Redis

    def count(self, size: int, pictures: int) -> None:
        with self._lock:
            self.bytes += size
            self.pictures += pictures

    def record(self, viewer: int, captured: float, received: float, decoded: float, key: bool) -> None:
        with self._lock:
            self.samples.append((viewer, captured, received, decoded, key))

    def mark(self) -> None:
        with self._lock:
            self.marks.append([time.time(), self.bytes, self.pictures, time.process_time()])


def _tap(redis_url: str, channel: str, sampler: _Sampler) -> threading.Thread:
    """When each picture of ``channel`` was on Redis (its capture time is its key)."""
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    peek = wire.peek_video if channel.endswith(":video") else wire.decode_preview

    def run() -> None:
        while not sampler.stopping.is_set():
            message = pubsub.get_message(timeout=0.2)
            if message and message["type"] == "message":
                now = time.time()
                try:
                    sampler.published[peek(message["data"]).captured_at] = now
                except wire.WireError:
                    continue
        pubsub.close()
        client.close()

    thread = threading.Thread(target=run, daemon=True, name="redis-tap")
    thread.start()
    return thread


def _connections(metrics: str) -> int:
    with urllib.request.urlopen(metrics, timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("framecast_gateway_connections "):
                return int(float(line.split()[1]))
    raise RuntimeError(f"{metrics}: no framecast_gateway_connections")


def _connect_spread(args: argparse.Namespace, sampler: _Sampler) -> tuple[list[_Viewer], list[int]]:
    """Connect the viewers at evenly spaced places of the join order (see the module docstring);
    the viewers, and how many connections the load had opened before each."""
    viewers: list[_Viewer] = []
    places: list[int] = []
    base = _connections(args.metrics) if args.spread else 0
    deadline = time.monotonic() + args.connect_timeout
    for index in range(args.viewers):
        wanted = base + index * args.spread // args.viewers
        count = base
        while args.spread and (count := _connections(args.metrics)) < wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway never counted {wanted} connections")
            time.sleep(0.02)
        places.append(count - base - index)
        viewer = _Viewer(index, args.url, args.mode, sampler)
        viewer.start()
        viewer.open.wait(60)
        if not viewer.opened:
            raise RuntimeError(f"viewer {index} could not connect: {viewer.error or 'timed out'}")
        viewers.append(viewer)
    return viewers, places


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.video_sample", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--url", required=True, help="ws:// URL each viewer opens (?video=1 or ?previews=1).")
    parser.add_argument("--mode", choices=("video", "previews"), required=True)
    parser.add_argument("--viewers", type=int, default=8, help="Viewers that decode.")
    parser.add_argument("--redis-url", required=True, help="Where the producer publishes the pictures.")
    parser.add_argument("--stream", default="default")
    parser.add_argument("--metrics", default="", help="The gateway's /metrics URL (for --spread).")
    parser.add_argument(
        "--spread", type=int, default=0, help="Connections the load adds: spread the viewers among them."
    )
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--out", required=True, help="JSON file the samples are written to.")
    args = parser.parse_args(argv)
    if args.viewers < 1 or (args.spread and not args.metrics):
        parser.error("--viewers must be at least 1, and --spread needs --metrics")
    # Threads hand the GIL over after 0.5 ms instead of 5: a viewer's read or the Redis tap is not
    # stamped late because another viewer's thread held it (decoders release it anyway).
    sys.setswitchinterval(0.0005)
    sampler = _Sampler()
    signal.signal(signal.SIGUSR1, lambda _s, _f: sampler.mark())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _s, _f: stop.set())
    channel = wire.video_channel(args.stream) if args.mode == "video" else wire.preview_channel(args.stream)
    tap = _tap(args.redis_url, channel, sampler)
    print(json.dumps({"ready": True}), flush=True)
    viewers, places = _connect_spread(args, sampler)
    print(json.dumps({"connected": len(viewers)}), flush=True)
    deadline = time.monotonic() + args.max_seconds
    while not stop.is_set() and time.monotonic() < deadline:
        stop.wait(0.2)
    sampler.stopping.set()
    for thread in (*viewers, tap):
        thread.join(5)
    published = sampler.published
    report = {
        "mode": args.mode,
        "viewers": len(viewers),
        "places": places,
        "marks": sampler.marks,
        # viewer, captured, on Redis (None: the tap missed it), received, decoded, keyframe
        "samples": [[v, c, published.get(c), r, d, k] for v, c, r, d, k in sampler.samples],
        "first_picture_ms": [(v.first_picture - v.opened) * 1e3 for v in viewers if v.first_picture],
        "decode_errors": sum(v.video.errors for v in viewers),
        "skipped": sum(v.video.skipped for v in viewers),
    }
    with open(args.out, "w") as out:
        json.dump(report, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
