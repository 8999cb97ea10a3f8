"""The producer's command line: bad input fails fast with one clear line; --help explains itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from framecast.local.embedded import free_port
from tests.support.producer import run_producer

# Nothing listens here: none of these runs may get as far as needing Redis.
NO_REDIS = ["--redis-url", f"redis://127.0.0.1:{free_port()}/0"]


@pytest.mark.parametrize(
    ("args", "status", "expected"),
    [
        (["--source", "/no/such/clip.mp4"], 1, "--source: no such file: /no/such/clip.mp4"),
        (["--source", "97"], 1, "--source: cannot open camera device 97"),
        (
            ["--detector", "yolo9000"],
            2,
            "--detector=yolo9000: unknown detector 'yolo9000' (choose from: motion,",
        ),
        (["--detector", "onnx:/no/model.onnx"], 2, "no such ONNX model: /no/model.onnx"),
        (["--detector", "no_such_module:predict"], 2, "cannot import 'no_such_module'"),
        (["--stream", "bad name!"], 2, "--stream=bad name!: stream: 'bad name!' is not a valid stream name"),
        (["--max-fps", "-1"], 2, "--max-fps=-1: must be 0 or greater"),
        (["--redis-url", "http://x"], 2, "expected a redis://, rediss:// or unix:// URL"),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(
    args: list[str], status: int, expected: str, child_env: dict[str, str]
) -> None:
    code, stderr = run_producer([*NO_REDIS, *args], env=child_env)
    assert code == status, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr  # no traceback, no OpenCV/FFmpeg chatter
    assert lines[0].startswith("python -m producer: error: ")
    assert expected in lines[0]


def test_a_busy_metrics_port_is_one_line_and_exit_1(child_env: dict[str, str], tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, stderr = run_producer([*NO_REDIS, "--metrics-port", str(port)], env=child_env)
    assert code == 1, stderr
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith(f"python -m producer: error: --metrics-port={port}: cannot listen")


def test_help_explains_sources_detectors_and_failure_behaviour(child_env: dict[str, str]) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "framecast.cli", "producer", "--help"],
        capture_output=True,
        env=child_env,
        timeout=60,
        check=False,
    )
    text = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert text.startswith("usage: framecast producer")
    for phrase in (
        "--source",
        "--detector",
        "--workers",
        "--no-demand",
        "--preview-fps",
        "REDIS_URL",
        "exits 0",  # end of a file
        "reopened forever",  # network cameras
        "never exits for that",  # Redis down
        "module:callable",
        "framecast.detectors",
    ):
        assert phrase in text, phrase
