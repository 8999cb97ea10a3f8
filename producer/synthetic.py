"""A generated camera: a deterministic scene every built-in detector finds something in.

Frame ``i`` is a pure function of ``i`` and the seed, so tests know what each frame holds:
a bouncing square and a circle on an ellipse (``motion``), a figure walking left and right
(``people``, and ``motion``), and a still QR code (``qr``). The background has fixed texture and no
per-frame noise, so a still scene really is still.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["QR_TEXT", "Scene", "draw_figure"]

QR_TEXT = "framecast"
"""What the scene's QR code says."""


def draw_figure(
    canvas: np.ndarray, *, x: float, top: float, height: float, color: tuple[int, int, int]
) -> None:
    """Draw a standing human silhouette (head, torso, arms, legs) that HOG recognises as a person.

    Args:
        canvas: BGR image drawn on in place.
        x: Horizontal centre in pixels.
        top: Top of the head in pixels.
        height: Head-to-feet height in pixels (HOG needs at least ~100 at the scale it runs).
        color: BGR fill colour.
    """
    u = height / 8.0  # head units: a figure is eight heads tall

    def pt(dx: float, dy: float) -> tuple[int, int]:
        return round(x + dx * u), round(top + dy * u)

    cv2.circle(canvas, pt(0, 0.5), round(u * 0.5), color, -1, cv2.LINE_AA)
    cv2.rectangle(canvas, pt(-0.25, 1.0), pt(0.25, 1.2), color, -1)
    torso = np.array([pt(-1.0, 1.2), pt(1.0, 1.2), pt(0.8, 4.2), pt(-0.8, 4.2)], np.int32)
    cv2.fillPoly(canvas, [torso], color, cv2.LINE_AA)
    for side in (-1, 1):
        cv2.line(
            canvas, pt(side * 1.0, 1.4), pt(side * 1.3, 4.2), color, max(1, round(u * 0.45)), cv2.LINE_AA
        )
        cv2.line(
            canvas, pt(side * 0.45, 4.1), pt(side * 0.6, 7.9), color, max(1, round(u * 0.6)), cv2.LINE_AA
        )


class Scene:
    """Renders frame ``i`` of the synthetic scene.

    Args:
        width: Frame width in pixels.
        height: Frame height in pixels.
        seed: Seed of the background texture.
        still: Render every frame as frame 0 (a camera looking at nothing moving).
    """

    def __init__(self, *, width: int = 640, height: int = 480, seed: int = 0, still: bool = False) -> None:
        self.width = width
        self.height = height
        self.still = still
        rng = np.random.default_rng(seed)
        ramp = np.linspace(150, 210, width, dtype=np.float32)[None, :, None]
        texture = rng.normal(0.0, 6.0, (height, width, 1)).astype(np.float32)
        tint = np.array([1.0, 0.97, 0.92], np.float32)[None, None, :]
        self._background: np.ndarray = np.clip((ramp + texture) * tint, 0, 255).astype(np.uint8)
        code = cv2.QRCodeEncoder.create().encode(QR_TEXT)
        side = max(21, min(width, height) // 4)
        module = max(1, side // code.shape[0])
        qr = cv2.resize(code, None, fx=module, fy=module, interpolation=cv2.INTER_NEAREST)
        qr = cv2.copyMakeBorder(qr, 8, 8, 8, 8, cv2.BORDER_CONSTANT, value=255)
        qh, qw = qr.shape
        if qh + 10 <= height and qw + 10 <= width:
            self._background[10 : 10 + qh, width - 10 - qw : width - 10] = cv2.cvtColor(
                qr, cv2.COLOR_GRAY2BGR
            )

    def render(self, index: int) -> np.ndarray:
        """The BGR frame number ``index`` (a new array each call)."""
        t = 0 if self.still else index
        w, h = self.width, self.height
        frame: np.ndarray = self._background.copy()
        # A square bouncing off the walls: a triangle wave in x and y.
        side = max(8, min(w, h) // 8)
        x = _bounce(t * 4, w - side)
        y = _bounce(t * 3 + h // 3, h - side)
        cv2.rectangle(frame, (x, y), (x + side, y + side), (40, 90, 220), -1)
        # A circle on an ellipse.
        angle = t * 2 * math.pi / 150
        cx = round(w * 0.3 + w * 0.18 * math.cos(angle))
        cy = round(h * 0.7 + h * 0.15 * math.sin(angle))
        cv2.circle(frame, (cx, cy), max(6, min(w, h) // 16), (60, 170, 60), -1, cv2.LINE_AA)
        # A figure walking across and back.
        figure = h * 0.62
        fx = figure * 0.2 + _bounce(t * 2, round(w - figure * 0.4))
        draw_figure(frame, x=fx, top=h * 0.3, height=figure, color=(60, 45, 45))
        return frame


def _bounce(position: int, span: int) -> int:
    """Triangle wave: ``position`` folded into ``0..span``."""
    if span <= 0:
        return 0
    period = 2 * span
    p = position % period
    return p if p <= span else period - p
