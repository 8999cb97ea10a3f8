"""Child processes of the tests: the environment they get."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This checkout importable, unbuffered output, no stray FRAMECAST_* or REDIS_URL from the shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMECAST_") and k != "REDIS_URL"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env
