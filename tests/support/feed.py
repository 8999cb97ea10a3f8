"""Publish results and heartbeats to a real valkey exactly as a producer does, for the client tests.

The publishing itself is :func:`tests.support.gateway.publish_result` and
:func:`~tests.support.gateway.publish_status` (the gateway tests' fake producer
uses them too); :class:`Feed` adds distinct results per seq and a background publisher.
"""

from __future__ import annotations

import secrets
import threading
import time

import redis

from framecast import wire
from tests.support.gateway import publish_result, publish_status


class Feed:
    """One producer run (one epoch) of one stream, driven by the test.

    Args:
        redis_url: The valkey to publish to.
        stream: Stream name.
        width: Frame width of every result.
        height: Frame height of every result.
    """

    def __init__(self, redis_url: str, stream: str, *, width: int = 320, height: int = 240) -> None:
        self.redis = redis.Redis.from_url(redis_url)
        self.stream = stream
        self.width = width
        self.height = height
        self.epoch = secrets.token_hex(4)
        self.epoch_ms = int(time.time() * 1000)
        self.seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def result(self, seq: int) -> wire.Result:
        """The result a given seq carries: one box that moves with seq, so each is distinct."""
        x = float(seq % (self.width - 40))
        box = (x, 10.0, x + 40.0, 60.0)
        now = time.time()
        return wire.Result(
            stream=self.stream,
            epoch=self.epoch,
            seq=seq,
            frame=seq,
            captured_at=now,
            published_at=now,
            width=self.width,
            height=self.height,
            detections=(wire.Detection(label="thing", confidence=0.9, box=box),),
        )

    def publish(self, count: int = 1) -> list[wire.Result]:
        """Publish the next ``count`` results (XADD then PUBLISH each)."""
        published = []
        with self._lock:
            for _ in range(count):
                self.seq += 1
                result = self.result(self.seq)
                publish_result(self.redis, result, epoch_ms=self.epoch_ms)
                published.append(result)
        return published

    def heartbeat(self) -> None:
        """Publish one status heartbeat carrying the last seq."""
        with self._lock:
            status = wire.Status(
                stream=self.stream, epoch=self.epoch, seq=self.seq, sent_at=time.time(), process_fps=10.0
            )
            publish_status(self.redis, status, ttl=5.0)

    def start(self, *, rate: float = 20.0, limit: int = 10_000) -> None:
        """Publish ``rate`` results per second (and a heartbeat per second) in a thread, at most ``limit``."""

        def run() -> None:
            last_beat = 0.0
            for _ in range(limit):
                if self._stop.wait(1.0 / rate):
                    return
                self.publish()
                if time.monotonic() - last_beat >= 0.5:
                    self.heartbeat()
                    last_beat = time.monotonic()

        self._thread = threading.Thread(target=run, name=f"feed-{self.stream}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background publisher and close the Redis connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.redis.close()
