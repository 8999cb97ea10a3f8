"""Part 4: the tracker's cost per frame, and its share of a real predictor's time.

The tracker (``producer.tracking.Tracker``: ByteTrack per label) and the whole per-frame analysis
(``producer.analytics.Analyzer``: the tracker plus one zone and one line) are fed generated
detections: N objects of one class moving at constant speed in a 1920x1080 frame and bouncing off
its edges, box noise of 1.5 px, 5 % of detections missed, frames 1/15 s apart (a producer at
``--max-fps 15``). Per N: wall time per frame (percentiles), CPU time per frame (process time over
all frames), and identity switches (a generated object whose track id changes).

The target of issue 22 is a ratio measured side by side in this run: tracking 50 detections
adds under 10 % to the built-in ``people`` detector's own CPU time per 640x480 frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.stats import percentiles
from framecast import wire

__all__ = ["TrackingOptions", "run"]

FPS = 15.0
WIDTH, HEIGHT = 1920, 1080


@dataclass(frozen=True, kw_only=True)
class TrackingOptions:
    """What part 6 runs (see ``python -m bench --help``)."""

    detections: tuple[int, ...] = (10, 50, 200)
    frames: int = 600
    people_seconds: float = 3.0
    ratio_at: int = 50


def scene(count: int, frames: int, *, seed: int = 1) -> list[tuple[list[wire.Detection], np.ndarray]]:
    """``frames`` frames of ``count`` moving objects: the detections and which object each is."""
    rng = np.random.default_rng(seed)
    size = np.column_stack([rng.uniform(30, 50, count), rng.uniform(60, 100, count)])
    pos = np.column_stack([rng.uniform(0, WIDTH - 60, count), rng.uniform(0, HEIGHT - 110, count)])
    vel = rng.uniform(-6, 6, (count, 2))
    out = []
    for _ in range(frames):
        pos += vel
        for axis, limit in ((0, WIDTH), (1, HEIGHT)):
            over = (pos[:, axis] < 0) | (pos[:, axis] + size[:, axis] > limit)
            vel[over, axis] *= -1
            pos[:, axis] = np.clip(pos[:, axis], 0, limit - size[:, axis])
        boxes = np.clip(np.column_stack([pos, pos + size]) + rng.normal(0, 1.5, (count, 4)), 0, None)
        keep = np.nonzero(rng.random(count) >= 0.05)[0]
        confidence = np.where(rng.random(len(keep)) < 0.8, 0.9, 0.5)
        detections = [
            wire.Detection(
                label="person",
                confidence=float(c),
                box=(float(b[0]), float(b[1]), max(float(b[0]), float(b[2])), max(float(b[1]), float(b[3]))),
            )
            for b, c in zip(boxes[keep], confidence, strict=True)
        ]
        out.append((detections, keep))
    return out


def _switches(frames: list[tuple[np.ndarray, list[int | None]]]) -> int:
    """Times an object's track id changed from one frame where it had one to the next."""
    last: dict[int, int] = {}
    switches = 0
    for objects, tracks in frames:
        for obj, track in zip(objects.tolist(), tracks, strict=True):
            if track is None:
                continue
            if obj in last and last[obj] != track:
                switches += 1
            last[obj] = track
    return switches


def _measure(step: Callable[[list[wire.Detection], float], Any], frames: list[Any]) -> dict[str, Any]:
    warm = min(30, len(frames) // 5)
    times: list[float] = []
    tracked: list[tuple[np.ndarray, list[int | None]]] = []
    cpu_start = time.process_time()
    for index, (detections, objects) in enumerate(frames):
        before = time.perf_counter()
        out = step(detections, 1000.0 + index / FPS)
        times.append(time.perf_counter() - before)
        tracked.append((objects, [d.track for d in out.detections]))
        if index == warm - 1:
            cpu_start = time.process_time()
    cpu = time.process_time() - cpu_start
    counted = max(1, len(frames) - warm)
    return {
        "ms_per_frame": percentiles(times[warm:], scale=1e3),
        "cpu_ms_per_frame": round(cpu / counted * 1e3, 3),
        "id_switches": _switches(tracked),
        "frames": counted,
    }


def _people_cpu(seconds: float) -> dict[str, Any]:
    """The built-in people detector's own time per 640x480 frame of the synthetic scene."""
    from producer import detectors
    from producer.synthetic import Scene

    predictor = detectors.load("people")
    scene_ = Scene()
    images = [scene_.render(i) for i in range(30)]
    for image in images[:3]:
        predictor(image)
    times: list[float] = []
    found = 0
    cpu_start = time.process_time()
    end = time.perf_counter() + seconds
    index = 0
    while (time.perf_counter() < end or index < 10) and index < 2000:
        before = time.perf_counter()
        found += len(predictor(images[index % len(images)]))
        times.append(time.perf_counter() - before)
        index += 1
    cpu = time.process_time() - cpu_start
    return {
        "ms_per_frame": percentiles(times, scale=1e3),
        "cpu_ms_per_frame": round(cpu / len(times) * 1e3, 3),
        "detections_per_frame": round(found / len(times), 2),
        "frames": len(times),
    }


def run(options: TrackingOptions, *, say: Callable[[str], None]) -> dict[str, Any]:
    """Run part 6; returns the per-N figures, the analysis at ``ratio_at`` and the ratio."""
    from framecast.zones import Layout, Line, Zone
    from producer.analytics import Analyzer
    from producer.tracking import Tracker

    out: dict[str, Any] = {"tracker": [], "options": {"fps": FPS, "frame": [WIDTH, HEIGHT]}}
    for count in options.detections:
        say(f"tracking: {count} detections per frame")
        frames = scene(count, options.frames)
        entry = {"detections": count, **_measure(Tracker(lost_after=1.0).update, frames)}
        out["tracker"].append(entry)
        say(
            f"  {entry['ms_per_frame']['p50']} ms/frame p50, {entry['cpu_ms_per_frame']} CPU ms/frame, "
            f"{entry['id_switches']} id switches"
        )
    layout = Layout(
        zones=(Zone(name="hall", polygon=((0.0, 0.0), (960.0, 0.0), (960.0, 1080.0), (0.0, 1080.0))),),
        lines=(Line(name="door", points=((960.0, 0.0), (960.0, 1080.0))),),
    )
    analyzer = Analyzer(layout, lost_after=1.0)
    frames = scene(options.ratio_at, options.frames)
    analysis = _measure(lambda d, t: analyzer.step(d, t, WIDTH, HEIGHT), frames)
    out["analysis"] = {"detections": options.ratio_at, **analysis}
    say(f"tracking: zone + line at {options.ratio_at}: {analysis['cpu_ms_per_frame']} CPU ms/frame")
    say("tracking: the people detector alone")
    people = _people_cpu(options.people_seconds)
    out["people"] = people
    at = next((e for e in out["tracker"] if e["detections"] == options.ratio_at), None)
    if at is not None and people["cpu_ms_per_frame"]:
        out["ratio"] = {
            "tracker": round(at["cpu_ms_per_frame"] / people["cpu_ms_per_frame"], 4),
            "analysis": round(analysis["cpu_ms_per_frame"] / people["cpu_ms_per_frame"], 4),
            "target": 0.10,
        }
        ratio = out["ratio"]
        say(
            f"  people {people['cpu_ms_per_frame']} CPU ms/frame; tracking {options.ratio_at} detections "
            f"adds {ratio['tracker'] * 100:.1f} % (with a zone and a line: {ratio['analysis'] * 100:.1f} %)"
        )
    return out
