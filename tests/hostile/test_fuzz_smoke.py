"""CI's bounded run of the atheris fuzz target (fuzz/fuzz_wire.py) over the committed corpus."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_fuzz_target_finds_no_crash_in_a_bounded_run() -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        [str(ROOT / "fuzz" / "run.sh"), "15"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    # The committed corpus is replayed first: its regression seeds (deep nesting...) run every time.
    assert done.returncode == 0, f"fuzz run failed ({done.returncode}):\n{output[-4000:]}"
    assert "Done " in output and "stat::number_of_executed_units" in output, output[-2000:]
