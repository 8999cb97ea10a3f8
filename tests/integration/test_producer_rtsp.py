"""RTSP, proven: a real GStreamer RTSP server (H.264) read by a real producer through OpenCV's FFmpeg.

The camera serves a still QR code; the ``qr`` detector labels each result with the decoded text,
so a result carrying the text proves a frame crossed RTSP, the H.264 decoder and the predictor.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from framecast.local.embedded import free_port
from tests.support.producer import Listener, running_producer
from tests.support.rtsp import RtspServer
from tests.support.wait import wait_until

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer

TEXT = "framecast over rtsp"


@pytest.fixture
def qr_image(tmp_path: Path) -> Path:
    """A 640x480 PNG holding a QR code of :data:`TEXT`, built with OpenCV's own encoder."""
    code = cv2.QRCodeEncoder.create().encode(TEXT)
    code = cv2.resize(code, None, fx=6, fy=6, interpolation=cv2.INTER_NEAREST)
    image = np.full((480, 640, 3), 255, np.uint8)
    height, width = code.shape[:2]
    image[40 : 40 + height, 40 : 40 + width] = cv2.cvtColor(code, cv2.COLOR_GRAY2BGR)
    path = tmp_path / "qr.png"
    assert cv2.imwrite(str(path), image)
    return path


def _decoded(heard: Listener) -> list[int]:
    """Indices of results whose detections include the QR text."""
    return [i for i, r in enumerate(heard.results) if any(d.label == TEXT for d in r.detections)]


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text: str = reply.read().decode()
    return text


def _reconnects(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("framecast_producer_source_reconnects_total "):
            return float(line.split()[1])
    return 0.0


_ARGS = ["--detector", "qr", "--no-demand", "--max-fps", "5", "--heartbeat-interval", "0.25"]


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_qr_code_served_over_rtsp_is_decoded(
    transport: str, qr_image: Path, redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    """TCP is the default; UDP is chosen with OPENCV_FFMPEG_CAPTURE_OPTIONS=rtsp_transport;udp.

    The server accepts only the transport under test (it answers 461 to the other), so a decoded
    result proves which one carried the video.
    """
    env = dict(child_env)
    if transport == "udp":
        env["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;udp"
    with (
        RtspServer(qr_image, protocols="tcp" if transport == "tcp" else "udp") as camera,
        Listener(redis_server.url) as heard,
        running_producer(redis_server.url, ["--source", camera.url, *_ARGS], env=env) as producer,
    ):
        heard.wait_for(lambda: len(_decoded(heard)) >= 3, what=f"3 results decoding the QR over {transport}")
        assert producer.process.poll() is None, producer.logs
    result = heard.results[_decoded(heard)[0]]
    assert (result.width, result.height) == (640, 480)
    (found,) = [d for d in result.detections if d.label == TEXT]
    x1, y1, x2, y2 = found.box
    assert 30 <= x1 < x2 <= 300 and 30 <= y1 < y2 <= 300  # the code sits at (40, 40), ~200 px wide
    assert {s.source for s in heard.statuses} == {camera.url}


def test_an_rtsp_server_killed_and_restarted_is_reconnected(
    qr_image: Path, redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    camera = RtspServer(qr_image)
    camera.start()
    try:
        with (
            Listener(redis_server.url) as heard,
            running_producer(
                redis_server.url, ["--source", camera.url, "--stall-timeout", "2", *_ARGS], env=child_env
            ) as producer,
        ):
            heard.wait_for(
                lambda: _decoded(heard) and heard.statuses and heard.statuses[-1].state == "online",
                what="decoded results from the camera",
            )
            camera.kill()
            heard.wait_for(lambda: heard.statuses[-1].state == "offline", what="an offline status")
            before = len(heard.results)
            camera.start()  # same port
            heard.wait_for(
                lambda: heard.statuses[-1].state == "online" and heard.statuses[-1].reconnects >= 1,
                timeout=40,
                what="online again after a reconnect",
            )
            heard.wait_for(
                lambda: any(i >= before for i in _decoded(heard)), what="decoded results after the restart"
            )
            assert producer.process.poll() is None  # it never gave up
        assert producer.process.returncode == 0, producer.logs
    finally:
        camera.kill()
    states = [s.state for s in heard.statuses]
    first_online = states.index("online")
    assert "offline" in states[first_online:]
    results = heard.results
    assert [r.seq for r in results] == list(range(1, len(results) + 1))  # one run: seq just continues
    assert "reopening" in producer.logs


def test_a_camera_that_goes_silent_is_reopened_and_credentials_never_leak(
    qr_image: Path, redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    """The server accepts every session, then sends no frame: the stall watchdog must reopen it.

    (It sends one, which FFmpeg consumes while probing the stream at open; none reaches the
    producer.)

    The URL carries a user, a password and a token; none may reach the logs, the heartbeats or
    the Prometheus metrics.
    """
    metrics_port = free_port()
    with RtspServer(qr_image, frames=1) as camera:
        url = f"rtsp://admin:hunter2secret@127.0.0.1:{camera.port}/cam?token=t0kensecret"
        with (
            Listener(redis_server.url) as heard,
            running_producer(
                redis_server.url,
                ["--source", url, "--stall-timeout", "1.5", "--metrics-port", str(metrics_port), *_ARGS],
                env=child_env,
            ) as producer,
        ):
            heard.wait_for(
                lambda: heard.statuses and heard.statuses[-1].reconnects >= 2,
                timeout=40,
                what="two reopenings of the silent camera",
            )

            metrics: str = wait_until(
                lambda: next((text for text in [_scrape(metrics_port)] if _reconnects(text) >= 1), None),
                what="reconnects in the metrics",
            )
            assert producer.process.poll() is None
        assert producer.process.returncode == 0, producer.logs
    logs = producer.logs
    assert "stalled (no frame for 1.5 s); reopening" in logs, logs
    for secret in ("admin", "hunter2secret", "t0kensecret"):
        assert secret not in logs, logs
        assert secret not in metrics
        assert all(secret not in s.source for s in heard.statuses)
    assert {s.source for s in heard.statuses} == {camera.url}
    assert f'source="{camera.url}"' in metrics
