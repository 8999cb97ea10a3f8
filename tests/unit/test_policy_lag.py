"""The end-to-end lag rule of the fan-out policy (lag probes), with fake sinks and clocks.

A balancer between gateway and client reads whatever the gateway writes, so a client that stalls
behind it never fills the gateway's own buffer. These tests keep every fake sink's buffer level at
zero (the balancer took everything) and show that the probes alone find, conflate, resume and
close such a client.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.policy import Limits, Policy
from tests.unit.policy_fakes import Clock, Driver, FakeSink, Recorder, framer, ping_framer, result, status

S = "cam1"


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("the policy opened a socket")

    monkeypatch.setattr(socket, "socket", refuse)
    yield


class World:
    """A policy with lag probes on (threshold 1 s, max_lag 10 s, a probe after any traffic), fake clocks.

    A probe round marks a client due only once its streams carried something since its last
    probe: :meth:`probe` with ``status`` first publishes a status, so the round finds traffic.
    """

    def __init__(self, **options: Any) -> None:
        self.wall = Clock(1000.0)
        self.mono = Clock(0.0)
        self.statuses = 0
        pinging = options.pop("ping_framer", ping_framer)
        limits = Limits(
            **{"lag_threshold": 1.0, "max_lag": 10.0, "probe_messages": 1, "max_age": 0.0, **options}
        )
        self.counts = Recorder()
        self.policy = Policy(
            limits,
            framer=framer,
            ping_framer=pinging,
            observer=self.counts,
            clock=self.wall,
            monotonic=self.mono,
            timer=Clock(0.0),
        )
        self.driver = Driver(self.policy)

    def client(self, key: str, *, shared: bool = True, previews: bool = False) -> FakeSink:
        sink = FakeSink(self.wall, shared=shared)
        self.policy.add(S, key, sink, previews=previews)
        return sink

    def result(self, seq: int, *, age: float = 0.0) -> None:
        self.policy.deliver(S, result(S, seq, captured_at=self.wall.now - age))
        self.driver.collect()

    def status(self, seq: int) -> None:
        self.policy.deliver(S, status(S, seq, sent_at=self.wall.now))
        self.driver.collect()

    def later(self, seconds: float) -> None:
        self.mono.now += seconds
        self.wall.now += seconds

    def probe(self, *, traffic: bool = True) -> None:
        """A probe round; with ``traffic``, after a status on the stream (so the round has traffic)."""
        if traffic:
            self.statuses += 1
            self.status(self.statuses)
        self.policy.probe()
        self.driver.collect()

    def tick(self) -> None:
        self.policy.tick()
        self.driver.collect()

    def pong(self, key: str) -> None:
        self.policy.pong(key)
        self.driver.collect()


def test_without_a_probe_round_nothing_but_data_is_written() -> None:
    world = World()
    sink = world.client("a")
    for seq in range(1, 4):
        world.result(seq)
    assert sink.results() == [1, 2, 3] and sink.pings == []


def test_probes_are_off_without_a_threshold_or_a_ping_framer() -> None:
    for options in ({"lag_threshold": 0.0}, {"ping_framer": None}):
        world = World(**options)
        sink = world.client("a")
        world.probe()
        world.result(1)
        assert sink.results() == [1] and sink.pings == []


def test_a_probe_rides_right_behind_the_next_message_once_per_round() -> None:
    world = World()
    a, b = world.client("a"), world.client("b")
    world.probe()
    assert a.pings == [] and b.pings == [], "the probe waits for traffic: no write of its own"
    world.result(1)
    world.result(2)
    # One ping each, right behind result 1 (index 2: after the round's status and result 1).
    assert a.pings == b.pings and len(a.pings) == 1 and a.pings[0][0] == 2
    assert a.expected == [a.pings[0][1]] and a.results() == [1, 2]
    assert world.counts.probes == 2
    world.probe()  # the first is still out: no second probe on top of it
    world.result(3)
    assert len(a.pings) == 1
    world.pong("a")
    world.pong("a")  # a second answer to the same probe counts once
    assert world.counts.pongs == 1
    world.probe()
    world.result(4)
    assert len(a.pings) == 2 and len(b.pings) == 1, "only the client that answered owes a new one"
    assert a.pings[1][1] != a.pings[0][1], "each round has its own payload"


def test_a_client_that_receives_nothing_is_never_probed() -> None:
    world = World()
    quiet = FakeSink(world.wall)
    world.policy.add("other", "q", quiet)
    world.client("a")
    for _ in range(5):
        world.probe()
        world.result(1)
        world.later(2.0)
    assert quiet.pings == [] and quiet.written == []
    assert not world.policy.is_lagging("q")


def test_a_client_answering_within_the_threshold_never_lags() -> None:
    world = World()
    sink = world.client("a")
    for seq in range(1, 30):
        world.probe()
        world.result(seq)
        world.later(0.9)
        world.pong("a")
    assert sink.results() == list(range(1, 30))
    assert world.policy.lagging == 0 and world.driver.waits == []


def test_an_unanswered_probe_past_the_threshold_makes_the_client_lag_with_an_empty_buffer() -> None:
    world = World()
    stalled, reader = world.client("s"), world.client("r")
    world.probe()
    world.result(1)
    world.later(0.5)
    world.pong("r")
    world.later(0.5)
    world.probe()
    assert not world.policy.is_lagging("s"), "exactly the threshold: not yet"
    world.later(0.1)
    world.probe()
    assert world.policy.is_lagging("s") and world.driver.waits == ["s"]
    assert world.counts.probe_lags == 1
    assert 0 < stalled.level < world.policy.limits.low_water, "its gateway buffer never filled"
    # Lagging: newest per stream and kind only, held; the reader gets everything.
    for seq in range(2, 6):
        world.result(seq)
    world.status(5)
    assert stalled.results() == [1]
    assert world.policy.pending("s") == [(S, "result"), (S, "status")]
    assert world.counts.drops["conflated"] == 3
    assert reader.results() == [1, 2, 3, 4, 5]


def test_the_answer_catches_a_lagging_client_up_with_the_newest_and_a_new_probe_behind_it() -> None:
    world = World()
    sink = world.client("s")
    world.probe()
    world.result(1)
    world.later(1.5)
    world.probe()
    for seq in range(2, 5):
        world.result(seq)
    world.tick()
    assert sink.results() == [1], "no answer yet: a tick does not flush a client with an overdue probe"
    world.pong("s")
    assert sink.results() == [1, 4] and not world.policy.is_lagging("s")
    world.result(5)
    assert sink.results() == [1, 4, 5]
    # The fresh probe rides behind the first write after the flush (status 1, result 1, status 2,
    # then the flushed result 4 and result 5).
    assert [index for index, _ in sink.pings] == [2, 5]


def test_an_answer_while_the_buffer_is_still_full_waits_for_the_drain() -> None:
    world = World(client_buffer=2000)
    sink = world.client("s")
    world.probe()
    world.result(1)
    world.later(1.5)
    world.probe()
    world.result(2)
    sink.level = 5000  # the rest of the way is slow too
    world.pong("s")
    assert world.policy.is_lagging("s") and sink.results() == [1]
    sink.level = 0
    world.tick()
    assert sink.results() == [1, 2] and not world.policy.is_lagging("s")


def test_a_probe_unanswered_past_max_lag_closes_the_client_counted_from_the_probe() -> None:
    world = World(max_lag=10.0)
    world.client("s")
    reader = world.client("r")
    world.probe()
    world.result(1)
    world.pong("r")
    for seq in range(2, 12):
        world.later(1.0)
        world.probe()
        world.pong("r")
        world.result(seq)
        world.tick()
    assert world.driver.closes == [], "10 s after the probe: exactly max_lag, not yet"
    world.later(0.2)
    world.tick()
    assert world.driver.closes == ["s"]
    assert world.counts.slow_closes == 1 and world.policy.pending("s") == []
    assert reader.results() == list(range(1, 12))
    world.pong("s")  # an answer after the close changes nothing
    assert world.policy.discard("s") is True


def test_buffer_lag_and_probe_lag_together_close_at_the_older_of_the_two() -> None:
    world = World(client_buffer=100, max_lag=10.0)
    sink = world.client("s")
    world.probe()
    world.result(1)
    world.later(4.0)
    sink.level = 500
    world.result(2)  # over the buffer limit now, 4 s after its unanswered probe
    assert world.policy.is_lagging("s")
    world.later(6.1)
    world.tick()
    assert world.driver.closes == ["s"], "10.1 s since the probe, 6.1 s over the limit"


def test_deflate_clients_get_the_probe_as_its_own_frame_after_the_message() -> None:
    world = World()
    sink = world.client("d", shared=False)
    world.probe()
    world.result(1)
    world.result(2)
    assert sink.results() == [1, 2] and [index for index, _ in sink.pings] == [2]
    assert sink.expected == [sink.pings[0][1]]


def test_a_closed_client_is_not_probed_and_its_late_answer_is_ignored() -> None:
    world = World()
    sink = world.client("s")
    world.probe()
    world.result(1)
    sink.open = False
    world.later(2.0)
    world.probe()
    world.tick()
    assert world.policy.lagging == 0 and world.driver.closes == []
    world.policy.discard("s")
    world.pong("s")
    assert world.policy.client_keys() == []


def test_probe_ages_are_visible_for_the_gauge() -> None:
    world = World()
    world.client("a")
    world.client("b")
    assert world.policy.max_probe_age() == 0.0 and world.policy.probe_age("a") is None
    world.probe()
    world.result(1)
    world.later(0.25)
    world.pong("b")
    assert world.policy.probe_age("a") == pytest.approx(0.25)
    assert world.policy.max_probe_age() == pytest.approx(0.25)


def test_a_client_is_probed_once_its_streams_carried_enough_messages_or_bytes() -> None:
    world = World(probe_messages=3, probe_bytes=10_000)
    sink = world.client("a")
    world.result(1)
    world.result(2)
    world.probe(traffic=False)
    world.result(3)
    assert sink.pings == [], "two messages since the start: not yet"
    world.probe(traffic=False)  # result 3 makes three
    world.result(4)
    assert [index for index, _ in sink.pings] == [4]
    world.pong("a")
    # Bytes count too: one big message is enough.
    world.policy.deliver(S, result(S, 5, captured_at=world.wall.now, pad=12_000))
    world.probe(traffic=False)
    world.result(6)
    assert [index for index, _ in sink.pings] == [4, 6]


def test_previews_count_only_for_the_clients_that_receive_them() -> None:
    from tests.unit.policy_fakes import preview

    world = World(probe_messages=2)
    plain, viewer = world.client("p"), world.client("v", previews=True)
    world.policy.deliver_preview(S, preview(S, 1, captured_at=world.wall.now))
    world.policy.deliver_preview(S, preview(S, 2, captured_at=world.wall.now))
    world.probe(traffic=False)
    world.result(1)
    assert viewer.pings and not plain.pings
