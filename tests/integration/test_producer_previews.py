"""Worker processes, previews on demand and the metrics endpoint, on a real producer process."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import cv2
import numpy as np

from framecast.local.embedded import free_port
from producer.synthetic import QR_TEXT
from tests.support.producer import Listener, metrics, running_producer
from tests.support.wait import wait_until

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer


def test_worker_processes_previews_on_demand_and_metrics(
    redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    port = free_port()
    args = [
        "--detector", "qr", "--workers", "2", "--metrics-port", str(port),
        "--preview-width", "320", "--preview-fps", "10", "--heartbeat-interval", "0.25",
    ]  # fmt: skip
    with running_producer(redis_server.url, args, env=child_env) as producer:
        with Listener(redis_server.url) as heard:
            heard.wait_for(lambda: len(heard.results) >= 8, timeout=60, what="results from the worker pool")
            wait_until(lambda: metrics(port).get("framecast_producer_results_published_total", 0) >= 8)
            # Results flow, but nobody asked for previews: none was made.
            before = metrics(port)
        assert before["framecast_producer_previews_published_total"] == 0
        assert before["framecast_producer_frames_captured_total"] > 0
        assert before["framecast_producer_predict_seconds_count"] >= 8
        assert before["framecast_producer_source_online"] == 1
        assert before["framecast_producer_redis_connected"] == 1
        assert before["framecast_producer_predict_errors_total"] == 0

        with Listener(redis_server.url, previews=True) as watching:
            watching.wait_for(lambda: len(watching.previews) >= 3, what="previews once someone watches them")
            watching.wait_for(
                lambda: {r.seq for r in watching.results} >= {p.seq for p in watching.previews},
                what="the results the previews show",
            )
        assert producer.process.poll() is None
    assert heard.errors == [] and watching.errors == []

    # The pool builds its own predictor per process; results still come out in order.
    results = heard.results + watching.results
    assert all(d.label == QR_TEXT for r in results for d in r.detections)
    assert sum(len(r.detections) for r in results) >= len(results) - 2
    for before_result, after_result in itertools.pairwise(heard.results):
        assert after_result.seq == before_result.seq + 1
        assert after_result.frame > before_result.frame

    by_seq = {r.seq: r for r in watching.results}
    for preview in watching.previews:
        result = by_seq[preview.seq]
        assert (preview.frame, preview.captured_at, preview.epoch) == (
            result.frame,
            result.captured_at,
            result.epoch,
        )
        assert (preview.width, preview.height) == (320, 240)  # 640x480 shrunk to --preview-width
        picture = cv2.imdecode(np.frombuffer(preview.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and picture.shape == (240, 320, 3)
