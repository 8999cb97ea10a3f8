"""Tracking: a stable id per detected object, from frame to frame (``--track``).

The tracker is Roboflow's ByteTrack (the ``trackers`` package): Kalman-predicted boxes matched
to detections by IoU in two passes, confident detections first, then the weak ones to revive
tracks through occlusion. It is fed each result's detections in frame order with the time the
frame shows, so its motion model and its lost-track budget follow the real frame rate (the
producer skips frames and pauses; a fixed-rate tracker would count frames, not time). That time
is the capture time for a live camera, and the recording's own clock (frame index over its rate)
for a file or synthetic scene: a busy producer plays those slower than their rate, never skipping
a frame of them, so a frame read 0.6 s after the one before may show the world 0.1 s later, and a
Kalman filter run on read times would put a walking figure 0.5 s ahead of where it is, past the
IoU gate, and restart its track under a new id (issue 22: 4 ids for 3 figures under load).

One ByteTrack runs per label, so a track never changes class; the ids it hands out are mapped to
one counter per producer: integers from 1, unique within the epoch and never reused. A track the
tracker gives up (not matched for ``lost_after`` seconds of that time) is reported once, in
:attr:`Tracked.lost`, on the first frame processed after that.

``trackers`` is imported when a :class:`Tracker` is built (it takes ~2 s), so producers without
``--track`` never pay for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from framecast import wire

__all__ = ["Tracked", "Tracker"]

TRACKER_FPS = 30.0
"""The rate ``trackers`` counts its lost-track budget in: ``lost_after`` becomes whole frames of it."""


@dataclass(frozen=True, slots=True)
class Tracked:
    """One frame's detections with their track ids, and the tracks given up on this frame.

    Attributes:
        detections: The input detections, same order, each with ``track`` set once the tracker
            has confirmed it (None before: ByteTrack confirms a track on its second match).
        lost: Ids of tracks given up on this frame, with their label.
        active: Tracks alive after this frame (seen now, or coasting within ``lost_after``).
    """

    detections: tuple[wire.Detection, ...]
    lost: tuple[tuple[int, str], ...]
    active: int


class Tracker:
    """ByteTrack per label, with producer-wide ids.

    Args:
        lost_after: Seconds (of the frames' time) a track may go unmatched before it is given up;
            rounded to whole 1/30 s (the tracker's unit).
        confirm: Consecutive matches before a track gets an id.
        min_iou: Smallest IoU between a predicted box and a detection for a match.
    """

    def __init__(self, *, lost_after: float = 1.0, confirm: int = 2, min_iou: float = 0.1) -> None:
        from trackers import ByteTrackTracker  # heavy: only when tracking is on

        def factory() -> Any:
            return ByteTrackTracker(
                lost_track_buffer=max(0, round(lost_after * TRACKER_FPS)),
                frame_rate=TRACKER_FPS,
                # Every detection the predictor reported may start a track: the predictor already
                # applied its own threshold (--confidence), and a second one here would make
                # objects the producer publishes untrackable.
                track_activation_threshold=0.0,
                minimum_consecutive_frames=confirm,
                minimum_iou_threshold=min_iou,
            )

        self._factory = factory
        self.lost_after = max(0, round(lost_after * TRACKER_FPS)) / TRACKER_FPS
        """The effective budget in seconds (``lost_after`` rounded to 1/30 s)."""
        self._by_label: dict[str, Any] = {}
        self._ids: dict[tuple[str, int], int] = {}
        self._next = 1
        self._last_time: float | None = None

    def update(self, detections: Sequence[wire.Detection], captured_at: float) -> Tracked:
        """Match one frame's detections to tracks.

        Args:
            detections: What the predictor found on the frame.
            captured_at: The time the frame shows (seconds: its capture time, or its time on the
                recording's clock); frames come in that order.
        """
        import supervision as sv

        # A clock stepped back must not make the tracker skip the frame (it refuses times that
        # go backwards): time only moves forward here.
        if self._last_time is not None and captured_at <= self._last_time:
            captured_at = self._last_time + 1e-6
        self._last_time = captured_at
        out: list[wire.Detection] = list(detections)
        by_label: dict[str, list[int]] = {}
        for index, detection in enumerate(detections):
            by_label.setdefault(detection.label, []).append(index)
        for label in by_label.keys() - self._by_label.keys():
            self._by_label[label] = self._factory()
        for label, tracker in self._by_label.items():
            indices = by_label.get(label, [])
            if indices:
                found = sv.Detections(
                    xyxy=np.array([detections[i].box for i in indices], np.float32),
                    confidence=np.array([detections[i].confidence for i in indices], np.float32),
                    data={"index": np.array(indices)},
                )
            else:
                found = sv.Detections.empty()
            matched = tracker.update(found, timestamp=captured_at)
            if not len(matched):
                continue
            for index, local in zip(matched.data["index"].tolist(), matched.tracker_id.tolist(), strict=True):
                if local >= 0:
                    out[index] = replace(out[index], track=self._id(label, local))
        lost = self._forget_lost()
        return Tracked(tuple(out), lost, len(self._ids))

    def _id(self, label: str, local: int) -> int:
        key = (label, local)
        track = self._ids.get(key)
        if track is None:
            track = self._ids[key] = self._next
            self._next += 1
        return track

    def _forget_lost(self) -> tuple[tuple[int, str], ...]:
        """Ids whose track the tracker no longer holds (given up), dropped from the map."""
        alive = {
            (label, t.tracker_id)
            for label, tracker in self._by_label.items()
            for t in tracker.tracks
            if t.tracker_id >= 0
        }
        gone = [key for key in self._ids if key not in alive]
        lost = tuple((self._ids.pop(key), key[0]) for key in gone)
        return lost
