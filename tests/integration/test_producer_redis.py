"""The producer's Redis link: dead pooled connections are retried once on a fresh connection.

After a Redis restart every idle connection in the client's pool is dead; without a retry each
one failed the first command it carried, seconds later, and counted as an outage of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis

from tests.support.producer import Listener, running_producer

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
