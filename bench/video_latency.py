"""Capture -> paint in the video bench: the decoding sample's process, and what its records say.

:class:`Sample` starts ``bench.video_sample`` (a few viewers that decode every picture they
receive, spread across the join order of the audience) beside the load clients, and
:func:`summarize` turns its records within a measurement window into the latency figures of a
row: capture -> decoded ("paint": the picture is ready to draw; the browser's compositing comes on
top) at p50/p95/p99, and its parts (capture -> on Redis: the producer, its encoder included;
on Redis -> read by the viewer: the gateway and the network; read -> decoded: the decoder).
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.procs import BenchError, Children, read_json_line

__all__ = ["JOIN_SECONDS", "Paced", "Sample", "sample_size", "summarize"]

JOIN_SECONDS = 2.0
"""How long the load clients take to join when a sample spreads among them (paced joins)."""


def sample_size(viewers: int, wanted: int) -> int:
    """Viewers of an audience of ``viewers`` that decode: ``wanted``, at most a quarter of them."""
    return min(wanted, max(1, viewers // 4)) if wanted else 0


class Paced:
    """:class:`~bench.procs.Children` for a :class:`~bench.load.Load` whose clients join at a pace.

    A burst of 1000 joins is over before the sample has placed a viewer or two: at
    ``rate`` connections/s per client process, the sample finds its evenly spaced places.
    """

    def __init__(self, children: Children, rate: float) -> None:
        self._children = children
        self._rate = rate

    def python(self, module: str, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        if module == "bench.client" and self._rate:
            args = [*args, "--connect-rate", f"{self._rate:g}"]
        return self._children.python(module, args, **kwargs)

    def stop(self, process: subprocess.Popen[str], **kwargs: Any) -> int:
        return self._children.stop(process, **kwargs)


class Sample:
    """The decoding viewers of one (mode, audience), in their own client process.

    Args:
        children: Where the process is registered.
        url: The URL every viewer opens.
        mode: ``video`` or ``previews``.
        viewers: How many decode.
        redis_url: The producer's Redis (the process taps the pictures' channel there).
        metrics: The gateway's ``/metrics`` URL.
        spread: Connections the load clients open after this starts (the viewers spread among them).
        nice: Niceness (the load clients' own).
    """

    def __init__(
        self,
        children: Children,
        *,
        url: str,
        mode: str,
        viewers: int,
        redis_url: str,
        metrics: str,
        spread: int,
        nice: int = 5,
    ) -> None:
        self._children = children
        self._dir = tempfile.TemporaryDirectory(prefix="framecast-video-sample-")
        self._out = Path(self._dir.name) / "sample.json"
        args = [
            "--url", url, "--mode", mode, "--viewers", str(viewers), "--redis-url", redis_url,
            "--metrics", metrics, "--spread", str(spread), "--out", str(self._out),
        ]  # fmt: skip
        self.process: subprocess.Popen[str] = children.python("bench.video_sample", args, nice=nice)
        read_json_line(self.process, 60, "video sample")  # {"ready": true}: its Redis tap listens

    def connected(self, timeout: float = 120.0) -> None:
        """Wait until every decoding viewer is connected."""
        read_json_line(self.process, timeout, "video sample")

    def finish(self) -> dict[str, Any]:
        """Stop it; what it recorded (see ``bench.video_sample``)."""
        self._children.stop(self.process, sig=signal.SIGTERM, timeout=30)
        try:
            return dict(json.loads(self._out.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise BenchError(
                f"video sample wrote no records (exit status {self.process.returncode})"
            ) from exc
        finally:
            self._dir.cleanup()


def _spread(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(values.max())}


def summarize(records: dict[str, Any]) -> dict[str, Any]:
    """The latency figures of the pictures the sample decoded between its first two marks (ms)."""
    marks = records["marks"]
    if len(marks) < 2:
        raise BenchError(f"the video sample missed a mark: {marks}")
    start, end = marks[0][0], marks[1][0]
    rows = [s for s in records["samples"] if start <= s[4] < end]
    viewer = np.array([s[0] for s in rows], dtype=np.int64)
    captured = np.array([s[1] for s in rows], dtype=np.float64)
    published = np.array([np.nan if s[2] is None else s[2] for s in rows], dtype=np.float64)
    received = np.array([s[3] for s in rows], dtype=np.float64)
    decoded = np.array([s[4] for s in rows], dtype=np.float64)
    tapped = ~np.isnan(published)
    paint = (decoded - captured) * 1e3
    by_viewer = [
        float(np.median(paint[viewer == index])) if np.any(viewer == index) else None
        for index in range(records["viewers"])
    ]
    return {
        "viewers": records["viewers"],
        # Load connections opened before each decoding viewer joined, and its own median.
        "places": records.get("places", []),
        "by_viewer_p50_ms": by_viewer,
        "pictures": int(paint.size),
        "capture_to_paint_ms": _spread(paint),
        "parts_ms": {
            "producer": _spread((published - captured)[tapped] * 1e3),
            "gateway": _spread((received - published)[tapped] * 1e3),
            "decode": _spread((decoded - received) * 1e3),
        },
        "decode_errors": records["decode_errors"],
        "skipped": records["skipped"],
        "cpu_share": (marks[1][3] - marks[0][3]) / (end - start),
    }
