"""Zones and lines of a camera: read, checked and described once, before anything starts.

A camera's zones and lines come from its table in the camera file (``framecast up``)::

    [cameras.door.zones.hall]
    polygon = [[100, 200], [540, 200], [540, 470], [100, 470]]
    labels = ["person"]          # optional: count only these classes
    anchor = "bottom-center"     # optional: which point of a box counts (the default)

    [cameras.door.lines.door]
    points = [[0, 240], [640, 240]]

or, for one producer, from its own file (``framecast producer --zones FILE``): the same tables
without the camera level (``[zones.hall]``, ``[lines.door]``). Everything here is pure Python (no
numpy), so ``framecast up`` checks a camera file exactly as the producer will, naming the file,
camera, zone or line and key of the first mistake.

Coordinates are frame pixels (x to the right, y down), from 0 to :data:`MAX_COORD`; the frame's
own size is known only once frames arrive (a point beyond it is allowed: a zone may run off the
picture).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from framecast.exceptions import FramecastError
from framecast.wire import STREAM_NAME_PATTERN

__all__ = [
    "ANCHORS",
    "DEFAULT_ANCHOR",
    "MAX_COORD",
    "MAX_LINES",
    "MAX_POINTS",
    "MAX_ZONES",
    "NO_LAYOUT",
    "Layout",
    "Line",
    "Zone",
    "ZoneError",
    "load",
    "parse",
    "segments_intersect",
]

ANCHORS = (
    "bottom-center",
    "center",
    "top-center",
    "bottom-left",
    "bottom-right",
    "top-left",
    "top-right",
    "center-left",
    "center-right",
)
"""Which point of a detection's box decides where it is."""
DEFAULT_ANCHOR = "bottom-center"
"""The feet of a standing person, the wheels of a car: where an object touches the floor."""
MAX_ZONES = 32
"""Zones per camera: each one costs an inside test per track and frame."""
MAX_LINES = 32
"""Lines per camera."""
MAX_POINTS = 64
"""Corners per zone polygon."""
MAX_COORD = 16384.0
"""Largest coordinate: no camera frame is wider or taller (8K is 7680 x 4320)."""
_NAME = re.compile(STREAM_NAME_PATTERN)
_ZONE_KEYS = frozenset({"polygon", "labels", "anchor"})
_LINE_KEYS = frozenset({"points", "labels", "anchor"})

Point = tuple[float, float]


class ZoneError(FramecastError, ValueError):
    """A zone or line is wrong; the text names where (file, camera, zone or line, key) and why."""


@dataclass(frozen=True, kw_only=True)
class Zone:
    """A polygon: tracks whose anchor is inside it are in the zone.

    Attributes:
        name: Zone name (as a stream name: 1-64 of ``A-Z a-z 0-9 _ . -``).
        polygon: Corners in frame pixels, at least 3, not self-intersecting.
        labels: Only tracks of these classes count (empty: every class).
        anchor: The point of a box that must be inside (:data:`ANCHORS`).
    """

    name: str
    polygon: tuple[Point, ...]
    labels: tuple[str, ...] = ()
    anchor: str = DEFAULT_ANCHOR


@dataclass(frozen=True, kw_only=True)
class Line:
    """A segment that tracks cross, ``in`` or ``out``.

    ``in`` is a crossing from the left of the line to its right as seen walking from its first
    point to its second on the picture (x to the right, y down): for ``[[0, 240], [640, 240]]``,
    from the top half to the bottom half.

    Attributes:
        name: Line name.
        points: Its two ends in frame pixels.
        labels: Only tracks of these classes count (empty: every class).
        anchor: The point of a box whose path must cross the segment (:data:`ANCHORS`).
    """

    name: str
    points: tuple[Point, Point]
    labels: tuple[str, ...] = ()
    anchor: str = DEFAULT_ANCHOR


@dataclass(frozen=True, kw_only=True)
class Layout:
    """A camera's zones and lines, in the order given."""

    zones: tuple[Zone, ...] = ()
    lines: tuple[Line, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.zones or self.lines)

    def to_toml(self) -> str:
        """The layout as a ``--zones`` file (what :func:`load` reads back into an equal layout)."""
        out: list[str] = []
        for kind, items in (("zones", self.zones), ("lines", self.lines)):
            for item in items:
                corners = item.polygon if isinstance(item, Zone) else item.points
                key = "polygon" if isinstance(item, Zone) else "points"
                out.append(f"[{kind}.{_quote(item.name)}]")
                out.append(f"{key} = [{', '.join(f'[{x!r}, {y!r}]' for x, y in corners)}]")
                if item.labels:
                    out.append(f"labels = [{', '.join(_quote(label) for label in item.labels)}]")
                out.append(f"anchor = {_quote(item.anchor)}")
                out.append("")
        return "\n".join(out)


NO_LAYOUT = Layout()
"""No zones and no lines."""


def _quote(text: str) -> str:
    # A TOML basic string: backslash, quote and control characters escaped.
    escaped = "".join(
        "\\\\" if c == "\\" else '\\"' if c == '"' else f"\\u{ord(c):04x}" if ord(c) < 32 else c for c in text
    )
    return f'"{escaped}"'


# ---------------------------------------------------------------- reading


def load(path: str | Path) -> Layout:
    """Read a ``--zones`` file: ``[zones.<name>]`` and ``[lines.<name>]`` tables.

    Raises:
        ZoneError: The file cannot be read or parsed, or anything in it is invalid.
    """
    origin = str(path)
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ZoneError(f"{origin}: cannot read the zones file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ZoneError(f"{origin}: not valid TOML: {exc}") from None
    for key in document:
        if key not in ("zones", "lines"):
            raise ZoneError(
                f"{origin}: unknown top-level key {key!r} (expected [zones.<name>] and [lines.<name>] tables)"
            )
    layout = parse(document.get("zones"), document.get("lines"), where=origin)
    if not layout:
        raise ZoneError(f"{origin}: no zones or lines (add a [zones.<name>] or [lines.<name>] table)")
    return layout


def parse(zones: object, lines: object, *, where: str) -> Layout:
    """Check the ``zones`` and ``lines`` tables of a file or camera (either may be None).

    Args:
        where: How errors name the place, e.g. ``"framecast.toml: camera 'door'"``.

    Raises:
        ZoneError: One line naming ``where``, the zone or line and the key.
    """
    found_zones = tuple(
        _zone(name, table, where=f"{where}: zone {name!r}") for name, table in _tables(zones, "zones", where)
    )
    found_lines = tuple(
        _line(name, table, where=f"{where}: line {name!r}") for name, table in _tables(lines, "lines", where)
    )
    if len(found_zones) > MAX_ZONES:
        raise ZoneError(f"{where}: {len(found_zones)} zones; at most {MAX_ZONES} per camera")
    if len(found_lines) > MAX_LINES:
        raise ZoneError(f"{where}: {len(found_lines)} lines; at most {MAX_LINES} per camera")
    both = {z.name for z in found_zones} & {line.name for line in found_lines}
    if both:
        name = sorted(both)[0]
        raise ZoneError(
            f"{where}: {name!r} names both a zone and a line: every zone and line of a camera needs its"
            " own name (events and counters are keyed by it)"
        )
    return Layout(zones=found_zones, lines=found_lines)


def _tables(value: object, kind: str, where: str) -> list[tuple[str, Mapping[str, object]]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        raise ZoneError(f"{where}: {kind!r} must be tables ([{kind}.<name>]), not {type(value).__name__}")
    out: list[tuple[str, Mapping[str, object]]] = []
    for name, table in value.items():
        what = kind[:-1]
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ZoneError(
                f"{where}: {what} {name!r}: invalid name (1-64 of A-Z a-z 0-9 _ . -, starting with a"
                " letter or digit)"
            )
        if not isinstance(table, dict):
            raise ZoneError(f"{where}: {what} {name!r} must be a table ([{kind}.{name}])")
        out.append((name, table))
    return out


def _zone(name: str, table: Mapping[str, object], *, where: str) -> Zone:
    _known(table, _ZONE_KEYS, where)
    if "polygon" not in table:
        raise ZoneError(f"{where}: 'polygon' is missing (at least 3 [x, y] corners in frame pixels)")
    polygon = _points(table["polygon"], f"{where}: polygon")
    if len(polygon) < 3:
        raise ZoneError(f"{where}: polygon: {len(polygon)} corners; a zone needs at least 3")
    if len(polygon) > MAX_POINTS:
        raise ZoneError(f"{where}: polygon: {len(polygon)} corners; at most {MAX_POINTS}")
    if all(_orient(polygon[0], polygon[1], p) == 0 for p in polygon[2:]):
        raise ZoneError(f"{where}: polygon: degenerate (it encloses no area: its corners are on one line)")
    crossing = _self_intersection(polygon)
    if crossing is not None:
        a, b = crossing
        raise ZoneError(
            f"{where}: polygon: self-intersecting (edge {a + 1} crosses edge {b + 1}); list the corners"
            " in order around the zone"
        )
    if abs(_area(polygon)) < 1.0:
        raise ZoneError(f"{where}: polygon: degenerate (it encloses less than one square pixel)")
    return Zone(name=name, polygon=polygon, labels=_labels(table, where), anchor=_anchor(table, where))


def _line(name: str, table: Mapping[str, object], *, where: str) -> Line:
    _known(table, _LINE_KEYS, where)
    if "points" not in table:
        raise ZoneError(f"{where}: 'points' is missing ([[x1, y1], [x2, y2]] in frame pixels)")
    points = _points(table["points"], f"{where}: points")
    if len(points) != 2:
        raise ZoneError(f"{where}: points: {len(points)} points; a line has exactly 2 ([[x1, y1], [x2, y2]])")
    (x1, y1), (x2, y2) = points
    if math.hypot(x2 - x1, y2 - y1) < 1.0:
        raise ZoneError(f"{where}: points: the line has length 0 (its two ends are the same point)")
    return Line(
        name=name, points=(points[0], points[1]), labels=_labels(table, where), anchor=_anchor(table, where)
    )


def _known(table: Mapping[str, object], keys: frozenset[str], where: str) -> None:
    for key in table:
        if key not in keys:
            raise ZoneError(f"{where}: unknown key {key!r} (expected {', '.join(sorted(keys))})")


def _points(value: object, where: str) -> tuple[Point, ...]:
    if not isinstance(value, list):
        raise ZoneError(f"{where}: expected a list of [x, y] points, got {_show(value)}")
    out: list[Point] = []
    for index, point in enumerate(value):
        if (
            not isinstance(point, list)
            or len(point) != 2
            or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in point)
        ):
            raise ZoneError(f"{where}[{index}]: expected [x, y] numbers, got {_show(point)}")
        x, y = float(point[0]), float(point[1])
        if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= MAX_COORD and 0 <= y <= MAX_COORD):
            raise ZoneError(
                f"{where}[{index}]: {_show(point)} is outside any frame (coordinates are frame pixels,"
                f" 0 to {MAX_COORD:g})"
            )
        out.append((x, y))
    return tuple(out)


def _labels(table: Mapping[str, object], where: str) -> tuple[str, ...]:
    value = table.get("labels", [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ZoneError(f"{where}: labels: expected a list of class names (strings), got {_show(value)}")
    return tuple(dict.fromkeys(value))


def _anchor(table: Mapping[str, object], where: str) -> str:
    value = table.get("anchor", DEFAULT_ANCHOR)
    if value not in ANCHORS:
        raise ZoneError(f"{where}: anchor: {_show(value)} is not one of {', '.join(ANCHORS)}")
    return str(value)


def _show(value: object) -> str:
    return repr(value)[:60]


# ---------------------------------------------------------------- geometry


def _area(polygon: tuple[Point, ...]) -> float:
    """Signed area (shoelace)."""
    return 0.5 * sum(
        x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(polygon, polygon[1:] + polygon[:1], strict=True)
    )


def _orient(a: Point, b: Point, c: Point) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _on_segment(a: Point, b: Point, p: Point) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def segments_intersect(a: Point, b: Point, c: Point, d: Point) -> bool:
    """Whether segment ``ab`` and segment ``cd`` share a point (touching counts)."""
    d1, d2 = _orient(c, d, a), _orient(c, d, b)
    d3, d4 = _orient(a, b, c), _orient(a, b, d)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    return (
        (d1 == 0 and _on_segment(c, d, a))
        or (d2 == 0 and _on_segment(c, d, b))
        or (d3 == 0 and _on_segment(a, b, c))
        or (d4 == 0 and _on_segment(a, b, d))
    )


def _self_intersection(polygon: tuple[Point, ...]) -> tuple[int, int] | None:
    """The first pair of non-adjacent edges that meet (edge i joins corner i and i + 1), if any."""
    n = len(polygon)
    edges = [(polygon[i], polygon[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            adjacent = j == i + 1 or (i == 0 and j == n - 1)
            if adjacent:
                # Neighbours share a corner; they are wrong only if they fold back onto each other.
                (a, b), (c, d) = edges[i], edges[j]
                shared, far = (b, d) if j == i + 1 else (a, c)
                other = a if j == i + 1 else b
                if _orient(other, shared, far) == 0 and _on_segment(other, far, shared) is False:
                    return i, j
                continue
            if segments_intersect(*edges[i], *edges[j]):
                return i, j
    return None
