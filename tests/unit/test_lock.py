"""The locks hold what pyproject.toml says: up to date, and the lowest one at every floor."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _direct_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    texts = list(project["project"]["dependencies"])
    for extra in project["project"]["optional-dependencies"].values():
        texts += extra
    for group in project.get("dependency-groups", {}).values():
        texts += [item for item in group if isinstance(item, str)]
    return [r for r in map(Requirement, texts) if canonicalize_name(r.name) != "framecast"]


def test_the_locks_and_their_exports_are_up_to_date_with_pyproject() -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "lock.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "UV_OFFLINE": "1"},  # a check of what is committed needs no index
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_every_lower_bound_is_what_the_lowest_lock_installs() -> None:
    """A `>=` that cannot be installed at its floor (a dependency needs more) is not a claim."""
    lock = tomllib.loads((ROOT / "scripts" / "lowest" / "uv.lock").read_text())
    locked: dict[str, set[Version]] = {}
    for package in lock["package"]:
        locked.setdefault(canonicalize_name(package["name"]), set()).add(Version(package["version"]))
    requirements = _direct_requirements()
    assert requirements
    for requirement in requirements:
        floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        assert floors, f"{requirement}: no lower bound"
        versions = locked.get(canonicalize_name(requirement.name), set())
        # Same major.minor: a patch release of the floor counts (77.0.1 where 77.0.0 was yanked).
        floor = (*floors[0].release, 0, 0)[:2]
        assert any((*v.release, 0)[:2] == floor for v in versions), (
            f"{requirement}: the lowest resolution installs {sorted(map(str, versions))}, not {floors[0]}"
        )
