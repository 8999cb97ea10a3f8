"""From tracks to events: zone enter/leave, line crossings, occupancy and line totals.

Rules (docs/producer.md, "Tracking, zones and events"):

* **Where a track is** is one point of its box, the zone's or line's ``anchor`` (bottom-centre by
  default), on frames where the tracker matched it to a detection. A frame on which it was not
  detected (the tracker coasts it) changes nothing.
* **enter / leave.** A track is in a zone when its anchor is inside the polygon (or on its edge:
  the polygon is rasterised, as supervision's ``PolygonZone`` does). ``enter`` on the first
  frame it is seen inside (also its very first frame), ``leave`` on the first frame it is seen
  outside, and ``leave`` with ``lost: true`` on the frame the tracker gives the track up while it
  was inside. So every visit is exactly one ``enter`` and one ``leave``.
* **cross.** Between two frames a track was seen on, its anchor moved along a straight segment;
  when that segment crosses the line segment from one side to the other, it is one ``cross``:
  ``in`` from the line's left to its right (walking from its first point to its second on the
  picture), ``out`` the other way. A point exactly on the line belongs to neither side (the
  crossing counts once the anchor is off it). Going round an end of the line is not a crossing.
* **Occupancy** counts the tracks in each zone (coasting ones included); **line totals** count
  crossings since the epoch began.

``labels`` restrict a zone or line to those classes. :class:`Analytics` is pure logic over
:class:`~framecast.wire.Detection` objects (tested with made-up tracks); :class:`Analyzer` puts
the tracker in front of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from framecast import wire
from framecast.zones import Layout, Line, Zone, segments_intersect

__all__ = ["Analysis", "Analytics", "Analyzer", "EventDraft"]

log = logging.getLogger(__name__)

Point = tuple[float, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class EventDraft:
    """An event before publishing: the publisher adds stream, epoch, seq, frame and times."""

    kind: wire.EventKind
    track: int
    label: str
    zone: str | None = None
    line: str | None = None
    direction: Literal["in", "out"] | None = None
    lost: bool | None = None
    dwell: float | None = None


@dataclass(frozen=True, slots=True)
class Analysis:
    """What one frame added: tracked detections, events, and the counters after it.

    Attributes:
        detections: The frame's detections with track ids.
        events: Events of this frame, in the order they are published.
        occupancy: Tracks in each zone (None without zones).
        crossings: ``(in, out)`` per line since the epoch began (None without lines).
        active: Tracks alive after this frame.
        seconds: Time spent tracking and deriving events (wall clock).
    """

    detections: tuple[wire.Detection, ...]
    events: tuple[EventDraft, ...] = ()
    occupancy: dict[str, int] | None = None
    crossings: dict[str, tuple[int, int]] | None = None
    active: int = 0
    seconds: float = 0.0


def anchor_point(box: tuple[float, float, float, float], anchor: str) -> Point:
    """The ``anchor`` point (framecast.zones.ANCHORS) of an ``(x1, y1, x2, y2)`` box."""
    x1, y1, x2, y2 = box
    vertical, _, horizontal = anchor.partition("-")
    if anchor == "center":
        vertical, horizontal = "center", "center"
    x = {"left": x1, "right": x2}.get(horizontal, (x1 + x2) / 2)
    y = {"top": y1, "bottom": y2}.get(vertical, (y1 + y2) / 2)
    return x, y


def _side(line: Line, p: Point) -> int:
    """+1 right of the line (seen from its first point to its second, y down), -1 left, 0 on it."""
    (ax, ay), (bx, by) = line.points
    cross = (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax)
    return (cross > 0) - (cross < 0)


@dataclass
class _Visit:
    since: float


@dataclass
class _TrackState:
    label: str
    zones: dict[str, _Visit] = field(default_factory=dict)
    sides: dict[str, tuple[int, Point]] = field(default_factory=dict)


class Analytics:
    """The zones and lines of one camera, and the state of every track in them.

    Args:
        layout: The zones and lines.
        inside: ``inside(zone, points) -> list[bool]``: which points lie in the zone (made from
            supervision's ``PolygonZone`` when None).
    """

    def __init__(self, layout: Layout, *, inside: Any = None) -> None:
        self.layout = layout
        self._inside = inside or _polygon_test(layout.zones)
        self._tracks: dict[int, _TrackState] = {}
        self._totals: dict[str, list[int]] = {line.name: [0, 0] for line in layout.lines}
        self._warned_frame: tuple[int, int] | None = None

    def update(
        self,
        detections: Sequence[wire.Detection],
        lost: Sequence[tuple[int, str]],
        captured_at: float,
        *,
        size: tuple[int, int] | None = None,
    ) -> tuple[tuple[EventDraft, ...], dict[str, int] | None, dict[str, tuple[int, int]] | None]:
        """One frame: its tracked detections and the tracks given up on it.

        Returns:
            The frame's events, then occupancy per zone and totals per line (None without).
        """
        if size is not None and size != self._warned_frame:
            self._warned_frame = size
            self._check_frame(*size)
        events: list[EventDraft] = []
        for gone, label in lost:
            state = self._tracks.pop(gone, None)
            if state is None:
                continue
            for zone in self.layout.zones:
                visit = state.zones.get(zone.name)
                if visit is not None:
                    events.append(
                        EventDraft(
                            kind="leave",
                            track=gone,
                            label=label,
                            zone=zone.name,
                            lost=True,
                            dwell=round(max(0.0, captured_at - visit.since), 3),
                        )
                    )
        seen = [d for d in detections if d.track is not None]
        inside = {
            zone.name: self._inside(zone, [anchor_point(d.box, zone.anchor) for d in seen])
            for zone in self.layout.zones
        }
        for index, detection in enumerate(seen):
            track = detection.track
            assert track is not None  # filtered above
            state = self._tracks.get(track)
            if state is None:
                state = self._tracks[track] = _TrackState(detection.label)
            for zone in self.layout.zones:
                if zone.labels and detection.label not in zone.labels:
                    continue
                now_in = bool(inside[zone.name][index])
                visit = state.zones.get(zone.name)
                if now_in and visit is None:
                    state.zones[zone.name] = _Visit(captured_at)
                    events.append(
                        EventDraft(kind="enter", track=track, label=detection.label, zone=zone.name)
                    )
                elif not now_in and visit is not None:
                    del state.zones[zone.name]
                    events.append(
                        EventDraft(
                            kind="leave",
                            track=track,
                            label=detection.label,
                            zone=zone.name,
                            lost=False,
                            dwell=round(max(0.0, captured_at - visit.since), 3),
                        )
                    )
            for line in self.layout.lines:
                if line.labels and detection.label not in line.labels:
                    continue
                point = anchor_point(detection.box, line.anchor)
                side = _side(line, point)
                if side == 0:
                    continue
                before = state.sides.get(line.name)
                state.sides[line.name] = (side, point)
                if (
                    before is None
                    or before[0] == side
                    or not segments_intersect(before[1], point, *line.points)
                ):
                    continue
                direction: Literal["in", "out"] = "in" if side > 0 else "out"
                self._totals[line.name][0 if direction == "in" else 1] += 1
                events.append(
                    EventDraft(
                        kind="cross", track=track, label=detection.label, line=line.name, direction=direction
                    )
                )
        occupancy = (
            {
                zone.name: sum(1 for s in self._tracks.values() if zone.name in s.zones)
                for zone in self.layout.zones
            }
            if self.layout.zones
            else None
        )
        crossings = {name: (t[0], t[1]) for name, t in self._totals.items()} if self.layout.lines else None
        return tuple(events), occupancy, crossings

    def _check_frame(self, width: int, height: int) -> None:
        """Log once per frame size each zone or line that lies entirely outside the picture."""
        items: tuple[Zone | Line, ...] = (*self.layout.zones, *self.layout.lines)
        for item in items:
            corners = item.polygon if isinstance(item, Zone) else item.points
            if all(x > width or y > height for x, y in corners):
                log.warning(
                    "%s %r lies outside the %dx%d frame: it will never see a track",
                    "zone" if isinstance(item, Zone) else "line",
                    item.name,
                    width,
                    height,
                )


def _polygon_test(zones: Sequence[Zone]) -> Any:
    """``inside(zone, points)`` with supervision's ``PolygonZone`` (its rasterised mask)."""
    if not zones:
        return lambda zone, points: []
    import supervision as sv

    masks = {
        zone.name: sv.PolygonZone(
            polygon=np.array([[round(x), round(y)] for x, y in zone.polygon], np.int64),
            triggering_anchors=(sv.Position.CENTER,),
        )
        for zone in zones
    }

    def inside(zone: Zone, points: list[Point]) -> list[bool]:
        if not points:
            return []
        # A box of zero size at the point: its centre is the point itself.
        xy = np.array([[x, y, x, y] for x, y in points], np.float32)
        return [bool(v) for v in masks[zone.name].trigger(sv.Detections(xyxy=xy))]

    return inside


class Analyzer:
    """The tracker, then the zones and lines: one call per processed frame, in frame order.

    Args:
        layout: Zones and lines (an empty one: tracking only).
        lost_after: Seconds a track may go unmatched before the tracker gives it up.
    """

    def __init__(self, layout: Layout, *, lost_after: float = 1.0) -> None:
        from producer.tracking import Tracker

        self.tracker = Tracker(lost_after=lost_after)
        self.analytics = Analytics(layout) if layout else None

    def step(
        self,
        detections: Sequence[wire.Detection],
        captured_at: float,
        width: int,
        height: int,
        shows: float | None = None,
    ) -> Analysis:
        """Track one frame's detections and derive its events.

        Args:
            detections: What the predictor found on the frame.
            captured_at: When the frame was read (Unix seconds): the events' time.
            width: Frame width.
            height: Frame height.
            shows: For a played recording (file, synthetic scene), the frame's time on the
                recording's own clock (:attr:`producer.latest.Frame.shows`); the tracker then
                runs on it, since a busy producer reads such a recording late but never skips
                any of it, so the read times overstate how far things moved between frames.
        """
        started = time.perf_counter()
        tracked = self.tracker.update(detections, captured_at if shows is None else shows)
        if self.analytics is None:
            return Analysis(tracked.detections, active=tracked.active, seconds=time.perf_counter() - started)
        events, occupancy, crossings = self.analytics.update(
            tracked.detections, tracked.lost, captured_at, size=(width, height)
        )
        return Analysis(
            tracked.detections,
            events,
            occupancy,
            crossings,
            active=tracked.active,
            seconds=time.perf_counter() - started,
        )
