"""The README's configuration tables are generated from the settings classes and kept in step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_configuration_matches_the_settings_classes() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "readme_config.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_readme_names_the_two_setup_commands_and_they_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    for script in ("scripts/up.sh", "scripts/test.sh"):
        assert script in readme
        assert (ROOT / script).stat().st_mode & 0o111, f"{script} is not executable"
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
