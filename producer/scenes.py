"""Scripted scenes: figures on known paths, and a predictor that reports exactly where they are.

``--source synthetic:<scene>`` plays one of :data:`SCENES` at 30 fps, looping with its period.
Each frame carries its scene and index in a strip of black and white cells along its top-left
edge, so :class:`Truth` (``--detector producer.scenes:Truth``) reads them back and returns the
exact box of every figure on it: a detector without misses or noise, for demos and for tests
that expect exact events (``tests/integration/test_producer_events.py``). Any other detector
(``people``, ``motion``) sees the same drawn figures.

Frames are 640x480. A figure's box is ``(x - w/2, bottom - h, x + w/2, bottom)``; its bottom
centre, the default anchor of zones and lines, is ``(x, bottom)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framecast import wire
from producer.synthetic import draw_figure

__all__ = ["FPS", "HEIGHT", "SCENES", "WIDTH", "Actor", "Scene", "Truth", "render"]

WIDTH, HEIGHT = 640, 480
FPS = 30.0
_CELL = 4  # pixels per bit of the frame's code strip
_BITS = 32  # 8 bits of scene number, 24 of frame index within the period
_BACKGROUND = 190


@dataclass(frozen=True)
class Actor:
    """A figure walking straight between keyframes ``(frame, x, bottom)``, visible from the first
    keyframe to the last (frames of the scene's period)."""

    path: tuple[tuple[int, float, float], ...]
    height: float = 160.0
    label: str = "person"
    color: tuple[int, int, int] = (60, 45, 45)

    def where(self, frame: int) -> tuple[float, float] | None:
        """``(x, bottom)`` on ``frame``, or None when the figure is not in the picture."""
        first, last = self.path[0][0], self.path[-1][0]
        if not first <= frame <= last:
            return None
        for (f0, x0, y0), (f1, x1, y1) in zip(self.path, self.path[1:], strict=False):
            if f0 <= frame <= f1:
                t = 0.0 if f1 == f0 else (frame - f0) / (f1 - f0)
                return x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
        return self.path[-1][1], self.path[-1][2]

    def box(self, frame: int) -> tuple[float, float, float, float] | None:
        at = self.where(frame)
        if at is None:
            return None
        x, bottom = at
        half = self.height * 0.2
        return (x - half, bottom - self.height, x + half, bottom)


@dataclass(frozen=True)
class Scene:
    """A scripted scene: actors over a period of frames (then it starts again).

    Attributes:
        number: Its code in the frame strip (1-255).
        period: Frames before it repeats.
        actors: The figures.
        layout: A zones file (TOML) that fits it: what its tests and demos use.
    """

    number: int
    period: int
    actors: tuple[Actor, ...]
    layout: str = ""


def _walk(
    start: int, x0: float, x1: float, bottom: float, *, speed: float = 5.0
) -> tuple[tuple[int, float, float], ...]:
    frames = round(abs(x1 - x0) / speed)
    return ((start, x0, bottom), (start + frames, x1, bottom))


_LINE = """\
[lines.door]
points = [[320, 470], [320, 100]]
"""
_ZONE = """\
[zones.hall]
polygon = [[200, 250], [440, 250], [440, 470], [200, 470]]
"""

SCENES: dict[str, Scene] = {
    # Three figures cross the door line one at a time: left to right (in), back (out), again (in).
    "line": Scene(
        1,
        300,
        (
            Actor(_walk(0, 40, 600, 420)),
            Actor(_walk(95, 600, 40, 420)),
            Actor(_walk(190, 40, 600, 420)),
        ),
        _LINE,
    ),
    # Two figures of one class cross each other's path in the middle of the picture.
    "crossing": Scene(
        2,
        160,
        (
            Actor(_walk(0, 40, 600, 400)),
            Actor(_walk(0, 600, 40, 420), color=(45, 45, 90)),
        ),
        _LINE,
    ),
    # A figure walks into the hall, stands still for 3 s, walks on and out of it.
    "dwell": Scene(
        3,
        220,
        (Actor(((0, 60.0, 420.0), (48, 300.0, 420.0), (138, 300.0, 420.0), (194, 580.0, 420.0))),),
        _ZONE,
    ),
    # A figure walks into the hall and vanishes there (the detector never sees it again).
    "vanish": Scene(4, 100, (Actor(((0, 60.0, 420.0), (48, 300.0, 420.0))),), _ZONE),
    # A door at the top of the picture: people come in, cross the hall and go out again.
    "door": Scene(
        5,
        600,
        (
            Actor(((0, 200.0, 200.0), (60, 260.0, 440.0), (130, 610.0, 440.0)), height=150.0),
            Actor(((150, 420.0, 450.0), (210, 360.0, 250.0), (250, 340.0, 200.0)), height=150.0),
            Actor(
                ((300, 320.0, 200.0), (380, 160.0, 440.0), (410, 30.0, 440.0)),
                height=150.0,
                color=(45, 45, 90),
            ),
            Actor(((420, 560.0, 440.0), (500, 300.0, 260.0), (540, 280.0, 200.0)), height=150.0),
        ),
        """\
[lines.door]
points = [[100, 300], [540, 300]]
labels = ["person"]

[zones.hall]
polygon = [[100, 320], [540, 320], [540, 475], [100, 475]]
labels = ["person"]
""",
    ),
}
_BY_NUMBER = {scene.number: (name, scene) for name, scene in SCENES.items()}


def render(scene: Scene, index: int) -> np.ndarray:
    """Frame ``index`` (counted from the start, any size) of ``scene``: a new BGR array."""
    frame = np.full((HEIGHT, WIDTH, 3), _BACKGROUND, np.uint8)
    frame[:, :, 0] = np.linspace(_BACKGROUND - 20, _BACKGROUND + 20, WIDTH, dtype=np.uint8)[None, :]
    at = index % scene.period
    for actor in scene.actors:
        where = actor.where(at)
        if where is not None:
            draw_figure(
                frame, x=where[0], top=where[1] - actor.height, height=actor.height, color=actor.color
            )
    _stamp(frame, scene.number, at)
    return frame


def _stamp(frame: np.ndarray, number: int, index: int) -> None:
    code = (number << 24) | (index & 0xFFFFFF)
    for bit in range(_BITS):
        on = (code >> (_BITS - 1 - bit)) & 1
        frame[0:_CELL, bit * _CELL : (bit + 1) * _CELL] = 255 if on else 0


def read_stamp(frame: np.ndarray) -> tuple[Scene, int] | None:
    """The scene and frame (within its period) a frame was rendered for, or None."""
    if frame.ndim != 3 or frame.shape[0] < _CELL or frame.shape[1] < _BITS * _CELL:
        return None
    cells = frame[_CELL // 2, _CELL // 2 : _BITS * _CELL : _CELL].mean(axis=1)
    if np.any((cells > 60) & (cells < 195)):
        return None  # not a clean code strip: some other picture
    code = 0
    for value in cells:
        code = (code << 1) | int(value >= 128)
    found = _BY_NUMBER.get(code >> 24)
    if found is None:
        return None
    return found[1], code & 0xFFFFFF


class Truth:
    """The predictor of scripted scenes: every visible figure's exact box, confidence 0.9.

    Frames that are not from a scripted scene give nothing.
    """

    def __call__(self, frame: np.ndarray) -> list[wire.Detection]:
        found = read_stamp(frame)
        if found is None:
            return []
        scene, index = found
        out = []
        for actor in scene.actors:
            box = actor.box(index)
            if box is not None:
                out.append(wire.Detection(label=actor.label, confidence=0.9, box=box))
        return out


def scene_named(name: str) -> Scene:
    """The scene called ``name``.

    Raises:
        KeyError: No such scene (the message lists them).
    """
    try:
        return SCENES[name]
    except KeyError:
        raise KeyError(f"no scripted scene {name!r} (known: {', '.join(SCENES)})") from None
