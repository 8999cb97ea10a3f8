"""The producer's Redis link: dead pooled connections are retried once on a fresh connection.

After a Redis restart every idle connection in the client's pool is dead; without a retry each
one failed the first command it carried, seconds later, and counted as an outage of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest
import redis

from tests.support.producer import Listener, history, running_producer, start_producer
from tests.support.wait import wait_until

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer

_ARGS = ["--no-demand", "--max-fps", "20", "--heartbeat-interval", "0.2"]


def _producer_connections(client: redis.Redis) -> int:
    """Connections other than ``client``'s own and the test listener's subscription."""
    listed: list[dict[str, object]] = client.client_list(_type="normal")  # type: ignore[assignment]
    return len(listed) - 1


def test_connections_killed_under_the_producer_are_retried_without_an_outage(
    redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    """Redis stays up but drops every client connection (what a restart leaves in the pool)."""
    admin = redis.Redis.from_url(redis_server.url)
    try:
        with (
            Listener(redis_server.url) as heard,
            running_producer(redis_server.url, _ARGS, env=child_env) as producer,
        ):
            heard.wait_for(lambda: len(heard.results) >= 5, what="results before the kills")
            for kill in range(3):
                heard.wait_for(lambda: _producer_connections(admin) >= 1, what="the producer's connections")
                killed = admin.client_kill_filter(_type="normal", skipme=True)
                assert killed >= 1
                before, beats = len(heard.results), len(heard.statuses)
                heard.wait_for(
                    lambda before=before, beats=beats: (
                        len(heard.results) >= before + 5 and len(heard.statuses) >= beats + 3
                    ),
                    what=f"results and heartbeats after kill {kill + 1}",
                )
            assert producer.process.poll() is None
    finally:
        admin.close()
    logs = producer.logs
    assert "unreachable" not in logs, logs  # never counted as an outage
    seqs = [r.seq for r in heard.results]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # nothing parked, nothing lost
    assert len({r.epoch for r in heard.results}) == 1  # a retried write is never a "second producer"


def test_after_a_redis_restart_one_outage_is_logged_and_the_pool_is_healthy(
    redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    with (
        Listener(redis_server.url) as heard,
        running_producer(redis_server.url, _ARGS, env=child_env) as producer,
    ):
        heard.wait_for(lambda: len(heard.results) >= 5, what="results before the restart")
        before = len(heard.results)
        redis_server.restart()
        heard.wait_for(lambda: len(heard.results) >= before + 5, what="results after the restart")
        # Every pooled connection gets used again: the demand-free producer publishes results,
        # heartbeats and their status key concurrently, for many rounds.
        beats = len(heard.statuses)
        heard.wait_for(lambda: len(heard.statuses) >= beats + 15, what="15 heartbeats after the restart")
        assert producer.process.poll() is None
    logs = producer.logs
    assert logs.count("unreachable (") <= 1, logs  # the restart itself, at most once
    assert logs.count("unreachable (") == logs.count("reachable again"), logs
    seqs = [r.seq for r in heard.results]
    assert seqs == sorted(set(seqs))


_FRAMES = 100


def _clip(path: Path) -> Path:
    """100 frames at 10 fps: long enough to take Redis down while it plays."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (160, 120))
    assert writer.isOpened()
    try:
        for i in range(_FRAMES):
            image = np.full((120, 160, 3), 100, np.uint8)
            cv2.rectangle(image, (i, 40), (i + 20, 60), (255, 255, 255), -1)
            writer.write(image)
    finally:
        writer.release()
    return path


@pytest.mark.parametrize("redis_returns", [True, False])
def test_a_file_that_ends_while_redis_is_down_publishes_its_last_result_or_logs_the_loss(
    redis_returns: bool, tmp_path: Path, redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    clip = _clip(tmp_path / "clip.avi")
    args = ["--source", str(clip), "--no-demand", "--max-fps", "0", "--heartbeat-interval", "0.25"]
    with Listener(redis_server.url) as heard:
        producer = start_producer(redis_server.url, args, env=child_env)
        try:
            heard.wait_for(lambda: len(heard.results) >= 2, what="results while Redis is up")
            seen = heard.results[-1].seq
            redis_server.stop()
            wait_until(
                lambda: "source ended while Redis is unreachable" in producer.logs,
                timeout=60,
                what="the file to end with Redis down",
            )
            assert producer.process.poll() is None  # waiting for Redis, not gone
            if redis_returns:
                redis_server.restart()
                status = producer.wait(timeout=60)
            else:
                status = producer.stop()
        finally:
            producer.stop()
    assert status == 0, producer.logs
    logs = producer.logs
    if redis_returns:
        # The restarted valkey kept nothing: its history holds what was published after it came back.
        entries = history(redis_server.url)
        assert entries, logs
        last = entries[-1][1]
        assert last.frame == _FRAMES - 1 and last.seq > seen, logs
        assert "the last result was published" in logs, logs
        assert "was not published" not in logs, logs
    else:
        assert f"the last result (frame {_FRAMES - 1}) was not published" in logs, logs
        assert "in all never reached Redis" in logs, logs


def test_a_write_redis_refuses_is_logged_and_counted_as_refused_not_as_an_outage(
    redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    """Known defect (issue 20): every refused XADD was logged as "Redis ... unreachable".

    The stream's history key holds a string, so Redis answers every XADD with WRONGTYPE: the link
    is fine (heartbeats keep going), the results are refused, and once the key is gone they flow.
    """
    from framecast import wire
    from framecast.local.embedded import free_port
    from tests.support.gateway import metric
    from tests.support.producer import scrape

    admin = redis.Redis.from_url(redis_server.url)
    port = free_port()
    try:
        admin.set(wire.history_key("default"), "not a stream")
        with (
            Listener(redis_server.url) as heard,
            running_producer(
                redis_server.url, [*_ARGS, "--metrics-port", str(port)], env=child_env
            ) as producer,
        ):
            refused = wait_until(
                lambda: metric(scrape(port), "framecast_producer_publish_refused_total") >= 3,
                what="refused writes counted",
            )
            assert refused
            heard.wait_for(lambda: len(heard.statuses) >= 3, what="heartbeats while results are refused")
            assert heard.results == [], "a refused write is not published"
            admin.delete(wire.history_key("default"))
            heard.wait_for(lambda: len(heard.results) >= 3, what="results once Redis accepts them")
            assert producer.process.poll() is None
        logs = producer.logs
    finally:
        admin.close()
    assert "unreachable" not in logs, logs
    assert "refused the result of stream default: WRONGTYPE" in logs, logs
    assert logs.count("refused the result") == 1, "logged once, not per result"
    assert "accepts the result of stream default again" in logs
