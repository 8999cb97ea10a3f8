"""Zones and lines: every bad definition is one line naming the file, camera, zone or line and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from framecast import zones
from framecast.local import cameras
from framecast.local.cameras import CameraError
from framecast.local.up import _producer_specs
from framecast.zones import Layout, Line, Zone, ZoneError

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
[zones.hall]
polygon = [[100, 240], [540, 240], [540, 470], [100, 470]]
labels = ["person"]

[lines.door]
points = [[120, 230], [520, 230]]
anchor = "center"
"""


def _load(tmp_path: Path, text: str) -> Layout:
    path = tmp_path / "zones.toml"
    path.write_text(text)
    return zones.load(path)


def test_a_good_file_reads_into_zones_and_lines_and_back(tmp_path: Path) -> None:
    layout = _load(tmp_path, GOOD)
    assert layout.zones == (
        Zone(
            name="hall",
            polygon=((100.0, 240.0), (540.0, 240.0), (540.0, 470.0), (100.0, 470.0)),
            labels=("person",),
        ),
    )
    assert layout.lines == (Line(name="door", points=((120.0, 230.0), (520.0, 230.0)), anchor="center"),)
    assert _load(tmp_path, layout.to_toml()) == layout, "what up writes for a producer reads back the same"


def _many(kind: str, count: int) -> str:
    body = "polygon = [[0, 0], [10, 0], [10, 10]]" if kind == "zones" else "points = [[0, 0], [10, 0]]"
    return "\n".join(f"[{kind}.z{i}]\n{body}\n" for i in range(count))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        # degenerate and self-intersecting polygons
        ("[zones.a]\npolygon = [[0, 0], [10, 10], [20, 20]]", "zone 'a': polygon: degenerate"),
        ("[zones.a]\npolygon = [[0, 0], [10, 0]]", "zone 'a': polygon: 2 corners; a zone needs at least 3"),
        (
            "[zones.a]\npolygon = [[0, 0], [100, 100], [100, 0], [0, 100]]",
            "zone 'a': polygon: self-intersecting (edge 1 crosses edge 3)",
        ),
        (
            "[zones.a]\npolygon = [[0, 0], [100, 0], [50, 0], [50, 50]]",
            "zone 'a': polygon: self-intersecting",
        ),
        # a line of length 0, or not two points
        ("[lines.l]\npoints = [[5, 5], [5, 5]]", "line 'l': points: the line has length 0"),
        ("[lines.l]\npoints = [[5, 5], [6, 6], [7, 7]]", "line 'l': points: 3 points; a line has exactly 2"),
        # points far outside any frame, or not numbers
        ("[lines.l]\npoints = [[0, 0], [99999, 5]]", "line 'l': points[1]: [99999, 5] is outside any frame"),
        (
            "[zones.a]\npolygon = [[-5, 0], [10, 0], [10, 10]]",
            "zone 'a': polygon[0]: [-5, 0] is outside",
        ),
        (
            "[zones.a]\npolygon = [[0, 0], [10, 'x'], [10, 10]]",
            "polygon[1]: expected [x, y] numbers",
        ),
        ("[zones.a]\npolygon = [[0, 0], [10, inf], [10, 10]]", "zone 'a': polygon[1]: [10, inf] is outside"),
        # unknown anchor, labels of the wrong type
        ("[lines.l]\npoints = [[0, 0], [9, 9]]\nanchor = 'feet'", "line 'l': anchor: 'feet' is not one of"),
        (
            "[zones.a]\npolygon = [[0, 0], [9, 0], [9, 9]]\nlabels = 'person'",
            "zone 'a': labels: expected",
        ),
        (
            "[zones.a]\npolygon = [[0, 0], [9, 0], [9, 9]]\nlabels = [1, 2]",
            "zone 'a': labels: expected",
        ),
        # duplicate names: a zone and a line, or a table declared twice
        (
            "[zones.x]\npolygon = [[0, 0], [9, 0], [9, 9]]\n[lines.x]\npoints = [[0, 0], [9, 9]]",
            "'x' names both a zone and a line",
        ),
        (
            "[zones.x]\npolygon = [[0, 0], [9, 0], [9, 9]]\n[zones.x]\npolygon = [[0, 0], [9, 0], [9, 9]]",
            "not valid TOML: Cannot declare ('zones', 'x') twice",
        ),
        # more than the documented limits
        (_many("zones", zones.MAX_ZONES + 1), f"33 zones; at most {zones.MAX_ZONES} per camera"),
        (_many("lines", zones.MAX_LINES + 1), f"33 lines; at most {zones.MAX_LINES} per camera"),
        (
            "[zones.a]\npolygon = [" + ", ".join(f"[{i}, {i * i % 97}]" for i in range(65)) + "]",
            f"zone 'a': polygon: 65 corners; at most {zones.MAX_POINTS}",
        ),
        # everything else a file can get wrong
        ("[zones.a]\npolygon = [[0, 0], [9, 0], [9, 9]]\ncolour = 'red'", "zone 'a': unknown key 'colour'"),
        ("[zones.a]\nlabels = ['x']", "zone 'a': 'polygon' is missing"),
        ("[lines.l]\nanchor = 'center'", "line 'l': 'points' is missing"),
        ('[zones."a b"]\npolygon = [[0, 0], [9, 0], [9, 9]]', "zone 'a b': invalid name"),
        ("[cameras.x]\nsource = 'synthetic'", "unknown top-level key 'cameras'"),
        ("zones = 3", "'zones' must be tables"),
        ("", "no zones or lines"),
    ],
)
def test_a_bad_zones_file_names_the_file_zone_and_key(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ZoneError) as caught:
        _load(tmp_path, text)
    message = str(caught.value)
    assert needle in message
    assert message.startswith(str(tmp_path / "zones.toml")), message
    assert "\n" not in message


def test_a_camera_files_zones_are_checked_with_the_camera_named(tmp_path: Path) -> None:
    path = tmp_path / "framecast.toml"
    path.write_text(
        "[cameras.door]\nsource = 'synthetic'\ntrack = true\n"
        "[cameras.door.zones.hall]\npolygon = [[0, 0], [100, 100], [100, 0], [0, 100]]\n"
    )
    with pytest.raises(CameraError, match=r"framecast.toml: camera 'door': zone 'hall': polygon: self-inter"):
        cameras.load(path)
    path.write_text("[cameras.door]\nsource = 'synthetic'\nzones = 'zones.toml'\n")
    with pytest.raises(CameraError, match=r"camera 'door': 'zones' must be tables"):
        cameras.load(path)


def test_up_hands_each_camera_its_zones_as_a_file(tmp_path: Path) -> None:
    path = tmp_path / "framecast.toml"
    path.write_text(
        "[cameras.door]\nsource = 'synthetic:door'\n"
        + GOOD.replace("[zones.", "[cameras.door.zones.").replace("[lines.", "[cameras.door.lines.")
        + "[cameras.yard]\nsource = 'synthetic'\n"
    )
    found = cameras.load(path)
    config: Any = type("Config", (), {"cameras": found, "log_level": "INFO"})()
    commands = {name: spec.argv() for name, spec in _producer_specs(config, None, tmp_path)}
    door = commands["producer-door"]
    written = Path(door[door.index("--zones") + 1])
    assert zones.load(written) == _load(tmp_path, GOOD)
    assert "--zones" not in commands["producer-yard"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "[zones.a]\npolygon = [[0, 0], [100, 100], [100, 0], [0, 100]]",
            "zone 'a': polygon: self-intersecting",
        ),
        ("[lines.l]\npoints = [[5, 5], [5, 5]]", "line 'l': points: the line has length 0"),
    ],
)
def test_the_producer_refuses_a_bad_zones_file_before_it_starts(
    tmp_path: Path, child_env: dict[str, str], text: str, needle: str
) -> None:
    path = tmp_path / "zones.toml"
    path.write_text(text)
    done = subprocess.run(
        # An unreachable Redis: the producer must exit on the zones, never try to publish.
        [sys.executable, "-m", "producer", "--zones", str(path), "--redis-url", "redis://127.0.0.1:1/0"],
        capture_output=True,
        text=True,
        env=child_env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m producer: error: --zones: "), done.stderr
    assert str(path) in lines[0] and needle in lines[0]
