"""The map's boundaries (docs/development.md, "Layout and boundaries"), held true.

* Who may import whom: read from every ``import`` statement in the source, function-level ones
  included (a lazy import is still a dependency).
* No import circle among the modules of ``framecast``, ``gateway`` and ``producer``.
* The gateway ships in a slim image: importing any gateway or ``framecast`` module loads no
  OpenCV, numpy, onnxruntime or PyAV (checked in a fresh interpreter each).
* ``framecast record`` needs PyAV to write a container (the ``record`` extra): it may import
  ``av`` inside the function that writes, never at module level (:data:`LAZY_HEAVY`).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("framecast", "gateway", "producer", "bench")
FIRST_PARTY = {*PACKAGES, "tests"}
HEAVY = ("cv2", "numpy", "onnxruntime", "av")
# Heavy modules a slim module may import inside a function only (an optional extra's work).
LAZY_HEAVY: dict[str, tuple[str, ...]] = {"framecast.client.record": ("av",)}


def _name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


MODULES = {_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _room(module: str) -> str:
    """Which room of the map a module is in."""
    for room in ("framecast.client", "framecast.local"):
        if module == room or module.startswith(room + "."):
            return room
    return module.split(".")[0]


# Room -> the first-party modules it may import (a name, or a name ending in "." for a package).
ALLOWED: dict[str, tuple[str, ...]] = {
    # The shared core (wire, broker, settings, exceptions...): nothing but itself.
    "framecast": ("framecast.",),
    "framecast.client": ("framecast.",),
    # The local tool checks a camera file with the producer's own settings classes, and nothing
    # else of the producer (they import neither OpenCV nor numpy: see the slim test below).
    "framecast.local": ("framecast.", "producer.config", "producer.inference.config"),
    "gateway": ("framecast.", "gateway."),
    "producer": ("framecast.", "producer."),
    # The benchmark runs from a checkout (it is not in the wheel) and may use the tests' harnesses.
    "bench": ("framecast.", "gateway.", "producer.", "bench.", "tests."),
}
# Rooms whose own room may not be entered from the core and the other rooms of framecast.
PRIVATE_ROOMS = ("framecast.client", "framecast.local")


def _imports(module: str, path: Path, *, top_level_only: bool = False) -> Iterator[tuple[int, str]]:
    """``(line, imported module)`` of every import in ``path``; relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = _top_level(tree.body) if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield node.lineno, full if full in MODULES else base


def _top_level(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """The statements run at import time (``if TYPE_CHECKING:`` blocks included), not functions."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.Try):
            nested = [*node.body, *node.orelse]
            if isinstance(node, ast.Try):
                nested += [*(s for h in node.handlers for s in h.body), *node.finalbody]
            yield from _top_level(nested)


def _allowed(room: str, imported: str) -> bool:
    if imported.split(".")[0] not in FIRST_PARTY:
        return True
    for private in PRIVATE_ROOMS:
        if (imported == private or imported.startswith(private + ".")) and room not in (private, "bench"):
            return False
    return any(imported in (a, a.rstrip(".")) or imported.startswith(a) for a in ALLOWED[room])


def test_every_room_is_mapped_and_the_rules_see_function_level_imports(tmp_path: Path) -> None:
    assert {_room(m) for m in MODULES} == set(ALLOWED)
    # framecast/up.py imported the producer inside a function, which the old test did not see.
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f() -> None:\n    from producer.sources import parse_source\n")
    found = list(_imports("framecast.local.lazy", lazy))
    assert found == [(2, "producer.sources")]
    assert not _allowed("framecast.local", "producer.sources")
    assert not _allowed("framecast", "framecast.local.up") and not _allowed("gateway", "framecast.client")
    assert list(_imports("framecast.local.lazy", lazy, top_level_only=True)) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_stay_within_the_map(module: str) -> None:
    room = _room(module)
    lazy = LAZY_HEAVY.get(module, ())
    top = {imported for _, imported in _imports(module, MODULES[module], top_level_only=True)}
    wrong = [
        f"line {line}: {imported}"
        for line, imported in _imports(module, MODULES[module])
        if not _allowed(room, imported)
        or (
            room != "bench"
            and room != "producer"
            and imported.split(".")[0] in HEAVY
            and (imported.split(".")[0] not in lazy or imported in top)
        )
    ]
    assert not wrong, f"{module} ({room}) imports what its room may not: {wrong}"


def test_no_import_circle() -> None:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        if _room(module) == "bench":
            continue
        targets = set()
        for _, imported in _imports(module, path, top_level_only=True):
            while imported and imported not in MODULES:
                imported = imported.rpartition(".")[0]
            if imported and imported != module:
                targets.add(imported)
        graph[module] = targets
    assert _circles(graph) == []


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


SLIM_MODULES = sorted(
    m for m in MODULES if _room(m) in ("gateway", "framecast", "framecast.client", "framecast.local")
)


@pytest.mark.parametrize("module", [m for m in SLIM_MODULES if not m.endswith("__main__")])
def test_slim_module_loads_no_opencv_numpy_onnxruntime_or_av(module: str) -> None:
    code = (
        "import sys, importlib\n"
        f"importlib.import_module({module!r})\n"
        f"bad = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "", f"{module} loads {out.stdout.strip()}"
