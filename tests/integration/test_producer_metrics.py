"""A real producer's ``--metrics-port``: capture->publish histogram and the target rate gauge."""

from __future__ import annotations

from framecast.local.embedded import free_port
from tests.support.gateway import metric
from tests.support.procs import child_env
from tests.support.producer import running_producer, scrape
from tests.support.valkey import RedisServer
from tests.support.wait import wait_until

P = "framecast_producer_"


def test_capped_producer_reports_its_max_fps_and_every_publish_latency(redis_server: RedisServer) -> None:
    port = free_port()
    args = ["--stream", "m1", "--source", "synthetic", "--max-fps", "5", "--no-demand"]
    with running_producer(redis_server.url, [*args, "--metrics-port", str(port)], env=child_env()):

        def published() -> str | None:
            text = scrape(port)
            return text if metric(text, P + "capture_to_publish_seconds_count") >= 3 else None

        text = wait_until(published, timeout=30, what="three results published")
        assert metric(text, P + "target_fps") == 5.0
        count = metric(text, P + "capture_to_publish_seconds_count")
        # Every observation is a real age: positive, and no more than the bucket of +Inf holds.
        assert metric(text, P + "capture_to_publish_seconds_sum") > 0
        assert metric(text, P + "capture_to_publish_seconds_bucket", {"le": "+Inf"}) == count
        assert metric(text, P + "predict_seconds_count") >= count


def test_uncapped_producer_aims_at_the_sources_measured_rate(redis_server: RedisServer) -> None:
    port = free_port()
    args = ["--stream", "m2", "--source", "synthetic", "--max-fps", "0", "--no-demand"]
    args += ["--metrics-port", str(port)]
    with running_producer(redis_server.url, args, env=child_env()):

        def aimed() -> float | None:
            text = scrape(port)
            target, captured = metric(text, P + "target_fps"), metric(text, P + "capture_fps")
            return target if target > 0 and target == captured else None

        assert wait_until(aimed, timeout=30, what="target_fps = the measured capture rate") > 0
