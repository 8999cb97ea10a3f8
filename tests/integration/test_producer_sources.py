"""Real sources through a real producer process: video files and an MJPEG camera that dies."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from framecast.local.embedded import free_port
from tests.support.producer import Listener, kill, start_mjpeg, start_producer

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer


def _write_video(path: Path, count: int, fps: float) -> None:
    """A clip of a square crossing a still background."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (320, 240))
    assert writer.isOpened()
    try:
        for i in range(count):
            image = np.full((240, 320, 3), 120, np.uint8)
            cv2.rectangle(image, (10 + 12 * i, 100), (50 + 12 * i, 140), (250, 250, 250), -1)
            writer.write(image)
    finally:
        writer.release()


def test_a_video_file_plays_at_its_own_rate_then_the_producer_exits_0(
    redis_server: RedisServer, child_env: dict[str, str], tmp_path: Path
) -> None:
    fps, count = 10.0, 15
    clip = tmp_path / "door.avi"
    _write_video(clip, count, fps)
    with Listener(redis_server.url) as heard:
        producer = start_producer(
            redis_server.url, ["--source", str(clip), "--no-demand", "--max-fps", "0"], env=child_env
        )
        try:
            status = producer.wait(timeout=60)
        finally:
            producer.stop()
        assert status == 0, producer.logs
        heard.wait_for(lambda: heard.statuses and heard.statuses[-1].state == "offline", what="final status")
    results = heard.results
    assert results, producer.logs
    assert results[-1].frame == count - 1  # the last frame is never skipped: it is the newest
    assert [r.seq for r in results] == list(range(1, len(results) + 1))
    for before, after in itertools.pairwise(results):
        assert after.frame > before.frame
    # Native rate: frames are released on the file's clock, never ahead of it (a slow machine only
    # makes them later), so the span covers the frames in between, however the run was scheduled.
    first, last = results[0], results[-1]
    assert last.captured_at - first.captured_at >= (last.frame - first.frame - 1) / fps
    assert heard.statuses[0].source == "door.avi"
    assert "ended" in producer.logs


def test_a_looped_file_keeps_playing(
    redis_server: RedisServer, child_env: dict[str, str], tmp_path: Path
) -> None:
    clip = tmp_path / "short.avi"
    _write_video(clip, 5, 50.0)
    with Listener(redis_server.url) as heard:
        producer = start_producer(
            redis_server.url,
            ["--source", str(clip), "--loop", "--no-demand", "--max-fps", "0"],
            env=child_env,
        )
        try:
            heard.wait_for(lambda: heard.results and heard.results[-1].frame >= 12, what="a third pass")
            assert producer.process.poll() is None
        finally:
            assert producer.stop() == 0, producer.logs
    assert all(s.reconnects == 0 for s in heard.statuses)


def test_an_mjpeg_camera_that_dies_is_reopened_on_its_own(
    redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    port = free_port()
    camera = start_mjpeg(port, env=child_env)
    url = f"http://viewer:s3cret@127.0.0.1:{port}/video.mjpg?token=t0ps3cret"
    producer = None
    try:
        with Listener(redis_server.url) as heard:
            producer = start_producer(
                redis_server.url,
                ["--source", url, "--no-demand", "--stall-timeout", "3", "--heartbeat-interval", "0.25"],
                env=child_env,
            )
            heard.wait_for(
                lambda: len(heard.results) >= 3 and any(s.state == "online" for s in heard.statuses),
                what="results from the camera",
            )
            kill(camera)
            heard.wait_for(lambda: heard.statuses[-1].state == "offline", what="an offline status")
            before = len(heard.results)
            last_frame = heard.results[-1].frame
            camera = start_mjpeg(port, env=child_env)
            heard.wait_for(
                lambda: heard.statuses[-1].state == "online" and heard.statuses[-1].reconnects == 1,
                what="online again after one reconnect",
            )
            heard.wait_for(lambda: len(heard.results) >= before + 3, what="results after the reconnect")
        assert producer.process.poll() is None  # it never gave up
        assert producer.stop() == 0, producer.logs
    finally:
        kill(camera)
        if producer is not None:
            producer.stop()

    results = heard.results
    assert len({r.epoch for r in results}) == 1  # same run: seq just continues
    assert [r.seq for r in results] == list(range(1, len(results) + 1))
    assert all(r.frame > last_frame for r in results[before:])
    assert (results[0].width, results[0].height) == (320, 240)
    states = [s.state for s in heard.statuses]
    assert "offline" in states[states.index("online") :]
    # Credentials never leave the process: not in heartbeats, not in logs.
    assert {s.source for s in heard.statuses} == {f"http://127.0.0.1:{port}/video.mjpg"}
    logs = producer.logs
    assert "s3cret" not in logs and "t0ps3cret" not in logs
    # One line per state change, not one per failed attempt.
    assert logs.count("lost; reopening") == 1, logs
    assert logs.count("cannot open") <= 1, logs


def test_a_producer_stops_cleanly_while_its_camera_hangs(
    redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    """A read stuck inside FFmpeg must not turn SIGTERM into a crash (or a hang)."""
    port = free_port()
    camera = start_mjpeg(port, env=child_env, hang_after=5)
    producer = None
    try:
        with Listener(redis_server.url) as heard:
            producer = start_producer(
                redis_server.url,
                ["--source", f"http://127.0.0.1:{port}/", "--no-demand", "--stall-timeout", "60"],
                env=child_env,
            )
            heard.wait_for(lambda: len(heard.results) >= 1, what="a result before the camera froze")
            # The camera is now silent with the connection open: the reader is blocked in FFmpeg.
            assert producer.stop() == 0, producer.logs
            heard.wait_for(
                lambda: heard.statuses and heard.statuses[-1].state == "offline", what="final status"
            )
    finally:
        kill(camera)
        if producer is not None:
            producer.stop()
