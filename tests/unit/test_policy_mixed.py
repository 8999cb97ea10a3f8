"""Events and filters (issue 22) beside video (issue 19) in one policy: each keeps its own rules.

A subscription may ask for video and choose ``kinds`` and ``max_rate`` at once: video follows the
group-of-pictures rules whatever the choices, and the choices apply to the text kinds only.
"""

from __future__ import annotations

from typing import Any

from framecast import wire
from gateway.policy import Limits, Policy
from tests.unit.policy_fakes import Clock, Driver, FakeSink, Recorder, event, framer, result

S = "door"


class World:
    """A policy with fake clocks, and a producer of results, events and video on one stream."""

    def __init__(self, **limits: Any) -> None:
        self.wall = Clock(1000.0)
        self.mono = Clock(0.0)
        self.policy = Policy(
            Limits(**{"max_age": 2.0, "client_buffer": 100_000, "lag_threshold": 0.0, **limits}),
            framer=framer,
            observer=Recorder(),
            clock=self.wall,
            monotonic=self.mono,
            timer=lambda: 0.0,
        )
        self.driver = Driver(self.policy)

    def result(self, seq: int) -> None:
        self.policy.deliver(S, result(S, seq, captured_at=self.wall.now))
        self.driver.collect()

    def event(self, seq: int) -> None:
        self.policy.deliver(S, event(S, seq, captured_at=self.wall.now))
        self.driver.collect()

    def video(self, seq: int, *, key: bool = False, group: int = 1) -> None:
        frame = wire.VideoFrame(
            stream=S,
            epoch="e1",
            seq=seq,
            group=seq if key else group,
            frame=seq,
            captured_at=self.wall.now,
            width=64,
            height=48,
            key=key,
            codec="vp8" if key else "",
            data=b"v" * 50,
        )
        self.policy.deliver_video(S, wire.encode_video(frame))
        self.driver.collect()

    def advance(self, seconds: float) -> None:
        self.wall.now += seconds
        self.mono.now += seconds
        self.driver.fire_timers(self.mono.now)


def video_seqs(sink: FakeSink) -> list[int]:
    return [wire.decode_video(w.data).seq for w in sink.written if w.binary]


def test_an_events_only_client_with_video_gets_every_frame_and_event_and_no_result() -> None:
    world = World()
    counter = FakeSink(world.wall)
    world.policy.add(S, "counter", counter, video=True, kinds=("event",))
    world.video(1, key=True)
    world.result(1)
    world.event(1)
    world.video(2, group=1)
    world.result(2)
    world.event(2)
    assert video_seqs(counter) == [1, 2]
    assert counter.events() == [1, 2]
    assert counter.results() == []


def test_a_capped_client_gets_every_video_frame_while_its_results_are_capped() -> None:
    world = World()
    capped = FakeSink(world.wall)
    world.policy.add(S, "capped", capped, video=True, max_rate=1.0)
    world.video(1, key=True)
    for seq in range(1, 6):
        world.result(seq)
        world.video(seq + 1, group=1)
        world.advance(0.1)
    assert video_seqs(capped) == [1, 2, 3, 4, 5, 6], "video is never capped"
    assert capped.results() == [1], "one result in its first second"
    world.advance(1.0)
    assert capped.results() == [1, 5], "then the newest, when due"


def test_a_joining_client_with_kinds_and_video_starts_at_the_gop_and_gets_its_events() -> None:
    world = World()
    world.policy.add(S, "early", FakeSink(world.wall), video=True)  # the stream's video flows
    world.video(1, key=True)
    world.video(2, group=1)
    joiner = FakeSink(world.wall)
    world.policy.add(S, "j", joiner, video=True, kinds=("event",), joining=True)
    world.result(1)
    world.event(1)
    world.video(3, group=1)
    assert joiner.written == [], "nothing before its replay is done"
    world.policy.go_live(S, "j")
    world.video(4, group=1)
    world.event(2)
    assert video_seqs(joiner) == [1, 2, 3, 4], "from the current group's keyframe, unbroken"
    assert joiner.events() == [1, 2]
    assert joiner.results() == []
