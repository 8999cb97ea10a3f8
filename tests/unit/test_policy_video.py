"""The fan-out policy's video rules (gateway/policy/video.py): chains, GOPs, joins, lag, staleness.

Deterministic cases first, then properties over random interleavings (hypothesis): a client
never receives a delta frame without its chain from a keyframe, frames arrive in order, and its
buffer stays within ``client_buffer`` plus one frame while the policy holds no video for it.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framecast import wire
from gateway.policy import Limits, Policy
from tests.unit.policy_fakes import Clock, FakeSink, Recorder, framer, ping_framer, result

S = "cam"
NOW = 1000.0


def video(
    seq: int, *, group: int | None = None, key: bool = False, captured_at: float = NOW, size: int = 100,
    epoch: str = "e1", stream: str = S,
) -> bytes:  # fmt: skip
    """An encoded video frame; a keyframe starts its own group."""
    return wire.encode_video(
        wire.VideoFrame(
            stream=stream,
            epoch=epoch,
            seq=seq,
            group=seq if key else (group if group is not None else 1),
            frame=seq,
            captured_at=captured_at,
            width=64,
            height=48,
            key=key,
            codec="vp8" if key else "",
            data=b"v" * size,
        )
    )


def received(sink: FakeSink) -> list[wire.VideoFrame]:
    """The video frames a fake sink got, in order."""
    return [wire.decode_video(w.data) for w in sink.written if w.binary]


def seqs(sink: FakeSink) -> list[int]:
    return [frame.seq for frame in received(sink)]


def make(**limits: Any) -> tuple[Policy, Clock, Recorder]:
    clock = Clock(NOW)
    observer = Recorder()
    defaults: dict[str, Any] = {"max_age": 2.0, "client_buffer": 10_000, "lag_threshold": 0.0}
    policy = Policy(Limits(**{**defaults, **limits}), framer=framer, observer=observer, clock=clock)
    return policy, clock, observer


def gop(policy: Policy, first: int, count: int, **kw: Any) -> None:
    """A keyframe at ``first`` and ``count - 1`` deltas of its group."""
    policy.deliver_video(S, video(first, key=True, **kw))
    for seq in range(first + 1, first + count):
        policy.deliver_video(S, video(seq, group=first, **kw))


def test_a_live_client_gets_every_frame_of_an_unbroken_chain() -> None:
    policy, clock, observer = make()
    sink = FakeSink(clock)
    policy.add(S, "c", sink, video=True)
    gop(policy, 1, 4)
    gop(policy, 5, 3)
    assert seqs(sink) == [1, 2, 3, 4, 5, 6, 7]
    assert observer.messages["video"] == 7


def test_a_client_without_video_gets_none_and_results_still_flow() -> None:
    policy, clock, _ = make()
    plain, viewer = FakeSink(clock), FakeSink(clock)
    policy.add(S, "plain", plain)
    policy.add(S, "viewer", viewer, video=True)
    gop(policy, 1, 3)
    policy.deliver(S, result(S, 1, captured_at=NOW))
    assert seqs(plain) == [] and plain.results() == [1]
    assert seqs(viewer) == [1, 2, 3] and viewer.results() == [1]
    assert policy.video_viewers(S) == 1


def test_a_client_joining_mid_group_starts_with_the_current_gop() -> None:
    policy, clock, _ = make()
    early = FakeSink(clock)
    policy.add(S, "early", early, video=True)
    gop(policy, 1, 5)  # keyframe 1, deltas 2..5
    late = FakeSink(clock)
    policy.add(S, "late", late, video=True)
    assert seqs(late) == [1, 2, 3, 4, 5]
    assert received(late)[0].key
    policy.deliver_video(S, video(6, group=1))
    assert seqs(late) == [1, 2, 3, 4, 5, 6] and seqs(early) == [1, 2, 3, 4, 5, 6]


def test_a_joining_client_gets_the_gop_only_once_its_replay_is_done() -> None:
    policy, clock, _ = make()
    policy.add(S, "early", FakeSink(clock), video=True)
    gop(policy, 1, 3)
    late = FakeSink(clock)
    policy.add(S, "late", late, video=True, joining=True)
    policy.deliver_video(S, video(4, group=1))
    assert seqs(late) == []
    policy.go_live(S, "late")
    assert seqs(late) == [1, 2, 3, 4]


def test_a_client_joining_before_any_keyframe_waits_for_one() -> None:
    policy, clock, _ = make()
    sink = FakeSink(clock)
    policy.add(S, "c", sink, video=True)
    for seq in (7, 8, 9):  # the gateway subscribed in the middle of a group
        policy.deliver_video(S, video(seq, group=6))
    assert seqs(sink) == []
    gop(policy, 10, 2)
    assert seqs(sink) == [10, 11]


def test_a_gap_in_the_chain_holds_every_client_until_the_next_keyframe() -> None:
    policy, clock, observer = make()
    sink = FakeSink(clock)
    policy.add(S, "c", sink, video=True)
    gop(policy, 1, 3)
    policy.deliver_video(S, video(5, group=1))  # 4 was lost upstream
    policy.deliver_video(S, video(6, group=1))
    late = FakeSink(clock)
    policy.add(S, "late", late, video=True)  # no whole GOP to give it
    assert seqs(sink) == [1, 2, 3] and seqs(late) == []
    assert observer.drops["broken-chain"] == 2
    gop(policy, 7, 2)
    assert seqs(sink) == [1, 2, 3, 7, 8] and seqs(late) == [7, 8]


def test_a_new_epoch_without_its_keyframe_is_a_break() -> None:
    policy, clock, _ = make()
    sink = FakeSink(clock)
    policy.add(S, "c", sink, video=True)
    gop(policy, 1, 2)
    policy.deliver_video(S, video(3, group=1, epoch="e2"))  # the producer restarted
    gop(policy, 1, 2, epoch="e2")
    assert [(f.epoch, f.seq) for f in received(sink)] == [("e1", 1), ("e1", 2), ("e2", 1), ("e2", 2)]


def test_a_lagging_client_skips_to_the_next_keyframe_whole_groups_only() -> None:
    policy, clock, observer = make(client_buffer=1000)
    slow, fast = FakeSink(clock), FakeSink(clock)
    policy.add(S, "slow", slow, video=True)
    policy.add(S, "fast", fast, video=True)
    frame_size = len(framer(video(1, key=True, size=300), True))
    policy.deliver_video(S, video(1, key=True, size=300))
    for seq in range(2, 8):
        policy.deliver_video(S, video(seq, group=1, size=300))
        fast.level = 0  # the fast client reads everything at once
    # The slow one never read: it got frames until its buffer passed 1000 bytes, then nothing.
    got = seqs(slow)
    assert got == list(range(1, len(got) + 1)) and len(got) < 7
    assert slow.level <= 1000 + frame_size
    assert policy.held_bytes("slow") == 0  # nothing of the video is held for it
    # It reads everything: the rest of the group is still skipped, and it resumes at a keyframe.
    slow.level = 0
    policy.deliver_video(S, video(8, group=1, size=300))
    assert seqs(slow) == got
    gop(policy, 9, 2, size=300)
    assert seqs(slow) == [*got, 9, 10]
    assert seqs(fast) == list(range(1, 11))
    assert observer.drops["conflated"] >= 2


def test_a_lagging_client_resumes_only_below_low_water() -> None:
    policy, clock, _ = make(client_buffer=1000)
    slow = FakeSink(clock)
    policy.add(S, "slow", slow, video=True)
    gop(policy, 1, 5, size=300)
    got = seqs(slow)
    slow.level = 400  # read some, still above a quarter of client_buffer
    policy.deliver_video(S, video(6, key=True, size=300))
    assert seqs(slow) == got
    slow.level = 0
    policy.deliver_video(S, video(7, key=True, size=300))
    assert seqs(slow) == [*got, 7]


def test_stale_video_is_dropped_up_to_the_next_fresh_keyframe() -> None:
    policy, clock, observer = make(max_age=2.0)
    sink = FakeSink(clock)
    policy.add(S, "c", sink, video=True)
    gop(policy, 1, 2)
    policy.deliver_video(S, video(3, group=1, captured_at=NOW - 5))  # the gateway froze
    policy.deliver_video(S, video(4, group=1))  # fresh, but its chain lost frame 3
    assert seqs(sink) == [1, 2]
    assert observer.drops["stale"] == 1 and observer.drops["broken-chain"] == 1
    policy.deliver_video(S, video(5, key=True, captured_at=NOW - 3))  # a stale keyframe too
    policy.deliver_video(S, video(6, group=5))
    gop(policy, 7, 2)
    assert seqs(sink) == [1, 2, 7, 8]


def test_a_joiner_gets_a_live_gop_whose_keyframe_is_older_than_max_age() -> None:
    # A keyframe every 2 s and --max-age 2 s (the defaults): late in a group, the keyframe is
    # nearly 2 s old while the group is live; the joiner decodes it through to the fresh frame.
    policy, clock, _ = make(max_age=2.0)
    policy.add(S, "early", FakeSink(clock), video=True)
    gop(policy, 1, 3)
    clock.now += 1.5
    policy.deliver_video(S, video(4, group=1, captured_at=clock.now))
    clock.now += 1.0
    late = FakeSink(clock)
    policy.add(S, "late", late, video=True)
    assert seqs(late) == [1, 2, 3, 4]
    policy.deliver_video(S, video(5, group=1, captured_at=clock.now))
    assert seqs(late) == [1, 2, 3, 4, 5]


def test_a_joining_client_gets_no_gop_whose_newest_frame_is_stale() -> None:
    policy, clock, _ = make(max_age=2.0)
    policy.add(S, "early", FakeSink(clock), video=True)
    gop(policy, 1, 3)
    clock.now += 2.5
    late = FakeSink(clock)
    policy.add(S, "late", late, video=True)
    policy.deliver_video(S, video(4, group=1, captured_at=clock.now))
    assert seqs(late) == []
    policy.deliver_video(S, video(5, key=True, captured_at=clock.now))
    assert seqs(late) == [5]


def test_a_gop_bigger_than_its_bound_is_given_up_for_joiners_only() -> None:
    policy, clock, _ = make(video_gop_bytes=1000)
    early = FakeSink(clock)
    policy.add(S, "early", early, video=True)
    gop(policy, 1, 5, size=300)
    late = FakeSink(clock)
    policy.add(S, "late", late, video=True)
    policy.deliver_video(S, video(6, group=1, size=300))
    assert seqs(early) == [1, 2, 3, 4, 5, 6] and seqs(late) == []
    policy.deliver_video(S, video(7, key=True, size=300))
    assert seqs(late) == [7]


def test_a_joiner_with_little_room_gets_a_prefix_of_the_gop_then_the_next_keyframe() -> None:
    policy, clock, _ = make(client_buffer=500)
    policy.add(S, "early", FakeSink(clock), video=True)
    gop(policy, 1, 4, size=300)
    late = FakeSink(clock)
    policy.add(S, "late", late, video=True)
    assert seqs(late) == [1, 2]  # the second write took it past 500 bytes
    late.level = 0
    policy.deliver_video(S, video(5, group=1, size=300))
    assert seqs(late) == [1, 2]
    policy.deliver_video(S, video(6, key=True, size=300))
    assert seqs(late) == [1, 2, 6]


def test_leaving_and_resubscribing_without_video_stops_the_video() -> None:
    policy, clock, _ = make()
    sink = FakeSink(clock)
    policy.add(S, "c", sink, video=True)
    gop(policy, 1, 2)
    policy.add(S, "c", sink, video=False)  # a resubscription in place
    gop(policy, 3, 2)
    policy.deliver(S, result(S, 1, captured_at=NOW))
    assert seqs(sink) == [1, 2] and sink.results() == [1]
    policy.remove(S, "c")
    assert policy.video_viewers(S) == 0


def test_the_gop_outlives_its_last_viewer_until_the_video_ends() -> None:
    # The gateway's video channel lingers after the last viewer left: frames keep coming and the
    # group stays current, so a viewer back before the end starts from it at once.
    policy, clock, _ = make()
    policy.add(S, "lone", FakeSink(clock), video=True)
    gop(policy, 1, 3)
    policy.remove(S, "lone")
    policy.deliver_video(S, video(4, group=1))  # nobody watches: still kept
    back = FakeSink(clock)
    policy.add(S, "back", back, video=True)
    assert seqs(back) == [1, 2, 3, 4] and received(back)[0].key
    policy.remove(S, "back")
    policy.end_video(S)  # the channel was given up: frames 5.. were never seen
    again = FakeSink(clock)
    policy.add(S, "again", again, video=True)
    policy.deliver_video(S, video(9, group=1))
    assert seqs(again) == [], "no group from before the end, and no delta without its chain"
    gop(policy, 10, 2)
    assert seqs(again) == [10, 11]


def test_a_malformed_video_frame_is_dropped_for_everyone() -> None:
    policy, clock, observer = make()
    sink = FakeSink(clock)
    policy.add(S, "c", sink, video=True)
    assert policy.deliver_video(S, b"FCV1 torn") is None
    assert observer.drops["malformed"] == 1 and seqs(sink) == []


def test_a_permessage_deflate_client_gets_video_framed_by_its_connection() -> None:
    policy, clock, _ = make()
    sink = FakeSink(clock, shared=False)
    policy.add(S, "c", sink, video=True)
    gop(policy, 1, 3)
    assert seqs(sink) == [1, 2, 3]


# ---------------------------------------------------------------------------------------------
# Properties

KEYS = ("c0", "c1", "c2")
CLIENT_BUFFER = 1500
SIZES = (50, 400, 900, 900)

event = st.one_of(
    st.tuples(st.just("frame"), st.sampled_from(SIZES)),
    st.tuples(st.just("frame"), st.sampled_from(SIZES)),
    st.tuples(st.just("frame"), st.sampled_from(SIZES)),
    st.tuples(st.just("key"), st.sampled_from(SIZES)),
    st.tuples(st.just("lose")),  # a frame lost upstream: the next seq is skipped
    st.tuples(st.just("epoch")),  # the producer restarts
    st.tuples(st.just("late"), st.sampled_from((0.5, 3.0))),  # a frame captured that long ago
    st.tuples(st.just("add"), st.sampled_from(KEYS), st.booleans(), st.booleans()),
    st.tuples(st.just("drain"), st.sampled_from(KEYS), st.sampled_from((0.0, 0.5))),
    st.tuples(st.just("live"), st.sampled_from(KEYS)),
    st.tuples(st.just("remove"), st.sampled_from(KEYS)),
    st.tuples(st.just("drain"), st.sampled_from(KEYS), st.sampled_from((0.0, 0.5))),
    st.tuples(st.just("advance"), st.sampled_from((0.1, 1.0, 3.0))),
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, min_size=1, max_size=60))
def test_no_delta_without_its_chain_order_kept_bytes_bounded(events: list[tuple[Any, ...]]) -> None:
    policy, clock, _ = make(client_buffer=CLIENT_BUFFER, max_age=2.0, video_gop_bytes=3000)
    sinks: dict[str, FakeSink] = {}
    # Where each subscription of a client starts in what it received: a resubscription starts
    # over from the current GOP, which its decoder takes as a fresh start at a keyframe.
    starts: dict[str, list[int]] = {}
    epoch, seq, group = 1, 0, 0
    biggest = 0
    # Two video clients from the start (one still joining), so most examples exercise video.
    for key, joining in (("c0", False), ("c1", True)):
        sinks[key] = FakeSink(clock)
        starts[key] = [0]
        policy.add(S, key, sinks[key], video=True, joining=joining)

    def send(size: int, *, key: bool, captured_at: float) -> None:
        nonlocal seq, group, biggest
        seq += 1
        if key or not group:
            key, group = True, seq
        data = video(seq, group=group, key=key, size=size, epoch=f"e{epoch}", captured_at=captured_at)
        biggest = max(biggest, len(framer(data, True)))
        policy.deliver_video(S, data)

    for item in events:
        kind = item[0]
        if kind in ("frame", "key"):
            send(item[1], key=kind == "key", captured_at=clock.now)
        elif kind == "lose":
            seq += 1
        elif kind == "epoch":
            epoch, seq, group = epoch + 1, 0, 0
        elif kind == "late":
            send(50, key=False, captured_at=clock.now - item[1])
        elif kind == "add":
            _, key, video_on, joining = item
            sink = sinks.get(key) or sinks.setdefault(key, FakeSink(clock))
            starts.setdefault(key, []).append(len(received(sink)))
            policy.add(S, key, sink, video=video_on, joining=joining)
        elif kind == "live":
            policy.go_live(S, item[1])
        elif kind == "remove":
            policy.remove(S, item[1])
        elif kind == "drain" and item[1] in sinks:
            sinks[item[1]].level = int(sinks[item[1]].level * item[2])
        elif kind == "advance":
            clock.now += item[1]
        for key, sink in sinks.items():
            assert sink.level <= CLIENT_BUFFER + biggest, f"{key} holds {sink.level} bytes"
            assert policy.held_bytes(key) == 0

    for key, sink in sinks.items():
        frames = received(sink)
        for begin, end in zip(starts[key], [*starts[key][1:], len(frames)], strict=True):
            check_chain(key, frames[begin:end])


def check_chain(key: str, frames: list[wire.VideoFrame]) -> None:
    """Every delta follows its predecessor; keyframes of an epoch come in order."""
    previous: wire.VideoFrame | None = None
    for frame in frames:
        if not frame.key:
            # Its chain: the frame before it, to this client, is its predecessor.
            assert previous is not None, f"{key} got delta {frame.seq} first"
            assert (previous.epoch, previous.seq + 1, frame.group) == (
                frame.epoch,
                frame.seq,
                previous.group if not previous.key else previous.seq,
            ), f"{key}: delta {frame.epoch}/{frame.seq} after {previous.epoch}/{previous.seq}"
        elif previous is not None and previous.epoch == frame.epoch:
            assert frame.seq > previous.seq, f"{key}: keyframe {frame.seq} after {previous.seq}"
        previous = frame


def test_a_client_stalled_behind_a_proxy_is_found_by_probes_behind_video_and_resumes_at_a_keyframe() -> None:
    clock, ticks = Clock(NOW), Clock(0.0)
    limits = Limits(max_age=2.0, lag_threshold=1.0, probe_interval=0.5, probe_bytes=200)
    policy = Policy(limits, framer=framer, ping_framer=ping_framer, clock=clock, monotonic=ticks)
    sink = FakeSink(clock)
    policy.add(S, "c", sink, video=True)
    gop(policy, 1, 3)  # 300 bytes of video: the stream is due a wave of probes
    policy.probe()
    policy.deliver_video(S, video(4, group=1))
    assert sink.pings and sink.pings[-1][0] == len(sink.written)  # the ping right behind frame 4
    # The client (behind a proxy that reads everything) answers nothing for over lag_threshold.
    ticks.now += 1.5
    policy.probe()
    assert policy.is_lagging("c")
    policy.deliver_video(S, video(5, group=1))
    policy.deliver_video(S, video(6, key=True))
    assert seqs(sink) == [1, 2, 3, 4]
    # It read everything and answered: it is back, and video resumes at the next keyframe.
    sink.level = 0
    policy.pong("c")
    assert not policy.is_lagging("c")
    policy.deliver_video(S, video(7, group=6))
    gop(policy, 8, 2)
    assert seqs(sink) == [1, 2, 3, 4, 8, 9]
