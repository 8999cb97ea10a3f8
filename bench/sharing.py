"""Part ``shared``: N cameras on one machine, each loading its own model, or one shared worker.

Real processes throughout: a valkey, N ``python -m producer`` on synthetic 640x480 cameras at
``--max-fps`` (demand off, no previews) and, for the shared modes, one ``python -m
producer.inference``. After every camera's first result and a warm-up, one window of
``seconds``; then, per mode:

* **RSS**: the resident memory of every process of the mode, added up, at the window's end;
* **predictions/s per camera**: results published in the window, per camera;
* **CPU per prediction**: CPU seconds of every process of the mode (producers and worker) in the
  window, over the predictions published in it;
* **capture->publish**: ``published_at - captured_at`` of those results, p50 and p99.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import machine, models
from bench.procs import BenchError, Children, start_valkey
from bench.stats import percentiles
from framecast import wire
from framecast.local import launch
from framecast.local.embedded import free_port

__all__ = ["MODES", "SharingOptions", "run"]

MODES: dict[str, dict[str, Any]] = {
    "separate": {"shared": False, "threads": 0},
    "separate, 1 thread each": {"shared": False, "threads": 1},
    "shared": {"shared": True, "max_batch": 8, "concurrency": 1},
    "shared, 2 inferences at once": {"shared": True, "max_batch": 8, "concurrency": 2},
    "shared, no batching": {"shared": True, "max_batch": 1, "concurrency": 1},
}
"""Each mode: its own model per producer (onnxruntime's default threads, or one each), or one
shared worker batching up to 8 frames (or 1: the same worker without batching), one inference
at a time or two."""


@dataclass(frozen=True, kw_only=True)
class SharingOptions:
    """What part ``shared`` runs (see ``python -m bench --help``)."""

    model: str = "yolov8n"
    cameras: int = 4
    fps: float = 15.0
    modes: tuple[str, ...] = tuple(MODES)
    warmup: float = 8.0
    seconds: float = 20.0
    batch_wait: float = 0.010


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"shared: {what} did not happen within {timeout:.0f} s")
        time.sleep(0.2)


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


def _results(redis: Any, stream: str) -> list[wire.Result]:
    entries = redis.xrange(wire.history_key(stream))
    decoded = [wire.decode(fields[wire.HISTORY_FIELD.encode()]) for _, fields in entries or ()]
    return [r for r in decoded if isinstance(r, wire.Result)]


def _batches(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        for name in ("framecast_inference_batch_size_sum", "framecast_inference_batch_size_count"):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    count = values.get("framecast_inference_batch_size_count", 0.0)
    return {
        "batches": count,
        "mean_batch": round(values.get("framecast_inference_batch_size_sum", 0.0) / count, 2)
        if count
        else 0.0,
    }


def _mode(
    name: str, options: SharingOptions, model: str, redis_url: str, workdir: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    import redis as redis_py

    mode = MODES[name]
    tag = "".join(c if c.isalnum() else "-" for c in name)
    streams = [f"{tag}-cam{i}" for i in range(options.cameras)]
    with Children() as children:
        pids: list[int] = []
        shared_args: list[str] = []
        metrics_port = 0
        if mode["shared"]:
            path = workdir / f"{tag}.sock"
            metrics_port = free_port()
            worker = children.launch(
                launch.Inference(
                    socket=str(path),
                    metrics_port=metrics_port,
                    args=(
                        *("--detector", f"onnx:{model}", "--max-batch", str(mode["max_batch"])),
                        *("--batch-wait", str(options.batch_wait), "--concurrency", str(mode["concurrency"])),
                    ),
                ),
                stdout=False,
            )
            _wait(lambda: _listening(path) or worker.poll() is not None, 120, "the worker's socket")
            if worker.poll() is not None:
                raise BenchError(f"shared: the inference worker exited with status {worker.returncode}")
            pids.append(worker.pid)
            shared_args = ["--predictor-socket", str(path)]
        for stream in streams:
            own = ["--detector", f"onnx:{model}", "--threads", str(mode.get("threads", 0))]
            producer = children.launch(
                launch.Producer(
                    redis_url=redis_url,
                    stream=stream,
                    source="synthetic",
                    args=(
                        *("--no-demand", "--max-fps", f"{options.fps:g}", "--preview-fps", "0"),
                        *("--history", "100000", *(shared_args or own)),
                    ),
                ),
                stdout=False,
            )
            pids.append(producer.pid)
        client = redis_py.Redis.from_url(redis_url)
        try:
            _wait(
                lambda: (
                    all(client.xlen(wire.history_key(s)) for s in streams)
                    or any(children_exited(children_pids=pids))
                ),
                180,
                "every camera's first result",
            )
            time.sleep(options.warmup)
            cpu_before = sum(machine.cpu_seconds(p) for p in pids)
            start = time.time()
            batches_before = _batches(metrics_port) if metrics_port else {}
            time.sleep(options.seconds)
            end = time.time()
            cpu = sum(machine.cpu_seconds(p) for p in pids) - cpu_before
            rss = sum(machine.rss_bytes(p) for p in pids)
            batches_after = _batches(metrics_port) if metrics_port else {}
            per_camera, latencies = [], []
            for stream in streams:
                window = [r for r in _results(client, stream) if start <= r.published_at < end]
                per_camera.append(len(window) / (end - start))
                latencies += [r.published_at - r.captured_at for r in window]
        finally:
            client.close()
    predictions = sum(per_camera) * (end - start)
    entry: dict[str, Any] = {
        "mode": name,
        "processes": len(pids),
        "rss_mb": round(rss / 1e6, 1),
        "predictions_per_s_per_camera": [round(v, 2) for v in per_camera],
        "predictions_per_s_per_camera_mean": round(float(np.mean(per_camera)), 2),
        "cpu_ms_per_prediction": round(cpu / predictions * 1e3, 2) if predictions else None,
        "cpu_cores": round(cpu / (end - start), 2),
        "capture_to_publish_ms": percentiles(latencies, scale=1e3),
        # Other work on the machine takes CPU from a mode with few threads more than from one with
        # many: a high load average makes predictions/s a statement about that, not the design.
        "load_average": round(os.getloadavg()[0], 2),
    }
    if batches_after:
        count = batches_after["batches"] - batches_before.get("batches", 0.0)
        entry["batches_per_s"] = round(count / (end - start), 2)
        entry["mean_batch"] = round(predictions / count, 2) if count else None
    say(
        f"  {name}: {entry['rss_mb']} MB RSS, {entry['predictions_per_s_per_camera_mean']} predictions/s per "
        f"camera, {entry['cpu_ms_per_prediction']} ms CPU per prediction, capture->publish p50 "
        f"{entry['capture_to_publish_ms']['p50']} ms p99 {entry['capture_to_publish_ms']['p99']} ms"
    )
    return entry


def children_exited(*, children_pids: list[int]) -> list[int]:
    """The pids among ``children_pids`` that are no longer running (a crashed producer or worker)."""
    return [p for p in children_pids if not Path(f"/proc/{p}").exists() or _zombie(p)]


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def run(options: SharingOptions, *, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Run part ``shared``: one entry per mode."""
    model = str(models.standin() if options.model == "standin" else models.yolov8n(dynamic=True, say=say))
    results: list[dict[str, Any]] = []
    with Children() as children, tempfile.TemporaryDirectory(prefix="framecast-bench-shared-") as work:
        redis_url = start_valkey(children, work)
        for name in options.modes:
            say(f"shared: {options.cameras} cameras at {options.fps:g} fps, {name}")
            try:
                results.append(_mode(name, options, model, redis_url, Path(work), say))
            except BenchError as exc:
                say(f"shared: {name} failed: {exc}")
                results.append({"mode": name, "error": str(exc)})
    return results
