"""Installing framecast prints no warning walls: the build backend has nothing to complain about."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Recent pips show every warning the backend emits: a deprecation or an "Editable installation"
# notice becomes a wall of asterisks in `pip install` and in scripts/up.sh's first run.
_BUILD = """
import json, sys, warnings
from setuptools import build_meta
from setuptools.warnings import SetuptoolsWarning
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    build_meta.{hook}(sys.argv[1])
print(json.dumps([str(w.message).strip().splitlines()[0] for w in caught
                  if issubclass(w.category, SetuptoolsWarning)]))
"""


def _copy_project(target: Path) -> Path:
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, target / name)
    for package in ("framecast", "gateway", "producer", "bench", "tests"):
        shutil.copytree(ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _warnings_of(hook: str, project: Path, out: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _BUILD.format(hook=hook), str(out)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    walls: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return walls


def test_building_a_wheel_and_an_editable_install_emit_no_setuptools_warnings(tmp_path: Path) -> None:
    project = _copy_project(tmp_path / "src")
    for hook in ("build_wheel", "build_editable"):
        out = tmp_path / hook
        out.mkdir()
        assert _warnings_of(hook, project, out) == [], hook
        assert list(out.glob("framecast-*.whl")), f"{hook} built no wheel"


def test_the_wheel_ships_the_product_and_neither_the_benchmark_nor_the_tests(tmp_path: Path) -> None:
    """``pip install framecast`` then ``import bench`` fails: bench imports the tests' harnesses,
    which are not shipped, so it runs from a checkout only (python -m bench)."""
    project = _copy_project(tmp_path / "src")
    out = tmp_path / "wheel"
    out.mkdir()
    assert _warnings_of("build_wheel", project, out) == []
    (wheel,) = out.glob("framecast-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.startswith("framecast-0")}
    assert tops == {"framecast", "gateway", "producer"}, tops
    for shipped in (
        "framecast/wire/codec.py",
        "framecast/broker/standalone.py",
        "framecast/client/subscription.py",
        "framecast/local/launch.py",
        "framecast/local/nginx.conf.template",
        "gateway/static/index.html",
        "producer/service.py",
    ):
        assert shipped in names, shipped
