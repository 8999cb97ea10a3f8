"""One module touches websockets' internals: ``gateway/_wsio.py``, the adapter (docs/development.md).

A websockets upgrade then has one place to check (``scripts/test-websockets.sh VERSION``). Every
other module of the gateway and of the benchmark (whose fan-out strategies run on the same
server connections) that imports websockets is read here, its syntax tree rather than its text,
for what only the adapter may use: a connection's transport or protocol object and the
flow-control, ping and parser state behind them, and any private attribute of an object that
is not its own. Tests may reach inside to set a scene (a stalled reader); they are not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ADAPTER = ROOT / "gateway" / "_wsio.py"

# Attributes of websockets' connection and protocol objects that are not its public API (see the
# adapter's docstring), and of the asyncio transport underneath.
INTERNALS = frozenset(
    {
        "transport",
        "protocol",
        "parser",
        "reader",
        "handshake_exc",
        "send_data",
        "send_in_progress",
        "paused",
        "drain_waiters",
        "pending_pings",
        "send_text",
        "send_binary",
    }
)

MODULES = sorted(
    path for package in ("gateway", "bench") for path in (ROOT / package).rglob("*.py") if path != ADAPTER
)


def _imports_websockets(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "websockets" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "websockets":
            return True
    return False


def violations(source: str) -> list[str]:
    """``line: expression`` of each use of a websockets internal in a module that imports websockets."""
    tree = ast.parse(source)
    if not _imports_websockets(tree):
        return []
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        own = isinstance(owner, ast.Name) and owner.id in ("self", "cls")
        private = node.attr.startswith("_") and not node.attr.startswith("__")
        if (node.attr in INTERNALS and not own) or (private and not own):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_check_finds_what_it_is_for() -> None:
    sample = (
        "from websockets.asyncio.server import ServerConnection\n"
        "def f(ws, sock):\n"
        "    ws.transport.write(b'')\n"
        "    ws.protocol._state\n"
        "    self.transport\n"
        "    sock.send(b'')\n"
    )
    assert sorted(violations(sample)) == ["3: ws.transport", "4: ws.protocol", "4: ws.protocol._state"]
    assert violations(sample.replace("from websockets.asyncio.server", "from elsewhere")) == []


def test_the_modules_are_found() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in MODULES}
    assert {"gateway/server.py", "gateway/fanout.py", "bench/strategies.py"} <= names
    assert "gateway/_wsio.py" not in names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_only_the_adapter_touches_websockets_internals(path: Path) -> None:
    found = violations(path.read_text())
    assert not found, f"{path.relative_to(ROOT)} reaches into websockets (use gateway._wsio): {found}"
