"""Capture: the newest-frame slot, source parsing, real video files, and the grabber's reopen logic."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from producer.capture import Grabber
from producer.latest import LatestFrame
from producer.sources import SourceError, opener, parse_source
from producer.synthetic import Scene


def _image(value: int = 0) -> np.ndarray:
    return np.full((4, 4, 3), value, np.uint8)


def _wait_until(condition: Callable[[], object], *, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.01) + 1):
        if condition():
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


# --------------------------------------------------------------------------
# LatestFrame


def test_latest_frame_keeps_only_the_newest_and_counts_the_dropped() -> None:
    slot = LatestFrame()
    for value in range(5):
        slot.put(_image(value))
    frame = slot.take(timeout=0)
    assert frame is not None
    assert frame.index == 4
    assert int(frame.image[0, 0, 0]) == 4
    assert slot.captured == 5
    assert slot.skipped == 4
    # Taken frames are not handed out twice.
    assert slot.poll(after=frame.index) is None
    assert slot.take(after=frame.index, timeout=0.01) is None
    slot.put(_image(5))
    assert slot.skipped == 4  # frame 4 was taken, so replacing it drops nothing


def test_latest_frame_indices_and_capture_times_increase() -> None:
    slot = LatestFrame()
    frames = [slot.put(_image(i)) for i in range(3)]
    assert [f.index for f in frames] == [0, 1, 2]
    assert frames[0].captured_at <= frames[1].captured_at <= frames[2].captured_at


def test_a_played_recording_s_frames_show_their_time_on_its_own_clock(tmp_path: Path) -> None:
    slot = LatestFrame()
    live = slot.put(_image(0))
    assert live.shows is None, "a live source's frame shows its capture time"
    played = [slot.put(_image(i), pace=25.0) for i in range(1, 3)]
    assert [f.shows for f in played] == [1 / 25, 2 / 25], "the index on the recording's clock"
    # Which sources are played: files at their own rate, synthetic scenes at 30 fps; live
    # cameras and streams are not (they have no pace).
    path = tmp_path / "clip.avi"
    _write_video(path, 2, fps=25.0)
    for text, pace in [(str(path), 25.0), ("synthetic", 30.0), ("synthetic:line", 30.0)]:
        reader = opener(parse_source(text))()
        try:
            assert reader.pace == pytest.approx(pace), text  # type: ignore[attr-defined]
        finally:
            reader.close()


def test_poll_can_insist_on_a_frame_captured_since_a_moment() -> None:
    slot = LatestFrame()
    old = slot.put(_image(1))
    assert slot.poll(captured_since=old.captured_at + 1) is None  # aging frame left in place...
    fresh = slot.put(_image(2))
    assert slot.skipped == 1  # ...and replaced, so it counts as skipped
    assert slot.poll(captured_since=fresh.captured_at) is fresh


def test_discard_drops_a_frame_without_counting_it_as_skipped() -> None:
    slot = LatestFrame()
    slot.put(_image())
    slot.discard()
    slot.put(_image())
    assert slot.skipped == 0


def test_take_waits_for_a_frame_from_another_thread() -> None:
    slot = LatestFrame()
    seen: list[int] = []

    def put_later() -> None:
        time.sleep(0.05)  # let take() start waiting first (it works either way)
        slot.put(_image(7))

    putter = threading.Thread(target=put_later)
    putter.start()
    try:
        frame = slot.take(after=-1, timeout=10)
        assert frame is not None
        seen.append(int(frame.image[0, 0, 0]))
    finally:
        putter.join(5)
    assert seen == [7]


def test_close_wakes_takers_after_the_last_frame_is_taken() -> None:
    woken: list[object] = []
    slot = LatestFrame(on_put=woken.append)
    slot.put(_image(1))
    slot.close()
    assert slot.closed
    last = slot.take(timeout=10)
    assert last is not None and last.index == 0  # the last frame is still delivered
    assert slot.take(after=0, timeout=10) is None  # then: closed, nothing newer
    assert len(woken) == 2  # the put, and the close


# --------------------------------------------------------------------------
# Sources


@pytest.mark.parametrize(
    ("text", "kind", "description"),
    [
        ("synthetic", "synthetic", "synthetic"),
        ("0", "device", "device 0"),
        ("videos/door.mp4", "file", "door.mp4"),
        ("rtsp://admin:s3cret@10.0.0.5:554/live?token=abc", "network", "rtsp://10.0.0.5:554/live"),
        ("http://user:pw@127.0.0.1:8081/video.mjpg", "network", "http://127.0.0.1:8081/video.mjpg"),
        ("https://cam.example/stream", "network", "https://cam.example/stream"),
    ],
)
def test_sources_are_classified_and_described_without_credentials(
    text: str, kind: str, description: str
) -> None:
    source = parse_source(text)
    assert source.kind == kind
    assert source.description == description
    assert "s3cret" not in source.description and "token" not in source.description
    assert source.finite == (kind == "file")


def test_an_empty_source_is_refused() -> None:
    with pytest.raises(SourceError, match="empty"):
        parse_source("  ")


def test_files_that_cannot_be_played_fail_with_a_clear_reason(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        opener(parse_source(str(tmp_path / "missing.mp4")))()
    with pytest.raises(SourceError, match="directory"):
        opener(parse_source(str(tmp_path)))()
    junk = tmp_path / "notes.txt"
    junk.write_text("this is not a video\n")
    with pytest.raises(SourceError, match="cannot read"):
        opener(parse_source(str(junk)))()


class _FakeCamera:
    """Stands in for ``cv2.VideoCapture`` on a device index: no /dev/video* exists on CI machines.

    Only this unit test fakes it; every other source is opened for real (files, MJPEG, RTSP).
    """

    opened: list[object] = []

    def __init__(self, index: object, *args: object) -> None:
        self.opened.append(index)
        self._frames = [np.full((4, 4), 7, np.uint8), np.full((4, 4, 4), 9, np.uint8)]  # grey, BGRA
        self.released = False

    def isOpened(self) -> bool:
        return self.opened[-1] != 3

    def read(self) -> tuple[bool, np.ndarray | None]:
        return (True, self._frames.pop(0)) if self._frames else (False, None)

    def release(self) -> None:
        self.released = True


def test_a_device_index_opens_that_camera_and_converts_its_frames_to_bgr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _FakeCamera.opened = []
    monkeypatch.setattr(cv2, "VideoCapture", _FakeCamera)
    reader = opener(parse_source("2"))()
    assert _FakeCamera.opened == [2]  # the index as an int: a string would be taken as a file name
    assert reader.pace is None, "a live camera is not played: its clock is the capture time"  # type: ignore[attr-defined]
    grey, bgra = reader.read(), reader.read()
    assert grey is not None and grey.shape == (4, 4, 3) and (grey == 7).all()
    assert bgra is not None and bgra.shape == (4, 4, 3) and (bgra == 9).all()
    assert reader.read() is None  # unplugged
    reader.close()
    with pytest.raises(SourceError, match="cannot open camera device 3"):
        opener(parse_source("3"))()


def _write_video(path: Path, count: int, *, fps: float = 50.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened()
    try:
        for i in range(count):
            image = np.zeros((48, 64, 3), np.uint8)
            image[:, :] = (i * 20) % 256  # frame i is recognisable by its brightness
            writer.write(image)
    finally:
        writer.release()


def test_a_video_file_is_read_to_its_end_in_order(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    _write_video(path, 6)
    reader = opener(parse_source(str(path)))()
    try:
        levels = []
        for _ in range(20):
            image = reader.read()
            if image is None:
                break
            assert image.shape == (48, 64, 3)
            levels.append(round(float(image.mean())))
    finally:
        reader.close()
    assert len(levels) == 6
    assert all(abs(level - i * 20) <= 3 for i, level in enumerate(levels)), levels


def test_the_synthetic_scene_is_deterministic_and_moves() -> None:
    scene = Scene()
    assert np.array_equal(scene.render(10), Scene().render(10))
    assert not np.array_equal(scene.render(10), scene.render(11))
    still = Scene(still=True)
    assert np.array_equal(still.render(0), still.render(50))
    assert scene.render(0).shape == (480, 640, 3)


# --------------------------------------------------------------------------
# Grabber


class _Camera:
    """A source under the test's control: delivers ``per_session`` frames per open, then fails.

    ``hang`` makes reads block until released (a stalled network camera).
    """

    def __init__(self, per_session: int | None, *, hang_after: int | None = None) -> None:
        self.per_session = per_session
        self.hang_after = hang_after
        self.opens = 0
        self.closes = 0
        self.release = threading.Event()
        self.lock = threading.Lock()

    def open(self) -> _Camera._Reader:
        with self.lock:
            self.opens += 1
        return _Camera._Reader(self)

    class _Reader:
        def __init__(self, camera: _Camera) -> None:
            self.camera = camera
            self.count = 0

        def read(self) -> np.ndarray | None:
            camera = self.camera
            if camera.hang_after is not None and self.count >= camera.hang_after and camera.opens == 1:
                camera.release.wait(30)
                return None
            if camera.per_session is not None and self.count >= camera.per_session:
                return None
            self.count += 1
            time.sleep(0.002)
            return _image(self.count)

        def close(self) -> None:
            with self.camera.lock:
                self.camera.closes += 1


def test_a_failing_source_is_reopened_and_reconnects_are_counted() -> None:
    camera = _Camera(per_session=3)
    slot = LatestFrame()
    states: list[bool] = []
    grabber = Grabber(camera.open, slot, on_state=states.append, backoff_base=0.01, backoff_cap=0.05)
    grabber.start()
    try:
        _wait_until(lambda: grabber.reconnects >= 2 and slot.captured >= 9, what="two reconnects")
    finally:
        grabber.stop()
    assert camera.opens >= 3
    assert states[:4] == [True, False, True, False]  # online, lost, online again, lost...
    assert not grabber.online
    assert slot.closed
    # Indices keep increasing across reopens: results never go back in frame number.
    frame = slot.poll()
    assert frame is not None and frame.index == slot.captured - 1


def test_a_stalled_source_is_abandoned_and_reopened() -> None:
    camera = _Camera(per_session=None, hang_after=2)
    slot = LatestFrame()
    grabber = Grabber(camera.open, slot, stall_timeout=0.2, backoff_base=0.01, backoff_cap=0.05)
    grabber.start()
    try:
        # The first session hangs after 2 frames; only a reopen can bring more.
        _wait_until(lambda: slot.captured > 10, what="frames after the stall")
        assert grabber.reconnects == 1
        assert grabber.online
    finally:
        camera.release.set()
        grabber.stop()
    _wait_until(lambda: camera.closes == camera.opens, what="every opened reader closed")


def test_a_source_that_cannot_be_opened_is_retried() -> None:
    attempts: list[int] = []
    camera = _Camera(per_session=None)

    def flaky_open() -> _Camera._Reader:
        attempts.append(1)
        if len(attempts) < 4:
            raise OSError("connection refused")
        return camera.open()

    slot = LatestFrame()
    grabber = Grabber(flaky_open, slot, backoff_base=0.01, backoff_cap=0.05)
    grabber.start()
    try:
        _wait_until(lambda: slot.captured > 0, what="a frame after failed opens")
    finally:
        grabber.stop()
    assert len(attempts) == 4
    assert grabber.reconnects == 0  # never opened before: not a *re*connect


def test_a_file_ends_or_loops(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    _write_video(path, 4, fps=200)
    source = parse_source(str(path))

    slot = LatestFrame()
    grabber = Grabber(opener(source), slot, finite=True)
    grabber.start()
    try:
        _wait_until(lambda: grabber.ended, what="the end of the file")
    finally:
        grabber.stop()
    assert slot.captured == 4
    assert slot.closed

    looped = LatestFrame()
    grabber = Grabber(opener(source), looped, finite=True, repeat=True)
    grabber.start()
    try:
        _wait_until(lambda: looped.captured > 9, what="frames past the end")
    finally:
        grabber.stop()
    assert grabber.reconnects == 0  # looping is not reconnecting
    assert not grabber.ended
