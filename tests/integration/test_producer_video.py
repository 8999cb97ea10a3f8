"""Live video from a real producer process: demand, identity of every picture, GOP structure.

valkey <- producer (synthetic scene, real PyAV encoder); a Redis subscriber stands where a
gateway will (the gateway's video fan-out is its own issue). Frames are decoded with FFmpeg.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import pytest

from framecast.local.embedded import free_port
from producer.synthetic import Scene
from tests.support.producer import Listener, metrics, run_producer, running_producer
from tests.support.video import decode, psnr
from tests.support.wait import wait_until

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_video_is_encoded_only_while_watched_and_every_frame_is_its_own_picture(
    redis_server: RedisServer, child_env: dict[str, str], codec: str
) -> None:
    port = free_port()
    args = [
        "--metrics-port", str(port), "--heartbeat-interval", "0.25", "--max-fps", "15",
        "--video-codec", codec, "--video-keyframe-interval", "1",
    ]  # fmt: skip
    with running_producer(redis_server.url, args, env=child_env) as producer:
        with Listener(redis_server.url) as heard:
            heard.wait_for(lambda: len(heard.results) >= 10, timeout=60, what="results")
            wait_until(lambda: metrics(port)["framecast_producer_results_published_total"] >= 10)
            before = metrics(port)
        # Results flowed (10 of them), nobody watched video: nothing was encoded.
        assert before["framecast_producer_video_frames_total"] == 0
        assert before["framecast_producer_video_encoding"] == 0
        assert heard.statuses and all(s.video == codec for s in heard.statuses)

        with Listener(redis_server.url, video=True) as watching:
            watching.wait_for(
                lambda: sum(f.key for f in watching.video) >= 3, timeout=60, what="three keyframes"
            )
            watching.wait_for(
                lambda: {f.frame for f in watching.video} <= {r.frame for r in watching.results},
                what="the results of the frames received",
            )
        assert metrics(port)["framecast_producer_video_frames_total"] >= len(watching.video)

        # The viewer left: the encoder stops, and stays stopped while results go on.
        wait_until(lambda: metrics(port)["framecast_producer_video_encoding"] == 0, what="encoder stop")
        stopped = metrics(port)
        with Listener(redis_server.url) as later:
            later.wait_for(lambda: len(later.results) >= 10, timeout=60, what="results after the viewer left")
        assert (
            metrics(port)["framecast_producer_video_frames_total"]
            == stopped["framecast_producer_video_frames_total"]
        )
        assert producer.process.poll() is None
    assert heard.errors == watching.errors == later.errors == []

    frames = watching.video
    # Joined when nobody else watched: the encoder opened for this viewer, with a keyframe.
    assert frames[0].key and frames[0].seq == frames[0].group
    for a, b in itertools.pairwise(frames):
        assert (b.epoch, b.seq) == (a.epoch, a.seq + 1), "a frame was lost or reordered"
        assert b.group == (b.seq if b.key else a.group)
        assert b.frame > a.frame and b.captured_at > a.captured_at
    keys = [f for f in frames if f.key]
    assert all(k.codec for k in keys) and all(not f.codec for f in frames if not f.key)
    for a, b in itertools.pairwise(keys):
        assert b.captured_at - a.captured_at >= 1.0  # --video-keyframe-interval, in capture time

    # Identity: each frame carries the frame index and capture time of the result computed on it.
    # The listener went on collecting after its last check: frames newer than the last result
    # it heard may have come before their results (encoding is faster than predicting).
    results = {(r.epoch, r.frame): r for r in watching.results}
    last = max(r.frame for r in watching.results)
    for f in frames:
        if f.frame <= last:
            assert results[(f.epoch, f.frame)].captured_at == f.captured_at
    # And it is that picture: the synthetic scene's frame i is a pure function of i, so the
    # decoded picture must be nearer to frame `frame` than to its neighbours.
    scene = Scene()
    for frame, picture in decode(frames)[::5]:
        assert picture.shape == (480, 640, 3)
        own = psnr(picture, scene.render(frame.frame))
        for other in (frame.frame - 2, frame.frame - 1, frame.frame + 1, frame.frame + 2):
            assert own > psnr(picture, scene.render(other)), f"frame {frame.frame} looks like {other}"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--video-codec", "h265"], "--video-codec=h265: unknown codec"),
        (["--video-bitrate", "0"], "--video-bitrate=0: must be greater than 0"),
        (["--video-bitrate", "-5"], "--video-bitrate=-5: must be greater than 0"),
        (["--video-keyframe-interval", "0"], "--video-keyframe-interval=0: must be greater than 0"),
        (["--video-width", "0"], "--video-width=0: must be greater than 0"),
        # SVT-AV1 takes no frame under 64 pixels: 40x30 is refused when the encoder opens.
        (["--video-codec", "av1", "--video-width", "40"], "--video-width=40: libsvtav1 refuses 40x30 frames"),
        (["--video-codec", "vp8", "--video-width", "17000", "--source", "{big}"], "libvpx refuses"),
    ],
    ids=[
        "unknown-codec",
        "bitrate-0",
        "bitrate-negative",
        "interval-0",
        "width-0",
        "av1-too-small",
        "vp8-too-big",
    ],
)
def test_bad_video_settings_are_one_line_and_exit_2(
    args: list[str], named: str, child_env: dict[str, str], tmp_path: object
) -> None:
    if "{big}" in args:
        args = [a.replace("{big}", str(_wide_clip(tmp_path))) for a in args]
    status, stderr = run_producer([*args, "--redis-url", "redis://127.0.0.1:9/0"], env=child_env)
    lines = stderr.strip().splitlines()
    assert status == 2, stderr
    assert len(lines) == 1 and named in lines[0], stderr


def _wide_clip(tmp_path: object) -> object:
    """A short video file 16400 pixels wide: over VP8's limit (16383), which libvpx refuses."""
    import cv2
    import numpy as np

    path = tmp_path / "wide.avi"  # type: ignore[operator]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (16400, 16))
    for _ in range(3):
        writer.write(np.zeros((16, 16400, 3), np.uint8))
    writer.release()
    return path
