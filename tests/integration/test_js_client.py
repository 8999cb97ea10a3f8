"""The npm package in clients/js: its own node --test suite, its tarball, and the file gateways serve.

The Node suite (``clients/js/test``) starts real valkey, gateway and producer processes of this
checkout itself; here it runs with this interpreter and must pass every test it declares.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.gateway import running_gateway
from tests.support.procs import child_env
from tests.support.valkey import RedisServer

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "js"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed: the JS client tests need Node >= 18 and npm (apt-get install -y npm)",
            pytrace=False,
        )
    return found


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """The package's dependencies, installed from its package-lock.json when missing."""
    modules = PACKAGE / "node_modules"
    if not (modules / "ws" / "package.json").is_file() or not (modules / ".bin" / "tsc").exists():
        done = subprocess.run(
            [_tool("npm"), "ci", "--no-audit", "--no-fund"],
            cwd=PACKAGE, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return modules


def test_typescript_declarations_accept_the_documented_use_and_reject_misuse(node_modules: Path) -> None:
    done = subprocess.run(
        [_tool("node"), str(node_modules / "typescript" / "bin" / "tsc"), "-p", "test"],
        cwd=PACKAGE, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_node_suite_passes_against_real_gateways(node_modules: Path) -> None:
    files = sorted((PACKAGE / "test").glob("*.test.js"))
    declared = sum(len(re.findall(r"^test\(", path.read_text(), flags=re.MULTILINE)) for path in files)
    done = subprocess.run(
        [_tool("node"), "--test", "--test-reporter=tap", "--test-concurrency=1", *map(str, files)],
        cwd=PACKAGE, capture_output=True, text=True, timeout=600, check=False,
        env=child_env({"FRAMECAST_PYTHON": sys.executable}),
    )  # fmt: skip
    report = done.stdout + done.stderr
    passed = re.search(r"^# pass (\d+)$", report, flags=re.MULTILINE)
    assert done.returncode == 0, report[-8000:]
    # Every test declared ran and passed: a file that stops loading cannot pass silently.
    assert passed is not None and int(passed.group(1)) == declared >= 10, report[-3000:]


def test_npm_pack_ships_the_module_its_types_and_readme_only(node_modules: Path) -> None:
    done = subprocess.run(
        [_tool("npm"), "pack", "--dry-run", "--json"],
        cwd=PACKAGE, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (info,) = json.loads(done.stdout)
    assert info["name"] == "@framecast/client"
    assert sorted(f["path"] for f in info["files"]) == [
        "README.md", "package.json", "src/index.d.ts", "src/index.js",
    ]  # fmt: skip
    manifest = json.loads((PACKAGE / "package.json").read_text())
    assert manifest["exports"]["."] == {"types": "./src/index.d.ts", "default": "./src/index.js"}
    assert set(manifest["dependencies"]) == {"ws"}


def test_gateway_serves_the_package_file_as_client_js(redis_server: RedisServer) -> None:
    with running_gateway(redis_url=redis_server.url) as gw:
        status, body = gw.get("/client.js")
    assert status == 200, body[:200]
    assert body == (PACKAGE / "src" / "index.js").read_bytes()
