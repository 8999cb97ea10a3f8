"""The shared predictors of a camera file: ``[predictors.<name>]`` tables, one inference worker each.

A camera with ``predictor = "<name>"`` (:mod:`framecast.local.cameras`) sends its frames to that worker
instead of loading the model itself: one model in memory for all of them, their frames batched.
Pure parsing and checking, like :mod:`framecast.local.cameras`; ``framecast up`` validates each key's
value with the worker's own settings class (``framecast inference --help``).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from framecast import settings, wire
from framecast.local.cameras import Camera, CameraError, _key, _text
from framecast.local.launch import Inference
from producer.inference.config import MODEL_KEYS
from producer.inference.config import Config as InferenceConfig

__all__ = ["RESERVED", "SharedPredictor", "check", "load", "resolve", "wait_listening"]

RESERVED = frozenset({"socket", "name", "metrics_port", "metrics_host"})
"""Inference worker settings ``framecast up`` sets itself for every ``[predictors.<name>]``."""


@dataclass(frozen=True, kw_only=True)
class SharedPredictor:
    """One ``[predictors.<name>]``: an inference worker whose model several cameras share.

    Attributes:
        name: The name cameras give as ``predictor``.
        options: ``framecast inference`` settings as ``(field_name, value)`` pairs.
        origin: The file it was defined in.
    """

    name: str
    options: tuple[tuple[str, str], ...] = ()
    origin: str = ""

    def argv(self) -> list[str]:
        """The worker's command-line arguments (without its socket, name and metrics)."""
        args: list[str] = []
        for key, value in self.options:
            args += ["--" + key.replace("_", "-"), value]
        return args

    def spec(self, workdir: Path, *, index: int, log_level: str) -> Inference:
        """The worker to launch, its socket in ``workdir``; its own settings win over ``log_level``.

        The socket is numbered, not named: a Unix socket's path is limited to ~100 bytes.
        """
        path = str(workdir / f"predictor-{index}.sock")
        return Inference(socket=path, name=self.name, log_level=log_level, args=tuple(self.argv()))


def load(path: str | Path | None) -> tuple[SharedPredictor, ...]:
    """The ``[predictors.<name>]`` tables of a camera file (none without a file).

    Raises:
        CameraError: The file cannot be read, or a table is malformed.
    """
    if not path:
        return ()
    origin = str(path)
    try:
        with open(path, "rb") as handle:
            tables = tomllib.load(handle).get("predictors", {})
    except (OSError, tomllib.TOMLDecodeError):
        return ()  # load() reports these, naming the problem
    if not isinstance(tables, dict):
        raise CameraError(f"{origin}: 'predictors' must be [predictors.<name>] tables")
    found = []
    for name, table in tables.items():
        where = f"{origin}: predictor {name!r}"
        if not isinstance(table, dict):
            raise CameraError(f"{origin}: 'predictors.{name}' must be a table ([predictors.{name}])")
        try:
            wire.check_stream_name(name)
        except wire.WireError:
            raise CameraError(f"{where}: invalid name (1-64 of A-Z a-z 0-9 _ . -)") from None
        options: list[tuple[str, str]] = []
        for raw_key, value in table.items():
            key = _key(raw_key)
            if key in RESERVED:
                raise CameraError(f"{where}: {raw_key!r} cannot be set (framecast up sets it)")
            try:
                options.append((key, _text(value)))
            except TypeError as exc:
                raise CameraError(
                    f"{where}: {raw_key!r} must be a string, number or boolean, not {exc}"
                ) from None
        if "detector" not in dict(options):
            raise CameraError(f"{where}: 'detector' is missing (e.g. detector = \"onnx:yolov8n.onnx\")")
        found.append(SharedPredictor(name=name, options=tuple(options), origin=origin))
    return tuple(found)


def check(
    predictors: Sequence[SharedPredictor],
    cameras: Sequence[Camera],
    *,
    check: Callable[[str, str], object],
    model_keys: Iterable[str],
) -> tuple[SharedPredictor, ...]:
    """Check every predictor's settings with ``check(key, value)`` and every camera's reference.

    A camera naming a predictor that is not defined, or setting a model key (``detector``,
    ``device``... in ``model_keys``) beside its ``predictor``, is an error; so is a predictor no
    camera uses (a model loaded for nothing). Returns the predictors the cameras use, in order.

    Raises:
        CameraError: One line naming the file, predictor or camera and the key.
    """
    by_name = {p.name: p for p in predictors}
    for predictor in predictors:
        for key, value in predictor.options:
            try:
                check(key, value)
            except ValueError as exc:
                raise CameraError(
                    f"{predictor.origin}: predictor {predictor.name!r}: {key}={value!r}: {exc}"
                ) from None
    model = set(model_keys)
    for camera in cameras:
        if camera.predictor is None:
            continue
        if camera.predictor not in by_name:
            known = ", ".join(by_name) or "none defined: add a [predictors.<name>] table to the camera file"
            raise CameraError(
                f"{camera.origin}: camera {camera.name!r}: predictor {camera.predictor!r} is not defined"
                f" (known: {known})"
            )
        clash = [key for key, _ in camera.options if key in model or key == "workers"]
        if clash:
            raise CameraError(
                f"{camera.origin}: camera {camera.name!r}: {clash[0]!r} belongs to predictor"
                f" {camera.predictor!r} (set it in [predictors.{camera.predictor}]), not beside 'predictor'"
            )
    used = {c.predictor for c in cameras}
    unused = [p.name for p in predictors if p.name not in used]
    if unused:
        raise CameraError(f"{predictors[0].origin}: predictor {unused[0]!r} is used by no camera")
    return tuple(p for p in predictors if p.name in used)


def resolve(path: str | Path | None, cameras: Sequence[Camera]) -> tuple[SharedPredictor, ...]:
    """The ``[predictors.<name>]`` of the camera file at ``path`` that ``cameras`` use, checked.

    Each key is checked with the inference worker's own settings class.

    Raises:
        CameraError: As :func:`load` and :func:`check`.
    """
    return check(
        load(path),
        cameras,
        check=lambda key, value: settings.check_value(InferenceConfig, key, value),
        model_keys=MODEL_KEYS,
    )


def wait_listening(path: str, process: subprocess.Popen[bytes], *, timeout: float = 60.0) -> str | None:
    """Wait until a worker accepts connections on ``path``; None then, else why not (it exited...)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with status {process.returncode}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe, contextlib.suppress(OSError):
            probe.connect(path)
            return None
        time.sleep(0.1)
    return f"did not listen on {path} within {timeout:.0f} s (loading its model?)"
