"""``python -m bench.video``: what one viewer's picture costs in bytes, video against previews.

Producer side only (the gateway's video fan-out is measured with the gateway): a real valkey, a
real producer on the synthetic scene (motion detector, ``--max-fps 15``) and a Redis subscriber
standing where a gateway stands. For each codec, in one run and on the same scene:

* bytes/s of the encoded video at the producer's rate (15 fps), as a viewer receives them
  (``FCV1`` messages, framing included), against today's JPEG previews at 5 fps (``FCP1``);
* the encoder's delay: capture -> the encoded frame on Redis, against capture -> the result
  on Redis for the same frames (what video adds over the predictions);
* keyframe size and the share of bytes keyframes take.

Writes ``bench/results/video-<time>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis

from bench.procs import ROOT, Children
from framecast import wire
from framecast.local.embedded import free_port, valkey_command, wait_for_port

CODECS = ("vp8", "vp9", "h264", "av1")


class _Tap:
    """Every message of a stream's channels with its arrival time (a thread)."""

    def __init__(self, url: str, channels: Sequence[str]) -> None:
        self._client = redis.Redis.from_url(url)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._pubsub.subscribe(*channels)
        self.heard: list[tuple[float, bytes, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if message and message["type"] == "message":
                self.heard.append((time.time(), message["channel"], message["data"]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()
        self._client.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def measure(codec: str, *, seconds: float, warmup: float, bitrate: int) -> dict[str, Any]:
    """One producer with ``codec``: video and previews watched at once for ``seconds``."""
    with tempfile.TemporaryDirectory(prefix="framecast-bench-video-") as workdir, Children() as children:
        port = free_port()
        children.start(valkey_command(port, workdir=workdir), stdout=False)
        wait_for_port(port, timeout=10)
        url = f"redis://127.0.0.1:{port}/0"
        children.python(
            "producer",
            ["--redis-url", url, "--video-codec", codec, "--video-bitrate", str(bitrate), "--max-fps", "15",
             "--preview-fps", "5", "--log-level", "WARNING"],
            stdout=False,
        )  # fmt: skip
        stream = "default"
        tap = _Tap(url, [wire.channel(stream), wire.video_channel(stream), wire.preview_channel(stream)])
        try:
            time.sleep(warmup + seconds)
        finally:
            tap.close()
    start = tap.heard[0][0] + warmup if tap.heard else 0.0
    window = [(t, c.decode(), d) for t, c, d in tap.heard if start <= t < start + seconds]
    video = [(t, wire.decode_video(d), len(d)) for t, c, d in window if c == wire.video_channel(stream)]
    previews = [len(d) for _, c, d in window if c == wire.preview_channel(stream)]
    results = {}
    for t, c, d in window:
        if c == wire.channel(stream):
            message = wire.decode(d)
            if isinstance(message, wire.Result):
                results[message.frame] = t - message.captured_at
    keys = [size for _, f, size in video if f.key]
    video_delay = [(t - f.captured_at) * 1000 for t, f, _ in video]
    result_delay = [results[f.frame] * 1000 for _, f, _ in video if f.frame in results]
    return {
        "codec": codec,
        "bitrate_kbit": bitrate,
        "seconds": seconds,
        "video_fps": len(video) / seconds,
        "video_bytes_per_s": sum(size for _, _, size in video) / seconds,
        "keyframes": len(keys),
        "keyframe_bytes_mean": statistics.mean(keys) if keys else 0,
        "keyframe_share": sum(keys) / max(1, sum(size for _, _, size in video)),
        "preview_fps": len(previews) / seconds,
        "preview_bytes_per_s": sum(previews) / seconds,
        "preview_bytes_mean": statistics.mean(previews) if previews else 0,
        "capture_to_video_ms_p50": _percentile(video_delay, 0.5),
        "capture_to_video_ms_p95": _percentile(video_delay, 0.95),
        "capture_to_result_ms_p50": _percentile(result_delay, 0.5),
        "capture_to_result_ms_p95": _percentile(result_delay, 0.95),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.video", description=__doc__.split("\n\n")[0])
    parser.add_argument("--codecs", default=",".join(CODECS), help="comma-separated (default: all four)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per codec")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the window opens")
    parser.add_argument("--bitrate", type=int, default=500, help="--video-bitrate, kbit/s")
    args = parser.parse_args(argv)
    rows = [
        measure(codec, seconds=args.seconds, warmup=args.warmup, bitrate=args.bitrate)
        for codec in args.codecs.split(",")
    ]
    print(
        f"{'codec':6} {'video fps':>9} {'KiB/s':>7} {'previews fps':>12} {'KiB/s':>7} {'ratio':>6}"
        f" {'key KiB':>8} {'key share':>9} {'cap->video p50/p95 ms':>22} {'cap->result p50/p95 ms':>23}"
    )
    for r in rows:
        ratio = r["preview_bytes_per_s"] / max(1.0, r["video_bytes_per_s"])
        video_kib, preview_kib = r["video_bytes_per_s"] / 1024, r["preview_bytes_per_s"] / 1024
        print(
            f"{r['codec']:6} {r['video_fps']:9.1f} {video_kib:7.1f} {r['preview_fps']:12.1f}"
            f" {preview_kib:7.1f} {ratio:5.2f}x {r['keyframe_bytes_mean'] / 1024:8.1f}"
            f" {r['keyframe_share']:9.0%} {r['capture_to_video_ms_p50']:10.1f}"
            f" / {r['capture_to_video_ms_p95']:<9.1f}"
            f" {r['capture_to_result_ms_p50']:11.1f} / {r['capture_to_result_ms_p95']:<9.1f}"
        )
    out = ROOT / "bench" / "results" / f"video-{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "argv": list(argv or sys.argv[1:])}, indent=2))
    print(f"saved {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
