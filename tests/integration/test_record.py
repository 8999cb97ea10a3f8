"""``framecast record``'s muxing, fed with frames from the producer's real encoder, read back by FFmpeg.

The end-to-end recording through a real gateway comes with the gateway's video fan-out; here
the Recorder gets the exact wire frames a producer publishes, joined mid-group and with a lost
frame, and the files are decoded with PyAV from their first frame.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import pytest

from framecast import wire
from framecast.client.record import Recorder, RecordError
from producer.encoder import Encoder, check_codec
from producer.synthetic import Scene
from tests.support.video import psnr

ROOT = Path(__file__).resolve().parents[2]
FPS = 15


def _frames(codec: str, count: int, *, interval: float = 1.0) -> list[wire.VideoFrame]:
    """``count`` frames of the synthetic scene as the producer publishes them (every other frame
    of a 30 fps camera at 15 fps), keyframes every ``interval`` seconds of capture time."""
    encoder = Encoder(
        check_codec(codec), width=640, height=480, fps=FPS, bitrate=500_000, keyframe_interval=interval
    )
    scene, out, group, t0 = Scene(), [], 0, 1_764_000_000.0
    try:
        for i in range(count):
            captured_at = t0 + i / FPS
            for packet in encoder.encode(scene.render(2 * i), captured_at):
                seq = len(out) + 1
                group = seq if packet.key else group
                out.append(
                    wire.VideoFrame(
                        stream="cam", epoch="e1", seq=seq, group=group, frame=2 * i, captured_at=captured_at,
                        width=packet.width, height=packet.height, key=packet.key,
                        codec=packet.codec if packet.key else "", data=packet.data,
                    )
                )  # fmt: skip
    finally:
        encoder.close()
    return out


def _read(path: Path) -> list[tuple[bool, float, object]]:
    """Every picture of the file: (keyframe, seconds, BGR array); any decoding error fails."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [
            (bool(f.key_frame), float(f.pts * f.time_base), f.to_ndarray(format="bgr24"))
            for f in container.decode(stream)
        ]


@pytest.mark.parametrize(
    ("codec", "ext"), [("vp8", "webm"), ("h264", "mp4"), ("vp9", "mp4"), ("av1", "webm")]
)
def test_a_recording_joined_mid_group_starts_at_a_keyframe_and_skips_a_broken_chain(
    tmp_path: Path, codec: str, ext: str
) -> None:
    frames = _frames(codec, 4 * FPS)  # keyframes at 0, 1, 2 and 3 s
    keys = [i for i, f in enumerate(frames) if f.key]
    assert keys == [0, FPS, 2 * FPS, 3 * FPS]
    # Joined in the middle of the first group; frame 20 (in the second group) is lost.
    received = [f for i, f in enumerate(frames[5:], start=5) if i != 20]
    recorder = Recorder(tmp_path / f"clip.{ext}")
    written = [recorder.add(f) for f in received]
    recorder.close()

    expected = [f for i, f in enumerate(frames) if FPS <= i < 20 or i >= 2 * FPS]
    assert recorder.frames == len(expected) and recorder.skipped == len(received) - len(expected)
    assert written == [FPS <= i < 20 or i >= 2 * FPS for i in range(5, len(frames)) if i != 20]
    pictures = _read(tmp_path / f"clip.{ext}")
    assert len(pictures) == len(expected)
    assert pictures[0][0], "the clip does not start at a keyframe"
    # Timestamps are the capture times (from the first keyframe), so the clip plays at real speed.
    for (_, seconds, _), frame in zip(pictures, expected, strict=True):
        assert seconds == pytest.approx(frame.captured_at - expected[0].captured_at, abs=0.002)
    # And each picture is the scene's frame it says it is.
    scene = Scene()
    for (_, _, picture), frame in list(zip(pictures, expected, strict=True))[::7]:
        assert psnr(picture, scene.render(frame.frame)) > psnr(picture, scene.render(frame.frame + 2))


def test_a_codec_the_container_cannot_hold_is_refused_before_writing(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "clip.mp4")
    with pytest.raises(RecordError, match=r"\.mp4 cannot hold vp8 video \(record to \.webm\)") as caught:
        recorder.add(_frames("vp8", 1)[0])
    assert caught.value.status == 2
    assert not (tmp_path / "clip.mp4").exists()


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (
            ["--out", "clip.avi", "--stream", "cam"],
            "--out=clip.avi: unsupported extension '.avi' (use .mp4 or .webm)",
        ),
        (["--out", "clip", "--stream", "cam"], "--out=clip: unsupported extension '(none)'"),
        (["--stream", "cam"], "--out FILE is required"),
        (["--out", "clip.mp4", "--seconds", "0", "--stream", "cam"], "--seconds=0: must be greater than 0"),
        (["--out", "clip.mp4"], "name the stream"),
        (["--out", "clip.mp4", "--stream", "bad name"], "not a valid stream name"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2_before_connecting(
    tmp_path: Path, args: list[str], complaint: str, child_env: dict[str, str]
) -> None:
    # Port 9 (discard) on loopback: nothing listens, and nothing is tried before the check.
    done = subprocess.run(
        [sys.executable, "-m", "framecast.cli", "record", "http://127.0.0.1:9", *args],
        capture_output=True, text=True, cwd=tmp_path, env={**child_env, "PYTHONPATH": str(ROOT)}, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and complaint in lines[0], done.stderr
    assert list(tmp_path.iterdir()) == []
