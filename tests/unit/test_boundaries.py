"""The gateway ships in a slim image: it and the shared package never import OpenCV, numpy or PyAV.

``framecast record`` needs PyAV to write a container: it imports ``av`` inside the function that
writes, never at module level, so importing any ``framecast`` module (the gateway's image has no
``av``) pulls in no video library; ``test_record_imports_av_only_when_it_writes`` holds that.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SLIM_MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for package in ("gateway", "framecast")
    for p in (ROOT / package).rglob("*.py")
    if p.name != "__main__.py"
)


def test_there_are_modules_to_check() -> None:
    assert "gateway.server" in SLIM_MODULES
    assert "framecast.wire" in SLIM_MODULES


@pytest.mark.parametrize("module", SLIM_MODULES)
def test_slim_module_imports_no_cv2_numpy_av_or_producer(module: str) -> None:
    code = (
        "import sys, importlib\n"
        f"importlib.import_module({module!r})\n"
        "bad = sorted(m for m in ('cv2', 'numpy', 'av', 'producer') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"
