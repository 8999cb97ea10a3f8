"""Start-up of the real CLI under hostile conditions (issue 20): signals mid-start, many cameras, bad files.

A stand-in ``cv2`` on ``PYTHONPATH`` holds every process that imports it (the producers, and
``framecast producer`` itself) in its import for as long as the test wants: it writes its pid to
a marker file, then sleeps. That makes "a start-up still in progress" a state the test can see
and act on, instead of a moment it has to guess.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from framecast.local import cameras
from tests.support.wait import wait_until

_STUCK_CV2 = """\
import os, pathlib, time
marker = pathlib.Path(os.environ["FRAMECAST_TEST_MARKERS"]) / str(os.getpid())
marker.write_text(" ".join(__import__("sys").argv))
time.sleep(600)
"""


@pytest.fixture
def stuck(tmp_path: Path, child_env: dict[str, str]) -> tuple[dict[str, str], Path]:
    """An environment whose ``import cv2`` never returns, and the directory of its pid markers."""
    (tmp_path / "fake" / "cv2").mkdir(parents=True)
    (tmp_path / "fake" / "cv2" / "__init__.py").write_text(_STUCK_CV2)
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {
        **child_env,
        "PYTHONPATH": f"{tmp_path / 'fake'}{os.pathsep}{child_env['PYTHONPATH']}",
        "FRAMECAST_TEST_MARKERS": str(markers),
    }
    return env, markers


def _pids(markers: Path) -> list[int]:
    return sorted(int(p.name) for p in markers.iterdir())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes (its parent has not reaped it yet).
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


@contextlib.contextmanager
def _cli(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "framecast.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def test_ctrl_c_while_the_cli_imports_is_one_line_and_130(stuck: tuple[dict[str, str], Path]) -> None:
    """Known defect (issue 20): a KeyboardInterrupt traceback."""
    env, markers = stuck
    with _cli(["producer", "--source", "synthetic"], env) as process:
        wait_until(lambda: _pids(markers), what="the producer to be importing cv2")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.splitlines() == ["framecast producer: interrupted"], err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_up_stops_promptly_on_a_signal_during_start_up_and_leaves_no_child(
    stuck: tuple[dict[str, str], Path], signum: signal.Signals
) -> None:
    """Known defect (issue 20): ``up`` ignored SIGINT while its producers were starting.

    The producers here never finish starting, so ``up`` is still waiting for their first
    heartbeat when the signal comes; it used to wait out its 30 s and fail (exit 1).
    """
    env, markers = stuck
    specs = ";".join(f"cam{i}=synthetic" for i in range(3))
    with _cli(["up", "--port", "0", "--gateways", "1"], {**env, cameras.ENV: specs}) as process:
        window = min(3, os.cpu_count() or 1)
        wait_until(lambda: len(_pids(markers)) >= window, timeout=60, what="producers starting")
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert err.strip().splitlines()[-1] == f"framecast up: {signum.name} during start-up: stopped", err
    assert "Traceback" not in err + out
    for pid in _pids(markers):
        wait_until(lambda pid=pid: not _alive(pid), timeout=20, what=f"producer {pid} to be stopped")


def test_cameras_start_at_most_one_per_core_at_a_time(stuck: tuple[dict[str, str], Path]) -> None:
    """Known defect (issue 20): 1000 cameras spawned producers as fast as they could (load 45)."""
    env, markers = stuck
    window = os.cpu_count() or 1
    specs = ";".join(f"cam{i}=synthetic" for i in range(window + 2))
    with _cli(["up", "--port", "0", "--gateways", "1"], {**env, cameras.ENV: specs}) as process:
        wait_until(lambda: len(_pids(markers)) >= window, timeout=60, what=f"{window} producers starting")
        # None of them can ever send a heartbeat: no other producer may start until up gives up.
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert process.returncode == 0
    assert len(_pids(markers)) == window


def test_more_cameras_than_the_limit_is_one_line_and_exit_2(child_env: dict[str, str]) -> None:
    specs = ";".join(f"cam{i}=synthetic" for i in range(cameras.MAX_CAMERAS + 1))
    done = subprocess.run(
        [sys.executable, "-m", "framecast.cli", "up", "--port", "0"],
        capture_output=True,
        text=True,
        env={**child_env, cameras.ENV: specs},
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and f"more than {cameras.MAX_CAMERAS} cameras" in done.stderr
    assert done.stdout == ""


def test_a_fifo_source_fails_at_once_saying_what_it_is(tmp_path: Path, child_env: dict[str, str]) -> None:
    """Known defect (issue 20): "sent no heartbeat within 30 s:" followed by nothing."""
    fifo = tmp_path / "camera.fifo"
    os.mkfifo(fifo)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "framecast.cli",
            "producer",
            "--source",
            str(fifo),
            "--redis-url",
            "redis://127.0.0.1:1/0",
        ],
        capture_output=True,
        text=True,
        env=child_env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "named pipe (FIFO)" in lines[0] and str(fifo) in lines[0], done.stderr


def test_up_with_a_fifo_camera_fails_naming_it(tmp_path: Path, child_env: dict[str, str]) -> None:
    fifo = tmp_path / "door.fifo"
    os.mkfifo(fifo)
    done = subprocess.run(
        [sys.executable, "-m", "framecast.cli", "up", "--port", "0", "--gateways", "1"],
        capture_output=True,
        text=True,
        env={**child_env, cameras.ENV: f"door={fifo}"},
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done
    assert "producer-door exited with status 1" in done.stderr and "named pipe (FIFO)" in done.stderr


def test_watch_with_an_unparseable_url_is_one_line_and_exit_2(child_env: dict[str, str]) -> None:
    for url in ("ws://[::1", "ws://127.0.0.1:99999/ws"):
        done = subprocess.run(
            [sys.executable, "-m", "framecast.cli", "watch", url, "--count", "1"],
            capture_output=True,
            text=True,
            env=child_env,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done
        assert done.stderr.count("\n") == 1 and "is not a gateway URL" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
