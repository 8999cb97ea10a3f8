"""Camera definitions for ``framecast up``: the TOML file, ``--camera`` specs and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from framecast import settings
from framecast.local import cameras
from framecast.local.cameras import Camera, CameraError
from producer.config import Config as ProducerConfig


def _check(key: str, value: str) -> None:
    settings.check_value(ProducerConfig, key, value)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "framecast.toml"
    path.write_text(text)
    return path


def test_file_with_three_cameras(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[cameras.door]
source = "rtsp://10.0.0.7/stream1"
detector = "faces"
max-fps = 5

[cameras.yard]
source = "synthetic"
demand = false

[cameras.lobby]
source = 0
""",
    )
    found = cameras.load(path)
    assert [c.name for c in found] == ["door", "yard", "lobby"]
    assert found[0].options == (("detector", "faces"), ("max_fps", "5"))
    assert found[0].argv() == ["--stream", "door", "--detector", "faces", "--max-fps", "5"]
    assert found[0].env() == {"FRAMECAST_SOURCE": "rtsp://10.0.0.7/stream1"}  # not argv: `ps` shows argv
    assert found[1].argv() == ["--stream", "yard", "--no-demand"]
    assert found[2].source == "0"
    cameras.check_options(found, _check)


def test_spec_parses_like_the_file() -> None:
    camera = cameras.parse_spec("door=rtsp://10.0.0.7/s1,detector=faces,max_fps=5")
    assert camera == Camera(
        name="door", source="rtsp://10.0.0.7/s1", options=(("detector", "faces"), ("max_fps", "5"))
    )
    cameras.check_options([camera], _check)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[cameras.a]\nsource='synthetic'\nmax_fsp=5\n", "camera 'a': max_fsp='5': unknown setting"),
        (
            "[cameras.a]\nsource='synthetic'\nmax_fps='fast'\n",
            "camera 'a': max_fps='fast': expected a number",
        ),
        ("[cameras.a]\nsource='synthetic'\ndetector='motion'\nmin_area=-1\n", "min_area='-1': must be"),
        ("[cameras.a]\ndetector='qr'\n", "camera 'a': 'source' is missing"),
        ("[cameras.'bad name']\nsource='synthetic'\n", "camera 'bad name': invalid name"),
        ("[cameras.a]\nsource='synthetic'\nstream='b'\n", "'stream' cannot be set per camera"),
        ("[cameras.a]\nsource='synthetic'\nmax_fps=1\nmax-fps=2\n", "'max-fps' is given twice"),
        ("[camera.a]\nsource='synthetic'\n", "unknown top-level key 'camera'"),
        ("[cameras]\n", "no cameras"),
        ("[cameras.a]\nsource='synthetic'\n[cameras.a]\nsource='x'\n", "not valid TOML"),
        ("[cameras.a]\nsource=['x']\n", "'source' must be a string, number or boolean"),
    ],
)
def test_bad_file_names_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(CameraError) as caught:
        cameras.check_options(cameras.load(path), _check)
    message = str(caught.value)
    assert needle in message
    assert "\n" not in message
    assert str(path) in message or "camera" in message


def test_unreadable_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(CameraError, match=r"nope\.toml: cannot read the camera file"):
        cameras.load(missing)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("door", "expected NAME=SOURCE"),
        ("=synthetic", "expected NAME=SOURCE"),
        ("door=synthetic,detector", "expected key=value after the source"),
        ("door=synthetic,detector=qr,detector=faces", "'detector' is given twice"),
        ("döor=synthetic", "invalid name"),
    ],
)
def test_bad_spec(spec: str, needle: str) -> None:
    with pytest.raises(CameraError, match=needle):
        cameras.parse_spec(spec)


def test_duplicate_name_across_file_and_flag(tmp_path: Path) -> None:
    path = _write(tmp_path, "[cameras.door]\nsource='synthetic'\n")
    with pytest.raises(CameraError, match="camera 'door' is defined twice"):
        cameras.merge(cameras.load(path), [cameras.parse_spec("door=0")])
    assert [c.name for c in cameras.merge(cameras.load(path), [cameras.parse_spec("yard=0")])] == [
        "door",
        "yard",
    ]


def test_env_specs_are_split_on_semicolons() -> None:
    assert cameras.split_specs(" door=0,detector=faces ;; yard=synthetic; ") == [
        "door=0,detector=faces",
        "yard=synthetic",
    ]
    assert cameras.split_specs("") == []


def test_resolve_reads_the_file_then_the_specs_and_checks_every_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "[cameras.door]\nsource='synthetic'\nmax_fps=5\n")
    found = cameras.resolve(path, ["yard=synthetic,detector=qr"], check=_check)
    assert [(c.name, c.origin) for c in found] == [("door", str(path)), ("yard", "--camera")]
    assert cameras.resolve(None, [], check=_check) == ()
    with pytest.raises(CameraError, match=r"camera 'yard': max_fps='-1': must be"):
        cameras.resolve(None, ["yard=synthetic,max_fps=-1"], check=_check)


def test_booleans_in_any_accepted_spelling_reach_the_producer_as_flags() -> None:
    # `demand=yes` passed the check but reached the producer as `--demand yes`, which it refuses.
    def check(key: str, value: str) -> object:
        return settings.check_value(ProducerConfig, key, value)

    (camera,) = cameras.check_options([cameras.parse_spec("door=synthetic,demand=yes,max_fps=5")], check)
    assert camera.argv() == ["--stream", "door", "--demand", "--max-fps", "5"]
    (camera,) = cameras.check_options([cameras.parse_spec("door=synthetic,demand=off")], check)
    assert camera.argv() == ["--stream", "door", "--no-demand"]


def test_video_settings_per_camera_are_checked_like_the_producers_flags(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "[cameras.door]\nsource='synthetic'\nvideo_codec='h264'\nvideo_bitrate=800\nvideo_keyframe_interval=1\n"
        "[cameras.yard]\nsource='synthetic'\nvideo=false\n",
    )
    door, yard = cameras.check_options(
        cameras.load(path), lambda k, v: settings.check_value(ProducerConfig, k, v)
    )
    assert door.argv()[2:] == [
        "--video-codec",
        "h264",
        "--video-bitrate",
        "800",
        "--video-keyframe-interval",
        "1",
    ]
    assert yard.argv()[2:] == ["--no-video"]
    for spec, needle in [
        (
            "cam=synthetic,video_codec=h265",
            "video_codec='h265': unknown codec 'h265' (choose vp8, vp9, h264, av1)",
        ),
        ("cam=synthetic,video_bitrate=0", "video_bitrate='0': must be greater than 0"),
        ("cam=synthetic,video-keyframe-interval=-2", "video_keyframe_interval='-2': must be greater than 0"),
        ("cam=synthetic,video_width=0", "video_width='0': must be greater than 0"),
    ]:
        with pytest.raises(CameraError) as caught:
            cameras.check_options([cameras.parse_spec(spec)], _check)
        assert needle in str(caught.value) and "\n" not in str(caught.value)
