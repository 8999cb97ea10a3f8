"""--max-fps caps how often the predictor runs, whatever the camera's rate."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from tests.support.producer import Listener, start_producer

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer


def test_max_fps_spaces_processed_frames_by_the_camera_to_cap_ratio(
    redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    """At --max-fps 5 on the 30 fps synthetic camera, processed frames are about 6 source frames apart.

    The bound checked (at least 4 apart) is on frame indices, not on wall-clock time, so a slow
    machine cannot break it: slowness only makes the steps larger. A producer that ignored the
    cap runs the ~2 ms motion detector on nearly every frame (steps of 1).
    """
    with Listener(redis_server.url) as heard:
        producer = start_producer(
            redis_server.url, ["--source", "synthetic", "--max-fps", "5"], env=child_env
        )
        try:
            heard.wait_for(lambda: len(heard.results) >= 12, what="12 results")
        finally:
            assert producer.stop() == 0, producer.logs
    frames = [r.frame for r in heard.results if r.epoch == heard.results[0].epoch]
    steps = [b - a for a, b in itertools.pairwise(frames)]
    assert len(steps) >= 10
    assert min(steps) >= 4, frames
