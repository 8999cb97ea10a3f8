"""Telling a quiet stream from a dead one (pure logic, fake clock)."""

from __future__ import annotations

from framecast import wire
from gateway.heartbeats import Heartbeats


def beat(epoch: str = "e1", seq: int = 7) -> wire.Peek:
    return wire.Peek(type="status", epoch=epoch, seq=seq, captured_at=0.0, state="online")


def test_silent_stream_is_announced_once_with_its_last_epoch_and_seq() -> None:
    now = [100.0]
    beats = Heartbeats(offline_after=3.0, clock=lambda: now[0])
    beats.watch("cam")
    beats.seen("cam", beat())
    now[0] = 102.0
    assert beats.due() == []
    now[0] = 103.5
    assert beats.due() == [("cam", "e1", 7)]
    assert beats.is_offline("cam")
    now[0] = 110.0
    assert beats.due() == [], "announced once"
    beats.seen("cam", beat(seq=8))
    assert not beats.is_offline("cam")
    now[0] = 114.0
    assert beats.due() == [("cam", "e1", 8)]


def test_never_heard_stream_counts_from_watch_and_unwatched_streams_are_ignored() -> None:
    now = [0.0]
    beats = Heartbeats(offline_after=1.0, clock=lambda: now[0])
    beats.seen("ghost", beat())  # not watched: ignored
    beats.watch("quiet")
    now[0] = 2.0
    assert beats.due() == [("quiet", "", 0)]
    beats.unwatch("quiet")
    assert beats.last("quiet") == ("", 0)


def test_mark_offline_prevents_a_duplicate_announcement() -> None:
    now = [0.0]
    beats = Heartbeats(offline_after=1.0, clock=lambda: now[0])
    beats.watch("cam")
    beats.mark_offline("cam")
    now[0] = 5.0
    assert beats.due() == []


def test_an_event_is_a_sign_of_life_but_not_the_results_position() -> None:
    now = [100.0]
    beats = Heartbeats(offline_after=3.0, clock=lambda: now[0])
    beats.watch("door")
    beats.seen("door", beat(seq=7))
    now[0] = 102.0
    beats.seen("door", wire.Peek(type="event", epoch="e1", seq=40, captured_at=0.0))
    now[0] = 104.0
    assert beats.due() == [], "the event kept it alive"
    now[0] = 105.5
    assert beats.due() == [("door", "e1", 7)], "the offline status carries the results' seq"
