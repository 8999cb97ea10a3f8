"""The shared worker's batching rule (pure logic, times passed in)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from producer.inference.batcher import Batcher


def test_a_full_batch_goes_at_once() -> None:
    batcher: Batcher[str] = Batcher(max_batch=2, wait=0.010)
    for client in "abc":
        batcher.connect(client)
    batcher.add("a", "a1", 0.0)
    assert not batcher.ready(0.0)
    batcher.add("b", "b1", 0.001)
    assert batcher.ready(0.001)  # c is connected and silent, but the batch is full
    assert [w.item for w in batcher.take()] == ["a1", "b1"]


def test_a_batch_goes_as_soon_as_every_connected_camera_has_a_frame_waiting() -> None:
    batcher: Batcher[str] = Batcher(max_batch=8, wait=10.0)
    batcher.connect("a")
    batcher.connect("b")
    batcher.add("a", "a1", 0.0)
    assert not batcher.ready(0.005)
    batcher.add("b", "b1", 0.006)
    assert batcher.ready(0.006)  # nobody else can come: no reason to wait the budget out
    assert [w.item for w in batcher.take()] == ["a1", "b1"]


def test_cameras_whose_frame_is_being_inferred_are_not_waited_for() -> None:
    """With two inferences at once: while a's frame runs, b's frame need not wait for a."""
    batcher: Batcher[str] = Batcher(max_batch=8, wait=10.0)
    batcher.connect("a")
    batcher.connect("b")
    batcher.add("a", "a1", 0.0)
    assert not batcher.ready(0.0) and batcher.ready(10.0)  # b never came: the budget
    assert [w.item for w in batcher.take()] == ["a1"]
    batcher.add("b", "b1", 10.1)
    assert batcher.ready(10.1)  # a's frame is in the running inference: nobody else can come
    assert [w.item for w in batcher.take()] == ["b1"]
    batcher.finished("a")
    batcher.finished("b")
    batcher.add("a", "a2", 10.2)
    assert not batcher.ready(10.2)  # both idle again: a2 waits for b (or the budget)


def test_a_silent_camera_costs_the_others_at_most_the_budget() -> None:
    batcher: Batcher[str] = Batcher(max_batch=8, wait=0.010)
    batcher.connect("stalled")
    batcher.connect("live")
    batcher.add("live", "l1", 1.0)
    assert batcher.due() == 1.010
    assert not batcher.ready(1.0099)
    assert batcher.ready(1.010)
    assert [w.item for w in batcher.take()] == ["l1"]
    assert batcher.due() is None and not batcher.ready(5.0)


def test_a_camera_that_disconnects_is_no_longer_waited_for_and_its_frames_are_dropped() -> None:
    batcher: Batcher[str] = Batcher(max_batch=8, wait=10.0)
    for client in ("a", "b", "c"):
        batcher.connect(client)
    batcher.add("a", "a1", 0.0)
    batcher.add("c", "c1", 0.0)
    assert not batcher.ready(0.0)
    assert batcher.disconnect("c") == ["c1"]
    assert not batcher.ready(0.0)  # b is still expected
    assert batcher.disconnect("b") == []
    assert batcher.ready(0.0)
    assert [w.item for w in batcher.take()] == ["a1"]


def test_frames_go_oldest_first_so_no_camera_is_starved() -> None:
    batcher: Batcher[str] = Batcher(max_batch=2, wait=0.0)
    batcher.connect("busy")
    batcher.connect("quiet")
    for index in range(3):
        batcher.add("busy", f"busy{index}", float(index))
    batcher.add("quiet", "quiet0", 3.0)
    assert [w.item for w in batcher.take()] == ["busy0", "busy1"]
    assert [w.item for w in batcher.take()] == ["busy2", "quiet0"]


@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.floats(min_value=0, max_value=1, allow_nan=False)),
        max_size=40,
    ),
    st.integers(min_value=1, max_value=5),
    st.floats(min_value=0, max_value=0.05, allow_nan=False),
)
def test_every_frame_goes_once_in_order_within_its_budget(
    arrivals: list[tuple[str, float]], max_batch: int, wait: float
) -> None:
    """Drive the batcher like the worker does: whatever arrives, each frame goes exactly once,
    in arrival order, in batches of at most max_batch, no later than ``wait`` after it arrived
    when the model is free."""
    batcher: Batcher[int] = Batcher(max_batch=max_batch, wait=wait)
    for client in "abcd":
        batcher.connect(client)
    events = sorted(((at, client, index) for index, (client, at) in enumerate(arrivals)), key=lambda e: e[0])
    sent: list[int] = []
    now = 0.0
    for at, client, index in events:
        # The model is free: batches go whenever ready, before each arrival is added.
        while (due := batcher.due()) is not None and due <= at:
            now = max(now, due)
            assert batcher.ready(now)
            batch = batcher.take()
            assert 1 <= len(batch) <= max_batch
            assert all(now - w.arrived <= wait + 1e-9 for w in batch)
            sent += [w.item for w in batch]
            for w in batch:  # one inference at a time: it ends before the next arrival
                batcher.finished(w.client)
        now = max(now, at)
        batcher.add(client, index, at)
        while batcher.ready(now):
            batch = batcher.take()
            sent += [w.item for w in batch]
            for w in batch:
                batcher.finished(w.client)
    while batcher.due() is not None:
        now = max(now, batcher.due() or now)
        sent += [w.item for w in batcher.take()]
    assert sent == [index for _, _, index in events]
