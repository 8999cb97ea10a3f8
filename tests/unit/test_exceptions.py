"""Every deliberate error is a FramecastError (docs/development.md, "Where each rule lives").

Every exception class defined in ``framecast``, ``gateway``, ``producer`` and ``bench`` derives
from :class:`framecast.exceptions.FramecastError`, so ``except FramecastError`` catches whatever
framecast raises on purpose; each also keeps the built-in it replaces, so code written against
the built-ins keeps working. Only a ``BaseException`` that is no ``Exception`` (control flow, like
``framecast up``'s interruption by a signal) is left out.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
from pathlib import Path

import pytest

from framecast import client, exceptions, settings, wire
from framecast.exceptions import FramecastError
from gateway import auth

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("framecast", "gateway", "producer", "bench")

MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for package in PACKAGES
    for p in (ROOT / package).rglob("*.py")
    if p.name != "__main__.py"
)


def _defined_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in MODULES:
        loaded = importlib.import_module(module)
        for name, value in vars(loaded).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module:
                found[f"{module}.{name}"] = value
    return found


DEFINED = _defined_exceptions()


def test_the_known_deliberate_errors_are_found() -> None:
    names = {cls.__name__ for cls in DEFINED.values()}
    for expected in ("BadRequest", "Deaf", "SourceError", "DetectorError", "CameraError", "BenchError"):
        assert expected in names


@pytest.mark.parametrize("name", sorted(DEFINED))
def test_every_exception_class_is_a_framecast_error(name: str) -> None:
    cls = DEFINED[name]
    if not issubclass(cls, Exception):
        return  # control flow (a signal during start-up), not an error
    assert issubclass(cls, FramecastError), f"{name} derives from {[b.__name__ for b in cls.__mro__[1:]]}"


def test_every_raised_class_of_the_packages_is_defined_under_the_root() -> None:
    """A ``raise X(...)`` whose ``X`` is a class of the packages is one of the classes above."""
    ours = {cls.__name__ for cls in DEFINED.values()}
    raised: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                    func = node.exc.func
                    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    if name and name[0].isupper() and not hasattr(builtins, name):
                        raised.add(name)
    # argparse's own signal from a type function: argparse turns it into a usage error (exit 2).
    raised.discard("ArgumentTypeError")
    assert raised, "the scan found nothing"
    assert raised <= ours, f"raised but not defined in the packages: {sorted(raised - ours)}"


def test_one_auth_error_and_the_builtins_they_replace() -> None:
    # The gateway's token check and the client's handshake raise the same AuthError.
    assert auth.AuthError is client.AuthError is exceptions.AuthError
    # Code written against the built-ins keeps catching them.
    assert issubclass(wire.WireError, ValueError) and issubclass(settings.ConfigError, ValueError)
    for name, builtin in (
        ("gateway.handshake.BadRequest", ValueError),
        ("producer.sources.SourceError", RuntimeError),
        ("producer.detectors.DetectorError", ValueError),
        ("producer.inference.protocol.ProtocolError", ConnectionError),
        ("framecast.local.cameras.CameraError", ValueError),
    ):
        assert issubclass(DEFINED[name], builtin), name
