"""Every rule of the fan-out policy, with fake sinks and fake clocks: no socket, no event loop."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from framecast import wire
from gateway.policy import Close, Limits, Policy, Step, Wait
from tests.unit.policy_fakes import EPOCH, Clock, Driver, FakeSink, Recorder, framer, preview, result, status

S, T = "cam1", "cam2"


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The policy is sans I/O: any socket made during these tests is a bug."""

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("the policy opened a socket")

    monkeypatch.setattr(socket, "socket", refuse)
    yield


class World:
    """A policy with fake clocks, and helpers to make clients."""

    def __init__(self, *, timer: Callable[[], float] | None = None, **limits: Any) -> None:
        self.wall = Clock(1000.0)
        self.mono = Clock(0.0)
        self.timer = Clock(0.0)
        self.frames = 0
        self.counts = Recorder()

        def counting_framer(data: bytes, binary: bool) -> bytes:
            self.frames += 1
            return framer(data, binary)

        # Staleness only where a test asks for it (max_age).
        self.policy = Policy(
            Limits(**{"max_age": 0.0, **limits}),
            framer=counting_framer,
            observer=self.counts,
            clock=self.wall,
            monotonic=self.mono,
            timer=timer or self.timer,
        )
        self.driver = Driver(self.policy)

    def client(
        self, key: str, stream: str = S, *, previews: bool = False, joining: bool = False, shared: bool = True
    ) -> FakeSink:
        sink = FakeSink(self.wall, shared=shared)
        self.policy.add(stream, key, sink, previews=previews, joining=joining)
        return sink

    def result(self, seq: int, *, stream: str = S, age: float = 0.0, pad: int = 0) -> bytes:
        data = result(stream, seq, captured_at=self.wall.now - age, pad=pad)
        self.policy.deliver(stream, data)
        self.driver.collect()
        return data


def test_every_client_gets_every_message_in_order_framed_once() -> None:
    world = World()
    sinks = [world.client(f"c{i}") for i in range(5)]
    sent = [world.result(seq) for seq in range(1, 11)]
    for sink in sinks:
        assert [w.data for w in sink.written] == sent
    assert world.frames == 10, "one frame per message, shared by every client"
    assert world.counts.deliveries == 50
    assert world.counts.messages["result"] == 10


def test_deflate_clients_are_framed_by_their_own_connection() -> None:
    world = World()
    shared, own = world.client("a"), world.client("b", shared=False)
    world.result(1)
    assert shared.results() == own.results() == [1]
    assert world.frames == 1


def test_malformed_messages_are_dropped_for_everyone_and_counted() -> None:
    world = World()
    sink = world.client("a")
    assert world.policy.deliver(S, b"not json") is None
    assert world.policy.deliver(S, b'{"v":1,"type":"result"}') is None
    assert world.policy.deliver_preview(S, b"nope") is True, "no preview audience: not even parsed"
    world.client("v", previews=True)
    assert world.policy.deliver_preview(S, b"nope") is False
    world.result(1)
    assert sink.results() == [1]
    assert world.counts.drops["malformed"] == 3


def test_stale_results_are_dropped_by_capture_time_on_arrival() -> None:
    world = World(max_age=2.0)
    sinks = [world.client(f"c{i}") for i in range(3)]
    world.result(1, age=1.0)
    world.result(2, age=2.5)
    world.result(3, age=2.0)  # exactly max_age: still sent
    assert all(s.results() == [1, 3] for s in sinks)
    assert world.counts.drops["stale"] == 3


def test_a_full_client_lags_keeps_the_newest_per_slot_and_others_are_unaffected() -> None:
    world = World(client_buffer=1000)
    normal, slow = world.client("n"), world.client("s")
    slow.level = 1001  # its reader stopped
    for seq in range(1, 6):
        world.result(seq)
    world.policy.deliver(S, status(S, 5, sent_at=world.wall.now))
    world.driver.collect()
    assert normal.results() == [1, 2, 3, 4, 5]
    assert slow.written == []
    assert world.policy.is_lagging("s") and world.policy.lagging == 1
    assert world.policy.pending("s") == [(S, "result"), (S, "status")]
    assert world.counts.drops["conflated"] == 4
    assert world.driver.waits == ["s"], "one wait asked for, when it started lagging"


def test_a_lagging_client_that_drains_gets_the_newest_in_arrival_order_and_is_live_again() -> None:
    world = World(client_buffer=1000)
    slow = world.client("s")
    slow.level = 5000
    world.result(1)
    world.policy.deliver(S, status(S, 1, sent_at=world.wall.now))
    world.result(2)  # the result slot was re-filled after the status: it goes last
    world.policy.tick()
    assert slow.written == [], "above low water: still lagging"
    slow.level = 250  # = low water (client_buffer // 4)
    world.policy.tick()
    assert slow.kinds() == ["status", "result"] and slow.results() == [2]
    assert not world.policy.is_lagging("s")
    world.result(3)
    assert slow.results() == [2, 3], "back on the synchronous path"


def test_pending_messages_that_go_stale_are_dropped_not_flushed() -> None:
    world = World(client_buffer=1000, max_age=2.0)
    slow = world.client("s")
    slow.level = 5000
    world.result(1)
    world.policy.deliver(S, status(S, 1, sent_at=world.wall.now))
    world.wall.now += 3
    world.policy.tick()  # still lagging: the stale result expires, the status (no capture time) stays
    assert world.policy.pending("s") == [(S, "status")]
    slow.level = 0
    world.policy.tick()
    assert slow.kinds() == ["status"]
    assert world.counts.drops["stale"] == 1


def test_a_flush_that_fills_the_buffer_again_lags_again_with_the_rest() -> None:
    world = World(client_buffer=100)
    slow = world.client("s")
    slow.level = 1000
    world.result(1, pad=200)
    world.policy.deliver(S, status(S, 1, sent_at=world.wall.now))
    world.driver.collect()
    slow.level = 0
    world.policy.tick()
    world.driver.collect()
    assert slow.results() == [1] and slow.kinds() == ["result"]
    assert world.policy.is_lagging("s") and world.policy.pending("s") == [(S, "status")]
    assert world.driver.waits == ["s", "s"]
    assert slow.peak <= world.policy.limits.client_buffer + len(slow.written[0].data) + 1


def test_a_client_lagging_longer_than_max_lag_is_closed() -> None:
    world = World(client_buffer=1000, max_lag=10.0)
    slow, normal = world.client("s"), world.client("n")
    slow.level = 5000
    world.result(1)
    world.mono.now += 10.0
    world.policy.tick()
    world.driver.collect()
    assert world.driver.closes == [], "exactly max_lag: not yet"
    world.mono.now += 0.5
    world.policy.tick()
    world.driver.collect()
    assert world.driver.closes == ["s"]
    assert world.counts.slow_closes == 1
    assert world.policy.lagging == 0 and world.policy.pending("s") == []
    assert world.policy.discard("s") is True, "the handler learns the policy was closing it"
    assert normal.results() == [1]


def test_a_closed_lagging_client_is_dropped_from_lagging_on_the_next_tick() -> None:
    world = World(client_buffer=1000)
    slow = world.client("s")
    slow.level = 5000
    world.result(1)
    slow.open = False
    world.policy.tick()
    world.driver.collect()
    assert world.policy.lagging == 0 and world.driver.closes == []
    assert slow.written == []


def test_a_connection_sending_a_fragmented_message_is_skipped() -> None:
    world = World()
    busy, other = world.client("b"), world.client("o")
    busy.fragmenting = True
    world.result(1)
    busy.fragmenting = False
    world.result(2)
    assert busy.results() == [2] and other.results() == [1, 2]


def test_joining_clients_get_buffered_live_messages_after_the_replay_without_duplicates() -> None:
    world = World()
    joiner = world.client("j", joining=True)
    for seq in range(1, 6):
        world.result(seq)
    world.policy.announce(S, wire.encode(wire.Gap(stream=S)))
    world.policy.deliver(S, result(S, 1, captured_at=world.wall.now, epoch="e2"))
    assert joiner.written == [], "nothing is sent while joining"
    world.policy.go_live(S, "j", epoch=EPOCH, seq=3)  # the replay covered up to 3
    world.policy.deliver(S, result(S, 2, captured_at=world.wall.now, epoch="e2"))
    got = [
        (type(w.message).__name__, getattr(w.message, "epoch", None), getattr(w.message, "seq", None))
        for w in joiner.written
    ]
    assert got == [
        ("Result", EPOCH, 4),
        ("Result", EPOCH, 5),
        ("Gap", None, None),
        ("Result", "e2", 1),
        ("Result", "e2", 2),
    ]


@pytest.mark.parametrize("bound", ["count", "bytes"])
def test_a_join_buffer_is_bounded_keeps_the_newest_and_says_so(bound: str) -> None:
    size = len(result(S, 1, captured_at=1000.0))
    options = {"join_limit": 3} if bound == "count" else {"join_bytes": 3 * size + size // 2}
    world = World(**options)
    joiner = world.client("j", joining=True)
    for seq in range(1, 11):
        world.result(seq)
        assert world.policy.held_bytes("j") <= 3 * size + size // 2
    world.policy.go_live(S, "j")
    assert joiner.kinds()[0] == "gap" and wire.decode(joiner.written[0].data) == wire.Gap(
        stream=S, reason="overflow"
    )
    assert joiner.results() == [8, 9, 10]
    assert world.counts.drops["join-overflow"] == 1


def test_a_join_buffer_within_its_bounds_announces_no_gap() -> None:
    world = World(join_limit=3)
    joiner = world.client("j", joining=True)
    for seq in range(1, 4):
        world.result(seq)
    world.policy.go_live(S, "j")
    assert joiner.kinds() == ["result"] * 3
    assert world.counts.drops["join-overflow"] == 0


def test_stale_buffered_messages_are_dropped_at_go_live() -> None:
    world = World(max_age=2.0)
    joiner = world.client("j", joining=True)
    world.result(1)
    world.wall.now += 1.5
    world.result(2)
    world.wall.now += 1.0
    world.policy.go_live(S, "j")
    assert joiner.results() == [2]


def test_a_joining_client_is_told_once_when_buffered_results_went_stale() -> None:
    world = World(max_age=2.0)
    joiner, fresh = world.client("j", joining=True), world.client("f", joining=True)
    world.result(1)
    world.result(2)
    world.wall.now += 1.5
    world.result(3)
    world.wall.now += 1.0
    world.policy.go_live(S, "j")
    assert joiner.kinds() == ["gap", "result"] and joiner.results() == [3]
    assert wire.decode(joiner.written[0].data) == wire.Gap(stream=S, reason="stale")
    world.policy.go_live(S, "f", epoch=EPOCH, seq=2)  # the stale ones were in its replay: nothing owed
    assert fresh.kinds() == ["result"]


def test_a_run_of_results_that_arrive_stale_is_told_once_to_live_and_once_to_joining_clients() -> None:
    world = World(max_age=2.0)
    live, joiner = world.client("l"), world.client("j", joining=True)
    world.result(1)
    for seq in (2, 3, 4):  # what a thawed Redis link delivers: captured long ago
        world.result(seq, age=30.0)
    world.result(5)
    world.policy.go_live(S, "j")
    stale = wire.Gap(stream=S, reason="stale")
    for sink in (live, joiner):
        assert sink.kinds() == ["result", "gap", "result"] and sink.results() == [1, 5]
        assert wire.decode(sink.written[1].data) == stale
    world.result(6, age=30.0)  # a new run after a fresh result: told again
    for sink in (live, joiner):
        assert sink.kinds()[3:] == ["gap"] and sink.results() == [1, 5]
    assert world.counts.drops["stale"] == 3 + 3 + 2, "live, then at go_live, then both live"


def test_previews_go_only_to_clients_that_asked_as_binary() -> None:
    world = World()
    plain, viewer = world.client("p"), world.client("v", previews=True)
    data = preview(S, 1, captured_at=world.wall.now)
    assert world.policy.deliver_preview(S, data)
    world.result(1)
    assert viewer.written[0].binary and viewer.written[0].data == data
    assert viewer.results() == [1] and plain.results() == [1] and len(plain.written) == 1


def test_remove_and_discard_stop_delivery_and_forget_pending() -> None:
    world = World(client_buffer=1000)
    a, b = world.client("a"), world.client("b")
    world.client("a", T)
    world.policy.remove(S, "a")
    assert world.policy.clients(S) == 1 and world.policy.subscriptions() == 2
    world.result(1)
    assert a.results() == [] and b.results() == [1]
    b.level = 5000
    world.result(2)
    world.policy.discard("b")
    assert world.policy.lagging == 0 and world.policy.clients() == 1 and world.policy.held_bytes("b") == 0


def test_big_audiences_go_in_slices_in_order_and_leavers_are_skipped() -> None:
    world = World(chunk=2)
    sinks = [world.client(f"c{i}") for i in range(6)]
    for seq in range(1, 4):
        world.result(seq)
    assert [s.results() for s in sinks[:2]] == [[1], [1]], "the first slice of the first message only"
    assert sinks[2].results() == [] and world.driver.steps == [S]
    world.policy.remove(S, "c5")
    world.driver.run_steps()
    for sink in sinks[:5]:
        assert sink.results() == [1, 2, 3]
    assert sinks[5].results() == []
    assert world.policy.in_flight() == 0
    assert world.counts.deliveries == 15


def test_a_slice_ends_when_its_time_budget_is_spent() -> None:
    now = [0.0]

    def slow_timer() -> float:
        now[0] += 0.01  # every look at the clock finds the budget spent
        return now[0]

    world = World(chunk=0, slice_time=0.001, timer=slow_timer)
    sinks = [world.client(f"c{i}") for i in range(40)]
    world.result(1)
    assert sum(1 for s in sinks if s.results() == [1]) == 16, "one group of 16, then yield"
    world.driver.run_steps()
    assert all(s.results() == [1] for s in sinks)


def test_a_result_that_went_stale_while_waiting_is_not_sent() -> None:
    world = World(chunk=2, max_age=2.0)
    sinks = [world.client(f"c{i}") for i in range(4)]
    world.result(1)  # in flight
    world.result(2, age=1.5)  # waits, goes stale
    world.result(3, age=0.5)  # waits, stays fresh
    world.wall.now += 1.0
    world.driver.run_steps()
    assert all(s.results() == [1, 3] for s in sinks)
    assert world.counts.drops["stale"] == 4


def test_an_overloaded_stream_sheds_its_oldest_waiting_results_not_status() -> None:
    world = World(chunk=2, max_waiting=3)
    sinks = [world.client(f"c{i}") for i in range(4)]
    world.result(1)
    world.policy.deliver(S, status(S, 1, sent_at=world.wall.now))
    for seq in range(2, 8):
        world.result(seq)
    world.driver.run_steps()
    for sink in sinks:
        assert sink.kinds().count("status") == 1
        assert sink.results() == [1, 6, 7], "in flight, then the newest that fit behind the status"
    assert world.counts.drops["overload"] == 4 * 4


def test_write_time_ages_are_reported_once_per_slice_and_per_flushed_message() -> None:
    world = World(chunk=2, client_buffer=1000)
    writes, entries = world.counts.writes, world.counts.fanouts
    sinks = [world.client(f"c{i}") for i in range(3)]
    world.result(1, age=0.25)
    assert writes == [("result", 0.25, 2)], "first slice: two clients, one call"
    world.wall.now += 0.5
    world.driver.run_steps()
    assert writes[1:] == [("result", 0.75, 1)], "the age grew while the message waited for its slice"
    assert entries == [("result", 0.25, 3)], "entry-time report: once per message, with the entry age"
    sinks[0].level = 5000
    world.result(2)
    world.driver.run_steps()
    writes.clear()
    sinks[0].level = 0
    world.wall.now += 1.0
    world.policy.tick()
    assert writes == [("result", 1.0, 1)], "the flushed message, at its flush time"


def test_status_and_notices_carry_no_capture_age() -> None:
    world = World()
    world.client("a")
    world.policy.deliver(S, status(S, 1, sent_at=world.wall.now))
    world.policy.announce(S, wire.encode(wire.Gap(stream=S)))
    assert world.counts.writes == [("status", None, 1), ("notice", None, 1)]
    assert world.counts.deliveries == 2


def test_steps_for_a_stream_that_emptied_are_harmless() -> None:
    world = World(chunk=1)
    world.client("a")
    world.client("b")
    world.result(1)
    actions = world.policy.actions()
    assert world.driver.steps == [S] or Step(stream=S) in actions
    world.policy.discard("a")
    world.policy.discard("b")
    world.driver.steps = [S]
    world.driver.run_steps()
    world.policy.step(S)
    assert world.policy.in_flight() == 0


def test_actions_are_values() -> None:
    assert Wait(key="a") == Wait(key="a") and Close(key="a") != Wait(key="a")


def test_a_message_whose_fan_out_started_reaches_its_whole_audience_all_or_none() -> None:
    """Freshness is judged when a message's fan-out starts; its later slices follow within ms."""
    world = World(chunk=1, max_age=2.0)
    first, second = world.client("a"), world.client("b")
    world.result(1, age=1.0)
    assert first.results() == [1] and second.results() == []
    world.wall.now += 1.5
    world.driver.run_steps()
    assert second.results() == [1]
    assert world.counts.drops["stale"] == 0 and world.counts.deliveries == 2


def test_a_client_that_rejoins_while_a_message_is_sliced_never_gets_it_after_a_newer_one() -> None:
    world = World(chunk=1)
    world.client("a")
    rejoiner = world.client("b")
    world.policy.add(T, "b", rejoiner)  # on another stream too: the same client all along
    world.result(1)  # slice 1 reaches a; b waits for slice 2
    world.policy.remove(S, "b")
    world.policy.add(S, "b", rejoiner, joining=True)
    world.result(2)  # buffered for b, and queued behind 1 for a
    world.policy.go_live(S, "b")
    world.driver.run_steps()
    assert rejoiner.results() == [2]
