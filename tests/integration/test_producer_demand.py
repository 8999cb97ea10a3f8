"""Demand and outages against a real valkey: pause without viewers, survive Redis going away."""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis

from framecast import wire
from tests.support.producer import Listener, running_producer
from tests.support.wait import wait_until

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer


class _StatusKey:
    """Reads the producer's status key (which, unlike subscribing, does not count as a viewer)."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.seen: list[wire.Status] = []

    def poll(self) -> wire.Status | None:
        raw = self.client.get(wire.status_key("default"))
        if raw is None:
            return None
        status = wire.decode(raw)
        assert isinstance(status, wire.Status)
        if not self.seen or status.sent_at > self.seen[-1].sent_at:
            self.seen.append(status)
        return status

    def wait_for_fresh(self, count: int, *, what: str) -> list[wire.Status]:
        """Wait for ``count`` heartbeats newer than those seen so far; returns them."""
        start = len(self.seen)
        wait_until(lambda: self.poll() and len(self.seen) >= start + count, what=what)
        return self.seen[start:]


def test_the_predictor_pauses_without_viewers_and_resumes_with_one(
    redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    key = _StatusKey(redis_server.url)
    history_key = wire.history_key("default")
    args = ["--heartbeat-interval", "0.2"]
    with running_producer(redis_server.url, args, env=child_env) as producer:
        # Nobody subscribes: heartbeats go on, marked inactive, and no result is made.
        wait_until(lambda: (s := key.poll()) is not None and s.state == "online", what="the camera online")
        quiet = key.wait_for_fresh(4, what="heartbeats without viewers")
        assert all(not s.active and s.seq == 0 and s.state == "online" for s in quiet)
        assert key.client.xlen(history_key) == 0

        with Listener(redis_server.url) as heard:
            heard.wait_for(lambda: len(heard.results) >= 5, what="results once someone watches")
            heard.wait_for(lambda: any(s.active for s in heard.statuses), what="an active heartbeat")
        assert [r.seq for r in heard.results] == list(range(1, len(heard.results) + 1))

        # The viewer left: paused again within a heartbeat or so, then nothing more is published.
        wait_until(lambda: (s := key.poll()) is not None and not s.active, what="an inactive heartbeat")
        key.wait_for_fresh(1, what="one more heartbeat (in-flight results land)")
        settled = key.wait_for_fresh(3, what="heartbeats while paused")
        assert all(not s.active for s in settled)
        assert len({s.seq for s in settled}) == 1
        assert key.client.xlen(history_key) == settled[-1].seq
        assert producer.process.poll() is None
    assert "no viewers: predictor paused" in producer.logs
    key.client.close()


def test_redis_down_at_start_and_mid_run_is_retried_and_logged_once_per_change(
    redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    redis_server.stop()
    args = ["--no-demand", "--log-level", "DEBUG", "--heartbeat-interval", "0.25"]
    with running_producer(redis_server.url, args, env=child_env) as producer:
        # Down from the start: the producer stays up, says so once, and keeps retrying.
        wait_until(lambda: producer.logs.count("still unreachable") >= 2, what="retries while Redis is down")
        assert producer.process.poll() is None
        assert producer.logs.count("unreachable (") == 1  # the WARNING line, once

        redis_server.restart()
        with Listener(redis_server.url) as heard:
            heard.wait_for(lambda: len(heard.results) >= 3, what="results once Redis is up")
            first_run = list(heard.results)
            # Redis restarts mid-run (losing its memory): the producer reconnects and carries on.
            redis_server.restart()
            heard.wait_for(
                lambda: len(heard.results) > len(first_run) and heard.results[-1].seq > first_run[-1].seq + 2,
                what="results after the second outage",
            )
        assert producer.process.poll() is None
    logs = producer.logs
    # The start-up outage, and the mid-run restart at most once: a restart that is over before a
    # command needs Redis is absorbed by the client's one retry on a fresh connection.
    outages = logs.count("unreachable (")
    assert outages in (1, 2), logs
    assert logs.count("reachable again") == outages, logs
    results = heard.results
    assert len({r.epoch for r in results}) == 1
    seqs = [r.seq for r in results]
    assert seqs == sorted(set(seqs))  # increasing, no duplicates (a gap during the outage is allowed)
