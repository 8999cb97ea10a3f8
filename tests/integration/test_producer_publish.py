"""A real producer process publishing to a real valkey: the publishing contract, exactly."""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING

import redis

from framecast import wire
from tests.support.producer import Listener, history, start_producer
from tests.support.wait import wait_until

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer


def test_results_go_to_history_then_channel_with_increasing_seq(
    redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    started = time.time()
    with Listener(redis_server.url) as heard:
        # The listener is a subscriber, so the demand-driven predictor runs.
        producer = start_producer(redis_server.url, ["--source", "synthetic"], env=child_env)
        try:
            heard.wait_for(lambda: len(heard.results) >= 12 and len(heard.statuses) >= 2, what="results")
            live = client.get(wire.status_key("default"))
            assert live is not None
            assert isinstance(wire.decode(live), wire.Status)
            assert 0 < client.pttl(wire.status_key("default")) <= 5000
        finally:
            exit_status = producer.stop()
        assert exit_status == 0, producer.logs
        # The last word of a stopping producer: an offline heartbeat, and no live status key.
        heard.wait_for(lambda: heard.statuses and heard.statuses[-1].state == "offline", what="final status")
    assert client.get(wire.status_key("default")) is None
    client.close()

    assert heard.errors == []
    results = heard.results
    epoch = results[0].epoch
    assert len(epoch) == 8 and all(r.epoch == epoch for r in results)
    assert [r.seq for r in results] == list(range(1, len(results) + 1))  # from 1, no gap
    for before, after in itertools.pairwise(results):
        assert after.frame > before.frame
        assert after.captured_at >= before.captured_at
    for result in results:
        assert result.stream == "default"
        assert (result.width, result.height) == (640, 480)
        assert result.published_at >= result.captured_at
    # The synthetic scene always has something moving.
    assert sum(len(r.detections) for r in results) > 0
    assert {d.label for r in results for d in r.detections} == {"motion"}

    entries = history(redis_server.url)
    assert [message for _, message in entries] == results  # same bytes, same order, nothing else
    epoch_ms = int(entries[0][0].split("-")[0])
    assert [entry_id for entry_id, _ in entries] == [f"{epoch_ms}-{r.seq}" for r in results]
    assert started * 1000 - 1 <= epoch_ms <= results[0].published_at * 1000  # the clock at start-up

    for status in heard.statuses:
        assert status.epoch == epoch
        assert status.source == "synthetic"
        assert status.seq <= results[-1].seq
    online = [s for s in heard.statuses if s.state == "online"]
    assert online and all(s.active for s in online)
    assert heard.statuses[-1].seq == results[-1].seq


def test_a_restarted_producer_starts_a_new_epoch_after_the_newest_history_id(
    redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    # An entry from a clock running an hour ahead (another machine): ids must still increase.
    client = redis.Redis.from_url(redis_server.url)
    ahead_ms = int(time.time() * 1000) + 3_600_000
    client.xadd(wire.history_key("default"), {wire.HISTORY_FIELD: b"{}"}, id=f"{ahead_ms}-5")
    client.close()
    epochs: list[str] = []
    for _ in range(2):
        producer = start_producer(redis_server.url, ["--no-demand", "--max-fps", "30"], env=child_env)
        try:
            # Three results of this run's own epoch: counting the whole history, the second run was
            # already "done" by the first run's results, and was stopped (rc -15) while importing.
            wait_until(
                lambda: (
                    len([m for _, m in history(redis_server.url, skip_invalid=True) if m.epoch not in epochs])
                    >= 3
                )
            )
        finally:
            assert producer.stop() == 0, producer.logs
        epochs.append(history(redis_server.url, skip_invalid=True)[-1][1].epoch)
    assert epochs[0] != epochs[1]

    entries = history(redis_server.url, skip_invalid=True)
    ids = [tuple(int(part) for part in entry_id.split("-")) for entry_id, _ in entries]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    first = [(i, m) for i, m in zip(ids, (m for _, m in entries), strict=True) if m.epoch == epochs[0]]
    second = [(i, m) for i, m in zip(ids, (m for _, m in entries), strict=True) if m.epoch == epochs[1]]
    assert first[0][0] == (ahead_ms + 1, 1)
    assert second[0][0][0] > first[0][0][0]
    assert [m.seq for _, m in second] == list(range(1, len(second) + 1))
