"""``python -m bench.video_fanout``: the gateway's video fan-out against JPEG previews, at N viewers.

One run, one scene: a real valkey, a real producer (synthetic scene, motion detector, ``--max-fps
15``, VP8 with a 2 s keyframe interval, previews at 5/s), one real gateway process, and load
clients (``bench.client``: raw sockets on one epoll, answering pings) opening N connections to
``/ws/default?video=1`` or ``?previews=1``. For each (mode, N), over the same window:

* bytes/s per viewer (everything a viewer reads: its pictures, results and statuses);
* pictures/s per viewer (binary messages: video frames or previews);
* gateway CPU (``/proc/<pid>/stat``) per delivered picture and per delivered MB;
* time to first picture of a joining client (its opening handshake -> its first binary message:
  for video, the keyframe of the gateway's current group of pictures). One viewer of both stays
  connected for the whole run, so the measured clients join a warm stream;
* capture -> paint: a sample of the N viewers (8; ``bench.video_sample``, spread across the
  join order) decodes every picture it receives, video with FFmpeg (PyAV), previews with
  OpenCV, and records capture -> decoded (ready to paint) per picture: p50/p95/p99, and its
  parts (the producer with its encoder, the gateway and the network, the decoder). The
  producer's own capture -> encoded (its ``encode_delay_seconds`` histogram) gives the encoder's
  share. The sample runs in its own client process; the gateway's CPU is read from its process.

From the bytes per viewer it derives the viewers one gateway serves when a 1 Gbit/s or a
10 Gbit/s link is the bound, next to the CPU bound (one core), and says which binds first.

Writes ``bench/results/video-fanout-<time>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from bench import machine
from bench.load import Load
from bench.procs import ROOT, Children, start_valkey, wait_http
from bench.video_latency import JOIN_SECONDS, Paced, Sample, sample_size, summarize
from framecast.local import launch
from framecast.local.embedded import free_port, wait_for_port

MODES = {"video": "video=1", "previews": "previews=1"}


@dataclass(frozen=True)
class VideoOptions:
    """One run: the audiences, the window per (mode, audience), the producer's codec."""

    viewers: tuple[int, ...] = (100, 1000)
    seconds: float = 10.0
    codec: str = "vp8"
    sample: int = 8
    """Viewers of each audience that decode what they receive (capture -> paint); 0: none."""


LINKS = {"1 Gbit/s": 1e9 / 8, "10 Gbit/s": 10e9 / 8}


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "_total "):
                return float(line.split()[-1])
    return 0.0


@dataclass(frozen=True)
class _Stack:
    children: Children
    gateway: int  # its port
    pid: int
    redis_url: str
    producer_metrics: int  # the producer's metrics port


_ENCODE_DELAY = "framecast_producer_video_encode_delay_seconds"


def _encoded(stack: _Stack) -> tuple[float, float]:
    """The producer's capture -> encoded so far: (seconds summed, frames)."""
    port = stack.producer_metrics
    return _metric(port, _ENCODE_DELAY + "_sum"), _metric(port, _ENCODE_DELAY + "_count")


def _measure(stack: _Stack, mode: str, viewers: int, seconds: float, sample: int) -> dict[str, Any]:
    children, pid = stack.children, stack.pid
    url = f"ws://127.0.0.1:{stack.gateway}/ws/default?{MODES[mode]}"
    decoding = sample_size(viewers, sample)
    sampled = None
    if decoding:
        sampled = Sample(
            children, url=url, mode=mode, viewers=decoding, redis_url=stack.redis_url,
            metrics=f"http://127.0.0.1:{stack.gateway}/metrics", spread=viewers - decoding,
        )  # fmt: skip
    # The load joins at a pace when a sample spreads among it (over JOIN_SECONDS, both processes).
    rate = (viewers - decoding) / JOIN_SECONDS / 2 if decoding else 0.0
    load = Load(
        cast(Children, Paced(children, rate)),
        url=url,
        connections=viewers - decoding,
        processes=2,
        nice=5,
        connect_timeout=120,
    )
    pids = load.pids
    if sampled is not None:
        sampled.connected()
        pids = [*pids, sampled.process.pid]
    time.sleep(3)  # past the joins (each client's first group of pictures comes in a burst)
    _mark(pids)
    cpu0, t0, encoded0 = machine.cpu_seconds(pid), time.monotonic(), _encoded(stack)
    time.sleep(seconds)  # the measurement window: the marks and the CPU readings bound it
    _mark(pids)
    cpu1, t1, encoded1 = machine.cpu_seconds(pid), time.monotonic(), _encoded(stack)
    records = load.finish(stop=True)
    samples = sampled.finish() if sampled is not None else None
    window = t1 - t0
    marks = [s["marks"] for s in records.summaries] + ([samples["marks"]] if samples else [])
    if any(len(m) != 2 for m in marks):
        raise RuntimeError(f"a load client missed a mark: {marks}")
    # Rates over each client's own marks (its clock read when it handled the signal).
    read = sum((m[1][1] - m[0][1]) / (m[1][0] - m[0][0]) for m in marks) * window
    pictures = sum((m[1][2] - m[0][2]) / (m[1][0] - m[0][0]) for m in marks) * window
    first = sorted(
        [x for s in records.summaries for x in s.get("first_binary_ms", [])]
        + (samples["first_picture_ms"] if samples else [])
    )
    cpu = cpu1 - cpu0
    frames = encoded1[1] - encoded0[1]
    return {
        "mode": mode,
        "viewers": viewers,
        "window_s": window,
        "bytes_per_viewer_s": read / viewers / window,
        "pictures_per_viewer_s": pictures / viewers / window,
        "results_per_viewer_s": len(records.seq) / viewers / window,
        "gateway_cpu_s": cpu,
        "gateway_cpu_share": cpu / window,
        "cpu_us_per_picture": cpu / pictures * 1e6 if pictures else None,
        "cpu_us_per_mb": cpu / read * 1e12 if read else None,
        "first_picture_ms_p50": statistics.median(first) if first else None,
        "first_picture_ms_p95": first[int(0.95 * (len(first) - 1))] if first else None,
        "first_picture_clients": len(first),
        # Capture -> decoded by the sampled viewers, and the producer's capture -> encoded (video).
        "latency": summarize(samples) if samples else None,
        "encode_delay_ms_mean": (encoded1[0] - encoded0[0]) / frames * 1e3 if frames else None,
    }


def _mark(pids: list[int]) -> None:
    """Every client process notes what it read so far (SIGUSR1)."""
    for pid in pids:
        os.kill(pid, signal.SIGUSR1)


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(options: VideoOptions, *, say: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """Measure every (audience, mode) of ``options`` in one run; returns the rows and the bounds."""
    viewers, seconds, codec = options.viewers, options.seconds, options.codec
    machine.raise_fd_limit(max(viewers) * 4 + 256)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="framecast-video-fanout-") as workdir, Children() as children:
        redis_url = start_valkey(children, workdir)
        producer = launch.Producer(
            redis_url=redis_url,
            source="synthetic",
            stream="default",
            detector="motion",
            log_level="warning",
            metrics_port=(producer_metrics := free_port()),
            args=(
                "--max-fps", "15", "--video-codec", codec, "--video-keyframe-interval", "2",
                "--preview-fps", "5",
            ),
        )  # fmt: skip
        children.launch(producer, stdout=False)
        port = free_port()
        spec = launch.Gateway(
            id="gw1",
            port=port,
            redis_url=redis_url,
            max_connections=max(viewers) * 2 + 100,
            log_level="warning",
            # A shared machine can hold the gateway's loop past the 3 s canary while 1000 viewers
            # join: not ready, it would answer the joins 503 and the run would measure nothing.
            args=("--ready-timeout", "30"),
        )
        gateway = children.launch(spec, stdout=False)
        wait_for_port(port, process=gateway, timeout=30)  # type: ignore[arg-type]
        wait_http(port)
        # One viewer of both for the whole run: the stream is warm (encoding, previews on), so a
        # measured client joins like any later viewer, not the first one that wakes the encoder.
        warm = Load(children, url=f"ws://127.0.0.1:{port}/ws/default?video=1&previews=1", connections=1)
        time.sleep(3)
        stack = _Stack(children, port, gateway.pid, redis_url, producer_metrics)
        for count in viewers:
            for mode in MODES:
                row = _measure(stack, mode, count, seconds, options.sample)
                rows.append(row)
                say(_line(row))
        warm.finish(stop=True)
    return {"codec": codec, "seconds": seconds, "rows": rows, "links": _links(rows)}


def _links(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Viewers per gateway when a link, or one core, is the bound (from the biggest audience)."""
    out = []
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        if not mine:
            continue
        row = max(mine, key=lambda r: r["viewers"])
        cpu_per_viewer = row["gateway_cpu_share"] / row["viewers"]  # cores per viewer
        entry: dict[str, Any] = {
            "mode": mode,
            "from_viewers": row["viewers"],
            "bits_per_viewer_s": row["bytes_per_viewer_s"] * 8,
            "cpu_bound_viewers": int(1 / cpu_per_viewer) if cpu_per_viewer else None,
        }
        for name, capacity in LINKS.items():
            entry[name] = int(capacity / row["bytes_per_viewer_s"])
        out.append(entry)
    return out


def _line(row: dict[str, Any]) -> str:
    def f(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    per_viewer = row["bytes_per_viewer_s"] / 1024
    share = row["gateway_cpu_share"] * 100
    return (
        f"{row['mode']:>8} {row['viewers']:>5} viewers: {per_viewer:7.1f} KiB/s/viewer, "
        f"{row['pictures_per_viewer_s']:5.1f} pictures/s, gateway {share:5.1f}% CPU, "
        f"{f(row['cpu_us_per_picture'], '.1f')} µs/picture, {f(row['cpu_us_per_mb'], '.0f')} µs/MB, "
        f"first picture p50 {f(row['first_picture_ms_p50'], '.0f')} ms "
        f"p95 {f(row['first_picture_ms_p95'], '.0f')} ms" + _latency_line(row)
    )


def _latency_line(row: dict[str, Any]) -> str:
    latency = row.get("latency")
    if not latency:
        return ""
    paint = latency["capture_to_paint_ms"]
    if paint["p50"] is None:
        return "; capture->paint: no picture decoded"
    parts = latency["parts_ms"]
    encoder = row.get("encode_delay_ms_mean") if row["mode"] == "video" else None
    return (
        f"; capture->paint ({latency['viewers']} decoding) p50 {paint['p50']:.1f} p95 {paint['p95']:.1f} "
        f"p99 {paint['p99']:.1f} ms [producer {parts['producer']['p50'] or 0:.1f}"
        + (f" (encoder {encoder:.1f})" if encoder else "")
        + f", gateway {parts['gateway']['p50'] or 0:.1f}, decode {parts['decode']['p50'] or 0:.1f} ms p50]"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.video_fanout", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--viewers", default="100,1000", help="Audiences to measure (comma-separated).")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="Measurement window per (mode, audience)."
    )
    parser.add_argument("--codec", default="vp8", help="The producer's --video-codec.")
    parser.add_argument(
        "--sample", type=int, default=8, help="Viewers of each audience that decode (capture -> paint)."
    )
    parser.add_argument(
        "--plot", default="", help="A folder to draw the capture -> paint plot (video_latency.png) into."
    )
    args = parser.parse_args(argv)
    viewers = tuple(int(v) for v in args.viewers.split(",") if v)
    options = VideoOptions(viewers=viewers, seconds=args.seconds, codec=args.codec, sample=args.sample)
    report = run(options)
    report["machine"] = machine.describe()
    if args.plot:
        from bench import report as bench_report
        from bench import video_report

        video_report.plot({"video": report}, Path(args.plot), bench_report.caption(report["machine"]))
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "bench" / "results" / f"video-fanout-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    for row in report["rows"]:
        print(_line(row))
    for entry in report["links"]:
        print(
            f"{entry['mode']:>8}: {entry['bits_per_viewer_s'] / 1e3:.0f} kbit/s per viewer -> "
            f"1 Gbit/s: {entry['1 Gbit/s']} viewers, 10 Gbit/s: {entry['10 Gbit/s']}, "
            f"one core (CPU bound): {entry['cpu_bound_viewers']}"
        )
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
