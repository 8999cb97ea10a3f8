"""One model for many cameras: a real inference worker process serving real producers.

The model (built in the test, no weights) moves its box by the brightest pixel of each frame,
so each camera's results show which camera's frame they were computed from: a result routed to
the wrong stream, or computed on another camera's pixels, shows as the wrong box. The cameras
are video files of one grey level each (and an MJPEG camera where one must die).
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import onnx
import pytest

from framecast import wire
from framecast.local.cameras import Camera
from framecast.local.embedded import free_port
from framecast.local.predictors import SharedPredictor
from framecast.local.up import running
from tests.support.gateway import metric
from tests.support.onnx_models import SIZE, brightness_model, shifted_box
from tests.support.producer import ROOT, Listener, history, kill, running_producer, start_mjpeg
from tests.support.wait import wait_until

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer

LEVELS = {"dark": 0, "bright": 255}
"""Each file camera's grey level; 0 still shows the letterbox's grey (114) as its brightest."""


def _clip(path: Path, level: int, frames: int = 30) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 480))
    for _ in range(frames):
        writer.write(np.full((480, 640, 3), level, np.uint8))
    writer.release()
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "brightness.onnx"
    onnx.save(brightness_model(), str(path))
    return path


@pytest.fixture
def clips(tmp_path: Path) -> dict[str, Path]:
    return {name: _clip(tmp_path / f"{name}.avi", level) for name, level in LEVELS.items()}


@contextlib.contextmanager
def _worker(
    socket: Path, model: Path, args: list[str], *, env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    log = open(socket.with_suffix(".log"), "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "producer.inference",
            "--socket",
            str(socket),
            "--detector",
            f"onnx:{model}",
            "--input-size",
            str(SIZE),
            "--metrics-port",
            str(port),
            *args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    try:
        wait_until(
            lambda: socket.exists() or process.poll() is not None, timeout=30, what="the worker's socket"
        )
        assert process.poll() is None, socket.with_suffix(".log").read_text()
        yield process, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
        log.close()


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


def _camera_args(stream: str, source: Path | str, socket: Path) -> list[str]:
    return [
        "--stream", stream, "--source", str(source), "--loop", "--no-demand", "--max-fps", "10",
        "--predictor-socket", str(socket),
    ]  # fmt: skip


def _best_box(result: wire.Result) -> tuple[float, ...]:
    best = max(result.detections, key=lambda d: d.confidence)
    return best.box


def test_two_cameras_share_one_worker_in_batches_and_each_result_reaches_its_own_stream(
    tmp_path: Path, model: Path, clips: dict[str, Path], redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    socket = tmp_path / "w.sock"
    metrics_port = free_port()
    # A budget far longer than the test: a batch goes only when full (both cameras) or, before
    # the second camera connects, when every connected camera has a frame waiting.
    with (
        _worker(socket, model, ["--max-batch", "2", "--batch-wait", "600"], env=child_env) as (worker, port),
        Listener(redis_server.url, "dark") as dark,
        Listener(redis_server.url, "bright") as bright,
        running_producer(
            redis_server.url,
            [*_camera_args("dark", clips["dark"], socket), "--metrics-port", str(metrics_port)],
            env=child_env,
        ) as first,
        running_producer(redis_server.url, _camera_args("bright", clips["bright"], socket), env=child_env),
    ):
        wait_until(
            lambda: metric(_metrics(port), "framecast_inference_clients") == 2, what="both cameras connected"
        )
        before = _metrics(port)
        singles = metric(before, "framecast_inference_batch_size_bucket", {"le": "1.0"})
        frames = metric(before, "framecast_inference_frames_total")
        wait_until(
            lambda: metric(_metrics(port), "framecast_inference_frames_total") >= frames + 20,
            timeout=60,
            what="20 more frames predicted",
        )
        after = _metrics(port)
        # Every inference since both connected took one frame of each: no batch of one.
        assert metric(after, "framecast_inference_batch_size_bucket", {"le": "1.0"}) == singles
        assert metric(after, "framecast_inference_batch_size_bucket", {"le": "2.0"}) > singles
        dark.wait_for(lambda: len(dark.results) >= 5, what="5 dark results")
        bright.wait_for(lambda: len(bright.results) >= 5, what="5 bright results")
        info = _metrics(metrics_port)
        assert metric(info, "framecast_producer_info", {"provider": "CPUExecutionProvider"}) == 1
        assert metric(info, "framecast_producer_info", {"detector": f"shared:{socket}"}) == 1
    assert worker.returncode == 0
    assert "predictor failed" not in first.logs, first.logs
    for stream, heard in (("dark", dark), ("bright", bright)):
        results = [r for _, r in history(redis_server.url, stream)]
        assert results and {r.stream for r in results} == {stream}
        for result in results:
            assert _best_box(result) == pytest.approx(shifted_box(LEVELS[stream]), abs=0.5), stream
        # Gapless seq, increasing frame indices and capture times: each result is its own frame's.
        assert [r.seq for r in results] == list(range(1, len(results) + 1))
        assert all(
            a.frame < b.frame and a.captured_at < b.captured_at for a, b in itertools.pairwise(results)
        )
        # "down" only until the first connection (the heartbeat may beat it), then "ready" throughout.
        states = [s.predictor for s in heard.statuses]
        assert "ready" in states and "down" not in states[states.index("ready") :], states


def test_a_camera_whose_source_dies_does_not_hold_up_the_others(
    tmp_path: Path, model: Path, clips: dict[str, Path], redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    socket = tmp_path / "w.sock"
    camera_port = free_port()
    camera = start_mjpeg(camera_port, env=child_env)
    try:
        with (
            _worker(socket, model, ["--max-batch", "4", "--concurrency", "2"], env=child_env),
            Listener(redis_server.url, "dark") as dark,
            Listener(redis_server.url, "gate") as gate,
            running_producer(redis_server.url, _camera_args("dark", clips["dark"], socket), env=child_env),
            running_producer(
                redis_server.url,
                [*_camera_args("gate", f"http://127.0.0.1:{camera_port}/", socket), "--stall-timeout", "2"],
                env=child_env,
            ),
        ):
            gate.wait_for(lambda: len(gate.results) >= 3, what="3 results of the MJPEG camera")
            # The MJPEG frame's white square is its brightest pixel: its own box, not the dark file's.
            assert _best_box(gate.results[-1]) == pytest.approx(shifted_box(255, frame=(320, 240)), abs=0.5)
            kill(camera)
            gate.wait_for(
                lambda: any(s.state == "offline" for s in gate.statuses), timeout=30, what="gate offline"
            )
            seen = len(dark.results)
            dark.wait_for(lambda: len(dark.results) >= seen + 10, timeout=30, what="10 more dark results")
            assert _best_box(dark.results[-1]) == pytest.approx(shifted_box(0), abs=0.5)
    finally:
        kill(camera)


def test_up_restarts_a_crashed_worker_and_its_cameras_say_so(
    tmp_path: Path, model: Path, clips: dict[str, Path], child_env: dict[str, str]
) -> None:
    cameras = tuple(
        Camera(
            name=name,
            source=str(path),
            options=(("loop", "true"), ("demand", "false"), ("max_fps", "10")),
            predictor="shared",
        )
        for name, path in clips.items()
    )
    predictor = SharedPredictor(
        name="shared", options=(("detector", f"onnx:{model}"), ("input_size", str(SIZE)))
    )
    with (
        running(gateways=1, cameras=cameras, predictors=(predictor,), restart=True, env=child_env) as stack,
        Listener(stack.redis_url, "dark") as dark,
        Listener(stack.redis_url, "bright") as bright,
    ):
        for heard in (dark, bright):
            heard.wait_for(lambda h=heard: len(h.results) >= 3, timeout=30, what="results before the crash")
        epochs = {r.epoch for r in dark.results}
        stack.kill("predictor-shared")  # SIGKILL: the worker dies mid-stream
        for heard in (dark, bright):
            heard.wait_for(
                lambda h=heard: any(s.predictor == "down" for s in h.statuses),
                timeout=30,
                what="a heartbeat saying the predictor is down",
            )
            heard.wait_for(
                lambda h=heard: any(s.predictor == "ready" and s.predictor_restarts == 1 for s in h.statuses),
                timeout=60,
                what="a heartbeat saying it is back, restarted once",
            )
            resumed = len(heard.results)
            heard.wait_for(
                lambda h=heard, n=resumed: len(h.results) >= n + 3, what="results after the restart"
            )
        # The producers never restarted: same epoch, and the supervisor restarted only the worker.
        assert {r.epoch for r in dark.results} == epochs
        assert _best_box(dark.results[-1]) == pytest.approx(shifted_box(0), abs=0.5)
        assert _best_box(bright.results[-1]) == pytest.approx(shifted_box(255), abs=0.5)


def test_a_device_that_is_not_installed_is_one_line_and_exit_2(
    tmp_path: Path, model: Path, child_env: dict[str, str]
) -> None:
    redis = ["--redis-url", f"redis://127.0.0.1:{free_port()}/0"]  # never reached
    for command in (
        ["producer", *redis, "--detector", f"onnx:{model}", "--input-size", str(SIZE), "--device", "cuda"],
        [
            "producer.inference",
            "--socket",
            str(tmp_path / "s"),
            "--detector",
            f"onnx:{model}",
            "--device",
            "cuda",
        ],
    ):
        done = subprocess.run(
            [sys.executable, "-m", *command],
            capture_output=True,
            text=True,
            env=child_env,
            cwd=ROOT,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert "--device=cuda: " in lines[0] and "no CUDAExecutionProvider" in lines[0]
        assert "devices installed: cpu" in lines[0] and "onnxruntime-gpu" in lines[0]


def test_up_fails_naming_a_shared_predictor_whose_device_is_not_installed(
    tmp_path: Path, model: Path, child_env: dict[str, str]
) -> None:
    config = tmp_path / "framecast.toml"
    config.write_text(
        f'[predictors.yolo]\ndetector = "onnx:{model}"\ninput_size = {SIZE}\ndevice = "cuda"\n\n'
        '[cameras.door]\nsource = "synthetic"\npredictor = "yolo"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "framecast.cli", "up", "--port", "0", "--config", str(config)],
        capture_output=True,
        text=True,
        env=child_env,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "framecast up: error: predictor-yolo exited with status 2" in done.stderr
    assert "--device=cuda: onnxruntime" in done.stderr and "no CUDAExecutionProvider" in done.stderr


def test_workers_and_a_shared_predictor_exclude_each_other(child_env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "producer", "--predictor-socket", "/tmp/x.sock", "--workers", "2"],
        capture_output=True,
        text=True,
        env=child_env,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "python -m producer: error: --workers and --predictor-socket exclude each other:"
        " the shared worker predicts"
    )
