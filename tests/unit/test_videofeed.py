"""The producer's video feed: "the encoder stopped" means no frame follows (a real VP8 encoder)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
from prometheus_client import CollectorRegistry

from producer.encoder import check_codec
from producer.latest import Frame
from producer.videofeed import VideoFeed, VideoMetrics
from tests.support.wait import poll


async def test_a_frame_in_flight_when_the_last_viewer_leaves_is_sent_before_the_encoder_says_stopped() -> (
    None
):
    registry = CollectorRegistry()
    gate = asyncio.Event()
    published: list[bytes] = []

    async def publish(data: bytes) -> bool:
        await gate.wait()  # the frame is on its way to Redis when demand drops
        published.append(data)
        return True

    async def viewers() -> int:
        return 1

    feed = VideoFeed(
        check_codec("vp8"),
        stream="cam",
        epoch=lambda: "e1",
        publish=publish,
        viewers=viewers,
        metrics=VideoMetrics(registry),
        bitrate=500_000,
        keyframe_interval=2.0,
        max_width=640,
        fps=15.0,
    )

    def value(name: str) -> float | None:
        return registry.get_sample_value(f"framecast_producer_video_{name}")

    encoding = asyncio.create_task(feed._encode_forever())
    try:
        feed._set_wanted(True)
        assert value("encoding") == 1
        feed.offer(Frame(np.zeros((48, 64, 3), np.uint8), 0, time.time()))
        await poll(
            lambda: feed._slot is None and not feed._ready.is_set(), what="the encoder to take the frame"
        )
        feed._set_wanted(False)
        # Its frame is still going out: the encoder has not stopped yet.
        assert value("encoding") == 1
        gate.set()
        await poll(lambda: value("encoding") == 0, what="the encoder to stop")
        assert len(published) == 1 and value("frames_total") == 1
    finally:
        encoding.cancel()
        await asyncio.gather(encoding, return_exceptions=True)
        await feed.close()
