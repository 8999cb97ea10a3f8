"""Several cameras for one ``framecast up``: a TOML file and repeated ``--camera`` specs.

Each camera is one producer process publishing the stream named after the camera. A camera's keys
are the producer's own settings (``framecast producer --help``), spelt with ``_`` or ``-``::

    # framecast.toml
    [cameras.door]
    source = "rtsp://user:secret@10.0.0.7/stream1"
    detector = "faces"
    max_fps = 5

    [cameras.yard]
    source = "synthetic"

or on the command line, ``--camera door=rtsp://10.0.0.7/stream1,detector=faces,max_fps=5`` (a
source that contains a comma must go in the file).

Cameras may share one model: a ``[predictors.<name>]`` table is one inference worker (its keys
are ``framecast inference`` settings: ``detector``, ``device``, ``max_batch``...; read by
:mod:`framecast.local.predictors`), and a camera with ``predictor = "<name>"`` sends its frames there
instead of loading a model of its own::

    [predictors.yolo]
    detector = "onnx:yolov8n.onnx"
    device = "auto"

    [cameras.door]
    source = "rtsp://10.0.0.7/stream1"
    predictor = "yolo" Everything here is pure parsing and checking:
:func:`load` and :func:`parse_spec` raise :class:`CameraError` with one line naming the file, the
camera and the key; the caller validates each key's value with the producer's settings class
(see :func:`check_options`), so a camera accepts exactly what ``framecast producer`` accepts.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from framecast import wire
from framecast.exceptions import FramecastError

__all__ = [
    "ENV",
    "EXAMPLE",
    "MAX_CAMERAS",
    "RESERVED",
    "SOURCE_ENV",
    "SUMMARY",
    "Camera",
    "CameraError",
    "add_flag",
    "check_options",
    "load",
    "merge",
    "parse_spec",
    "resolve",
    "split_specs",
]

ENV = "FRAMECAST_CAMERAS"
"""Environment variable with ``--camera`` specs separated by ``;`` (used when no ``--camera`` is given)."""

SOURCE_ENV = "FRAMECAST_SOURCE"
"""The producer's ``--source`` as an environment variable: how ``up`` hands a producer its source."""

SUMMARY = (
    "Several cameras: --config framecast.toml and/or repeated --camera NAME=SOURCE[,key=value]\n"
    "start one producer per camera (child producer-NAME, stream NAME), all behind the same\n"
    "gateways. Then --source, --detector and --stream are not used, and giving them is an error."
)
"""What ``framecast up --help`` says about cameras (description)."""

MAX_CAMERAS = 64
"""Most cameras one ``framecast up`` runs: each is a producer process (OpenCV and a predictor,
about 100 MB and a share of a core at least), so more than this is beyond one machine."""

EXAMPLE = f"""\
Camera file (framecast.toml):
  [cameras.door]
  source = "rtsp://user:secret@10.0.0.7/stream1"
  detector = "faces"
  max_fps = 5

  [cameras.yard]
  source = "synthetic"
  predictor = "yolo"          # one model for several cameras: batched, in one worker

  [predictors.yolo]           # 'framecast inference' settings
  detector = "onnx:yolov8n.onnx"
  device = "auto"             # cuda, tensorrt, openvino... (onnxruntime execution providers)

A camera's keys are 'framecast producer' settings (with _ or -), except stream, redis_url,
metrics_port and metrics_host, which up sets; with 'predictor', the model's own settings
(detector, device, threads...) go in the [predictors.NAME] table. A bad camera (unknown key, bad value,
duplicate or invalid name, unreadable file) is one line naming it, exit 2, nothing started.
At most {MAX_CAMERAS} cameras; they start a few at a time (as many as this machine has cores)."""
"""What ``framecast up --help`` says about cameras (epilog)."""

RESERVED = frozenset({"stream", "redis_url", "metrics_port", "metrics_host", "predictor_socket"})
"""Producer settings ``framecast up`` sets itself for every camera: the stream is the camera's name,
Redis is the topology's, metrics ports are allocated per camera, and a shared predictor's socket
is up's own (name the predictor with ``predictor``)."""


class CameraError(FramecastError, ValueError):
    """A camera definition is wrong; the text names where (file, camera, key) and why."""


@dataclass(frozen=True, kw_only=True)
class Camera:
    """One camera: its name (also its stream's name), its source and its other producer settings.

    Attributes:
        name: Camera and stream name (``wire.STREAM_NAME_PATTERN``).
        source: What the producer reads (``--source``).
        options: Other producer settings as ``(field_name, value)`` pairs, in the order given.
        origin: Where it was defined, for messages (``framecast.toml`` or ``--camera``).
        predictor: The ``[predictors.<name>]`` it sends its frames to, or None (its own model).
    """

    name: str
    source: str
    options: tuple[tuple[str, str], ...] = ()
    origin: str = "--camera"
    predictor: str | None = None

    def env(self) -> dict[str, str]:
        """The producer's environment variables for this camera: its source."""
        return {SOURCE_ENV: self.source}

    def argv(self) -> list[str]:
        """The producer's command-line arguments for this camera (without Redis, metrics and source).

        The source travels in :meth:`env`: a camera URL often carries a password, and argv is
        what ``ps`` shows every user of the machine.
        """
        args = ["--stream", self.name]
        for key, value in self.options:
            flag = "--" + key.replace("_", "-")
            if value in ("true", "false"):  # booleans are --flag / --no-flag, as argparse wants
                args.append(flag if value == "true" else "--no-" + key.replace("_", "-"))
            else:
                args += [flag, value]
        return args


def _key(raw: str) -> str:
    return raw.strip().replace("-", "_")


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise TypeError(type(value).__name__)


def _camera(name: str, table: Mapping[str, object], *, origin: str) -> Camera:
    where = f"{origin}: camera {name!r}"
    try:
        wire.check_stream_name(name)
    except wire.WireError:
        raise CameraError(
            f"{where}: invalid name (1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit;"
            " it is also the stream's name)"
        ) from None
    options: list[tuple[str, str]] = []
    source: str | None = None
    predictor: str | None = None
    seen: set[str] = set()
    for raw_key, value in table.items():
        key = _key(raw_key)
        if key in seen:
            raise CameraError(f"{where}: {raw_key!r} is given twice")
        seen.add(key)
        try:
            text = _text(value)
        except TypeError as exc:
            raise CameraError(
                f"{where}: {raw_key!r} must be a string, number or boolean, not {exc}"
            ) from None
        if key == "source":
            source = text
        elif key == "predictor":
            predictor = text
        elif key in RESERVED:
            raise CameraError(f"{where}: {raw_key!r} cannot be set per camera (framecast up sets it)")
        else:
            options.append((key, text))
    if not source:
        raise CameraError(f"{where}: 'source' is missing (a device index, file, URL or 'synthetic')")
    return Camera(name=name, source=source, options=tuple(options), origin=origin, predictor=predictor)


def load(path: str | Path) -> tuple[Camera, ...]:
    """Read cameras from a TOML file with one ``[cameras.<name>]`` table per camera.

    Raises:
        CameraError: The file cannot be read or parsed, has a top-level key other than
            ``cameras``, or a camera is invalid.
    """
    origin = str(path)
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise CameraError(f"{origin}: cannot read the camera file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CameraError(f"{origin}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise CameraError(
            f"{origin}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}):"
            " a TOML file must be UTF-8"
        ) from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively: a deep one exhausts the stack.
        raise CameraError(f"{origin}: not valid TOML: arrays or tables nested too deeply") from None
    for key in document:
        if key not in ("cameras", "predictors"):
            raise CameraError(
                f"{origin}: unknown top-level key {key!r} (expected [cameras.<name>] and"
                " [predictors.<name>] tables)"
            )
    tables = document.get("cameras")
    if not isinstance(tables, dict) or not tables:
        raise CameraError(f"{origin}: no cameras (add a [cameras.<name>] table with a 'source')")
    cameras = []
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise CameraError(f"{origin}: 'cameras.{name}' must be a table ([cameras.{name}])")
        cameras.append(_camera(name, table, origin=origin))
    return tuple(cameras)


def parse_spec(spec: str) -> Camera:
    """Parse ``NAME=SOURCE[,key=value...]`` (one ``--camera``).

    Raises:
        CameraError: The spec is malformed or the camera invalid.
    """
    origin = f"--camera {spec!r}"
    name, sep, rest = spec.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise CameraError(f"{origin}: expected NAME=SOURCE[,key=value...]")
    source, *pairs = rest.split(",")
    table: dict[str, object] = {"source": source.strip()}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CameraError(f"{origin}: expected key=value after the source, got {pair!r}")
        if _key(key) in {_key(k) for k in table}:
            raise CameraError(f"{origin}: camera {name.strip()!r}: {key.strip()!r} is given twice")
        table[key.strip()] = value.strip()
    return _camera(name.strip(), table, origin="--camera")


def merge(*groups: Iterable[Camera]) -> tuple[Camera, ...]:
    """All cameras of every group, in order; a name defined twice anywhere is an error.

    Raises:
        CameraError: A duplicate name, or more than :data:`MAX_CAMERAS` cameras.
    """
    cameras: dict[str, Camera] = {}
    for group in groups:
        for camera in group:
            earlier = cameras.get(camera.name)
            if earlier is not None:
                raise CameraError(
                    f"camera {camera.name!r} is defined twice ({earlier.origin} and {camera.origin}):"
                    " camera names are stream names and must be unique"
                )
            cameras[camera.name] = camera
            if len(cameras) > MAX_CAMERAS:
                raise CameraError(
                    f"more than {MAX_CAMERAS} cameras (at {camera.name!r}, {camera.origin}): framecast up "
                    f"runs at most {MAX_CAMERAS}, one producer process each; run more on other machines "
                    "(docker compose services or Kubernetes producers, one per camera)"
                )
    return tuple(cameras.values())


def check_options(cameras: Iterable[Camera], check: Callable[[str, str], object]) -> tuple[Camera, ...]:
    """Validate every camera's settings with ``check(key, value)``, which raises ValueError.

    ``framecast up`` passes a check built from the producer's settings class, so an unknown key or
    a bad value is reported before any process starts, naming the camera and the key. Returns the
    cameras with booleans spelled ``true``/``false`` (the check returns converted values): the
    producer takes a boolean as ``--flag``/``--no-flag``, so ``demand=yes`` must become one.
    """
    checked: list[Camera] = []
    for camera in cameras:
        options: list[tuple[str, str]] = []
        for key, value in (("source", camera.source), *camera.options):
            try:
                converted = check(key, value)
            except ValueError as exc:
                raise CameraError(
                    f"{camera.origin}: camera {camera.name!r}: {key}={value!r}: {exc}"
                ) from None
            if key != "source":
                options.append((key, _text(converted) if isinstance(converted, bool) else value))
        checked.append(dataclasses.replace(camera, options=tuple(options)))
    return tuple(checked)


def split_specs(text: str) -> list[str]:
    """The ``--camera`` specs in :data:`ENV`'s value: separated by ``;``, blanks ignored."""
    return [spec.strip() for spec in text.split(";") if spec.strip()]


def resolve(
    path: str | Path | None, specs: Sequence[str], *, check: Callable[[str, str], object]
) -> tuple[Camera, ...]:
    """The cameras of the file at ``path`` (if any), then of each ``--camera`` spec, checked.

    Raises:
        CameraError: As :func:`load`, :func:`parse_spec`, :func:`merge` and :func:`check_options`.
    """
    from_file = load(path) if path else ()
    found = merge(from_file, [parse_spec(spec) for spec in specs])
    return check_options(found, check)


def add_flag(parser: argparse.ArgumentParser) -> None:
    """Add the repeatable ``--camera`` flag (the raw specs land in ``args.camera``, None if absent)."""
    parser.add_argument(
        "--camera",
        action="append",
        default=None,
        metavar="NAME=SOURCE[,key=value...]",
        help="A camera: one producer publishing stream NAME from SOURCE, with any producer setting as"
        " key=value (e.g. door=rtsp://10.0.0.7/s1,detector=faces,max_fps=5). Repeat for more; with"
        f" --config, names must differ across both. [env {ENV}, specs separated by ';']",
    )
