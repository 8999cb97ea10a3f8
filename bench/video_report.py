"""The video part's section of the report, and its plot (``perf/video_latency.png``).

Reads the ``video`` entry of the results (:func:`bench.video_fanout.run`); nothing is measured.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["PLOT", "plot", "section"]

PLOT = "video_latency.png"
"""The plot this section links to (in ``perf/`` beside the markdown), drawn when the part ran."""

_LABELS = {"video": "video", "previews": "previews (JPEG)"}
_NONE = "\u2013"


def _ms(value: Any) -> str:
    return _NONE if value is None or not math.isfinite(value) else f"{value:.1f}"


def _rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    video = results.get("video")
    return [r for r in video.get("rows", []) if r.get("latency")] if isinstance(video, dict) else []


def section(results: dict[str, Any]) -> list[str]:
    """The markdown section (empty when the video part did not run)."""
    video = results.get("video")
    if not isinstance(video, dict) or not video.get("rows"):
        return []
    codec = video.get("codec", "?")
    lines = [
        "## Video against JPEG previews (`--parts video`)",
        "",
        f"One producer (synthetic scene, 15 fps, {codec.upper()} with a 2 s keyframe interval, previews at "
        "5/s), one gateway, N viewers of each in turn (`python -m bench.video_fanout`; "
        "[capacity.md](capacity.md#bandwidth-video-previews-and-the-link)).",
        "",
        "| picture | viewers | KiB/s per viewer | pictures/s | gateway CPU per picture | first picture p95 "
        "| capture→paint p50 / p95 / p99 | producer / gateway / decode (p50) | decoding viewers |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in video["rows"]:
        latency = row.get("latency") or {}
        paint = latency.get("capture_to_paint_ms", {})
        parts = latency.get("parts_ms", {})
        encoder = row.get("encode_delay_ms_mean") if row["mode"] == "video" else None
        producer = _ms(parts.get("producer", {}).get("p50")) + (f" (enc. {encoder:.1f})" if encoder else "")
        lines.append(
            f"| {_LABELS.get(row['mode'], row['mode'])} | {row['viewers']} "
            f"| {row['bytes_per_viewer_s'] / 1024:.1f} | {row['pictures_per_viewer_s']:.1f} "
            f"| {_ms(row.get('cpu_us_per_picture'))} µs | {_ms(row.get('first_picture_ms_p95'))} ms "
            f"| {_ms(paint.get('p50'))} / {_ms(paint.get('p95'))} / {_ms(paint.get('p99'))} ms "
            f"| {producer} / {_ms(parts.get('gateway', {}).get('p50'))} "
            f"/ {_ms(parts.get('decode', {}).get('p50'))} ms | {latency.get('viewers', 0)} |"
        )
    lines += [
        "",
        "**Capture→paint** is measured by a sample of each audience (`bench.video_sample`, spread across "
        "the gateway's join order) that decodes every picture it receives, as a viewer does: video with "
        "FFmpeg's decoder (PyAV, one thread, chains from a keyframe only), previews with OpenCV's JPEG "
        'decoder. "Paint" here is the picture decoded and ready to draw; a browser adds its compositing '
        "step (measured in Chromium: docs/video.md). Its parts: *producer* is capture → the picture on "
        "Redis (for video the encoder's delay included; *enc.* is the producer's own mean capture → "
        "encoded; for previews the prediction and the JPEG encoding), *gateway* is Redis → read by the "
        "viewer (the fan-out pass and the network), *decode* is read → decoded. The decoding viewers run "
        "in a client process of their own: the gateway's CPU is read from the gateway's process only.",
        "",
        f"![capture to paint](perf/{PLOT})",
        "",
    ]
    return lines


def plot(results: dict[str, Any], directory: Path, note: str) -> None:
    """Draw ``directory / PLOT`` (nothing when the part did not run)."""
    rows = _rows(results)
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{_LABELS.get(r['mode'], r['mode'])}\n{r['viewers']} viewers" for r in rows]
    xs = range(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    width = 0.27
    for offset, (key, color) in enumerate((("p50", "#1b7837"), ("p95", "#e08214"), ("p99", "#b2182b"))):
        values = [r["latency"]["capture_to_paint_ms"].get(key) for r in rows]
        axes[0].bar(
            [x + (offset - 1) * width for x in xs],
            [math.nan if v is None else v for v in values],
            width,
            label=key,
            color=color,
        )
    axes[0].set_xticks(list(xs), names, fontsize=8)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("ms (log scale)")
    axes[0].set_title("capture → decoded (ready to paint)")
    axes[0].legend(fontsize=8)
    axes[0].grid(axis="y", alpha=0.3)
    bottom = [0.0] * len(rows)
    parts = (("producer", "producer (encoder incl.)", "#2166ac"), ("gateway", "Redis → viewer", "#7fbc41"),
             ("decode", "decode", "#999999"))  # fmt: skip
    medians = [[r["latency"]["parts_ms"][key].get("p50") or 0.0 for key, _, _ in parts] for r in rows]
    totals = [sum(m) or 1.0 for m in medians]
    for index, (_key, label, color) in enumerate(parts):
        shares = [m[index] / t * 100 for m, t in zip(medians, totals, strict=True)]
        axes[1].bar(list(xs), shares, 0.5, bottom=bottom, label=label, color=color)
        for x, share, base, m in zip(xs, shares, bottom, medians, strict=True):
            if share > 7:
                axes[1].text(x, base + share / 2, f"{m[index]:.1f} ms", ha="center", va="center", fontsize=7)
        bottom = [b + v for b, v in zip(bottom, shares, strict=True)]
    axes[1].set_xticks(list(xs), names, fontsize=8)
    axes[1].set_ylabel("% of the sum of the medians")
    axes[1].set_title("its parts: medians, and their shares")
    axes[1].legend(fontsize=8)
    axes[1].grid(axis="y", alpha=0.3)
    fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    directory.mkdir(parents=True, exist_ok=True)
    fig.savefig(directory / PLOT, dpi=110)
    plt.close(fig)
