"""--max-fps caps how often the predictor runs, whatever the camera's rate."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from tests.support.producer import Listener, start_producer

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer


def test_max_fps_spaces_processed_frames_by_their_capture_times(
    redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    """At --max-fps 5 on the 30 fps synthetic camera, processed frames are captured >= 0.1 s apart.

    The bounds are the schedule's own guarantees, read from the results' capture stamps, so a
    slow machine cannot break them (slowness only spaces frames further): consecutive frames
    at least half an interval apart, ``n`` frames spanning at least ``n - 1.5`` intervals. A
    producer that ignored the cap would run the ~2 ms motion detector on nearly every frame,
    33 ms apart.
    """
    interval = 1 / 5
    with Listener(redis_server.url) as heard:
        producer = start_producer(
            redis_server.url, ["--source", "synthetic", "--max-fps", "5"], env=child_env
        )
        try:
            heard.wait_for(lambda: len(heard.results) >= 12, what="12 results")
        finally:
            assert producer.stop() == 0, producer.logs
    captured = [r.captured_at for r in heard.results if r.epoch == heard.results[0].epoch]
    steps = [b - a for a, b in itertools.pairwise(captured)]
    assert len(steps) >= 10
    slack = 0.002  # the wire's rounding of capture stamps
    assert min(steps) >= interval / 2 - slack, steps
    assert captured[-1] - captured[0] >= (len(captured) - 1.5) * interval - slack, steps
