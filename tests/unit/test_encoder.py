"""The producer's codec table and its checks (pure logic; the real encoders run in the
integration tests, test_producer_video.py and test_record.py)."""

from __future__ import annotations

from typing import Any

import av
import pytest

from framecast import settings
from producer.config import Config
from producer.encoder import CODECS, Codec, EncodeError, check_codec, codec_string, video_size


def test_every_codec_of_the_table_is_in_the_installed_wheel() -> None:
    # The PyPI wheel this project locks bundles all four; a PyAV built otherwise may not.
    assert [check_codec(name).name for name in CODECS] == ["vp8", "vp9", "h264", "av1"]


def test_a_codec_the_installed_av_cannot_encode_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Stands in for a PyAV built against an FFmpeg without libx264 (the locked wheel has it).
    real = av.codec.Codec

    def without_x264(name: str, mode: str = "r") -> Any:
        if name == "libx264":
            raise av.codec.codec.UnknownCodecError(name)
        return real(name, mode)

    monkeypatch.setattr(av.codec, "Codec", without_x264)
    with pytest.raises(EncodeError, match=r"has no libx264 encoder for h264 .*usable here: vp8, vp9, av1"):
        check_codec("h264")
    with pytest.raises(SystemExit) as exited:
        settings.parse(Config, ["--video-codec", "h264"], prog="framecast producer", description="")
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("framecast producer: error: --video-codec=h264: the installed")


@pytest.mark.parametrize(
    ("size", "max_width", "expected"),
    [((640, 480), 640, (640, 480)), ((1920, 1080), 640, (640, 360)), ((641, 481), 1280, (640, 480)),
     ((320, 240), 640, (320, 240)), ((3, 3), 640, (2, 2))],
)  # fmt: skip
def test_video_size_never_scales_up_keeps_the_aspect_and_is_even(
    size: tuple[int, int], max_width: int, expected: tuple[int, int]
) -> None:
    assert video_size(*size, max_width=max_width) == expected


def test_codec_strings_name_what_the_stream_is() -> None:
    sps = b"\x00\x00\x00\x01\x67\x42\xc0\x1e\xda\x02"  # NAL 7 (SPS): baseline, constraints, level 3.0
    assert (
        codec_string(CODECS["h264"], 640, 480, b"\x00\x00\x01\x09\xf0" + sps + b"\x00\x00\x01\x68")
        == "avc1.42C01E"
    )
    assert codec_string(CODECS["vp9"], 640, 480, b"") == "vp09.00.30.08"
    assert codec_string(CODECS["vp9"], 1920, 1080, b"") == "vp09.00.40.08"
    assert codec_string(CODECS["av1"], 640, 480, b"") == "av01.0.04M.08"
    assert codec_string(CODECS["av1"], 1920, 1080, b"") == "av01.0.08M.08"
    assert codec_string(CODECS["vp8"], 640, 480, b"") == "vp8"
    with pytest.raises(EncodeError, match="without a sequence parameter set"):
        codec_string(CODECS["h264"], 640, 480, b"\x00\x00\x01\x65rest")


def test_unknown_codecs_are_named_with_the_choices() -> None:
    with pytest.raises(EncodeError, match=r"unknown codec 'hevc' \(choose vp8, vp9, h264, av1\)"):
        check_codec("hevc")
    assert isinstance(check_codec("VP8"), Codec)
