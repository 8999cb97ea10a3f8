"""Real producer processes, a real MJPEG camera and a Redis listener for the producer's tests.

Usage::

    from tests.support.producer import Listener, running_producer

    def test_something(redis_server, child_env):
        with Listener(redis_server.url, "default") as heard, running_producer(
            redis_server.url, ["--no-demand"], env=child_env
        ) as producer:
            heard.wait_for(lambda: len(heard.results) >= 5, what="5 results")

``python tests/support/producer.py mjpeg PORT`` serves an endless MJPEG stream
(``multipart/x-mixed-replace``) of numbered frames on 127.0.0.1:PORT, as an IP camera does.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from framecast import wire
from framecast.local import launch
from framecast.local.embedded import wait_for_port
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------
# Producer processes


@dataclass
class ProducerProc:
    """A running ``python -m producer`` child; its stdout and stderr go to ``log_path``."""

    process: subprocess.Popen[bytes]
    log_path: Path
    _log_file: Any = field(repr=False, default=None)
    _kept: str | None = field(repr=False, default=None)

    @property
    def logs(self) -> str:
        """Everything the process printed so far (still readable once it stopped)."""
        if self._kept is not None:
            return self._kept
        return self.log_path.read_text(errors="replace")

    def stop(self, *, timeout: float = 15.0) -> int:
        """SIGTERM, wait, SIGKILL if needed; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._close_log()
        return self.process.returncode

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit on its own; returns its status."""
        status = self.process.wait(timeout=timeout)
        self._close_log()
        return status

    def _close_log(self) -> None:
        """Close and remove the log file once the process is gone, keeping its text in memory."""
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._kept is None:
            self._kept = self.log_path.read_text(errors="replace")
            with contextlib.suppress(OSError):
                self.log_path.unlink()


def start_producer(
    redis_url: str, args: Sequence[str] = (), *, env: Mapping[str, str], log_dir: str | None = None
) -> ProducerProc:
    """Start ``python -m producer ARGS...`` publishing to ``redis_url`` (stop it in a ``finally``)."""
    spec = launch.Producer(redis_url=redis_url, args=tuple(args))
    fd, path = tempfile.mkstemp(prefix="producer-", suffix=".log", dir=log_dir)
    os.close(fd)
    log_file = open(path, "wb")  # noqa: SIM115 - closed by ProducerProc.stop/wait
    process = subprocess.Popen(
        spec.argv(),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**env, **spec.env()},
        cwd=ROOT,
    )
    return ProducerProc(process, Path(path), log_file)


@contextlib.contextmanager
def running_producer(
    redis_url: str, args: Sequence[str] = (), *, env: Mapping[str, str]
) -> Iterator[ProducerProc]:
    """A producer for the duration of a ``with`` block."""
    proc = start_producer(redis_url, args, env=env)
    try:
        yield proc
    finally:
        proc.stop()


def metrics(port: int) -> dict[str, float]:
    """A producer's ``framecast_producer_*`` samples from its ``--metrics-port`` (labels dropped)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        match = re.fullmatch(r"(framecast_producer_[a-z_]+)(?:\{[^}]*\})? ([0-9.e+-]+)", line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values


def run_producer(args: Sequence[str], *, env: Mapping[str, str], timeout: float = 60.0) -> tuple[int, str]:
    """Run a producer to completion; returns (exit status, stderr)."""
    done = subprocess.run(
        launch.Producer(args=tuple(args)).argv(),
        capture_output=True,
        env=dict(env),
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stderr.decode(errors="replace")


# --------------------------------------------------------------------------
# Listening to a stream on Redis


class Listener:
    """Subscribes to a stream's channel (and optionally its preview and video channels) on a thread.

    Every message is decoded with :mod:`framecast.wire`, so a malformed one fails the test.
    """

    def __init__(
        self, redis_url: str, stream: str = "default", *, previews: bool = False, video: bool = False
    ) -> None:
        self._client = redis.Redis.from_url(redis_url)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        channels = [wire.channel(stream)] + ([wire.preview_channel(stream)] if previews else [])
        self._pubsub.subscribe(*channels, *([wire.video_channel(stream)] if video else []))
        self._preview_channel = wire.preview_channel(stream).encode()
        self._video_channel = wire.video_channel(stream).encode()
        self.results: list[wire.Result] = []
        self.events: list[wire.Event] = []
        self.statuses: list[wire.Status] = []
        self.order: list[wire.Result | wire.Event] = []
        """Results and events in the order the channel delivered them."""
        self.previews: list[wire.Preview] = []
        self.video: list[wire.VideoFrame] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._pubsub.get_message(timeout=0.2)
            except (redis.ConnectionError, redis.TimeoutError, ValueError):
                if self._stop.is_set():
                    return
                time.sleep(0.1)
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                if message["channel"] == self._preview_channel:
                    self.previews.append(wire.decode_preview(message["data"]))
                    continue
                if message["channel"] == self._video_channel:
                    self.video.append(wire.decode_video(message["data"]))
                    continue
                decoded = wire.decode(message["data"])
            except wire.WireError as exc:
                self.errors.append(str(exc))
                continue
            if isinstance(decoded, wire.Result):
                self.results.append(decoded)
                self.order.append(decoded)
            elif isinstance(decoded, wire.Event):
                self.events.append(decoded)
                self.order.append(decoded)
            elif isinstance(decoded, wire.Status):
                self.statuses.append(decoded)
            else:
                self.errors.append(f"unexpected {decoded!r}")

    def wait_for(
        self, condition: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition"
    ) -> Any:
        return wait_until(condition, timeout=timeout, what=what)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(Exception):
            self._pubsub.close()
        self._client.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stream_entries(redis_url: str, key: str, *, skip_invalid: bool) -> list[tuple[str, Any]]:
    client = redis.Redis.from_url(redis_url)
    try:
        entries: Any = client.xrange(key)
    finally:
        client.close()
    out = []
    for entry_id, fields in entries:
        try:
            message = wire.decode(fields[wire.HISTORY_FIELD.encode()])
        except wire.WireError:
            if skip_invalid:
                continue
            raise
        out.append((entry_id.decode(), message))
    return out


def history(
    redis_url: str, stream: str = "default", *, skip_invalid: bool = False
) -> list[tuple[str, wire.Result]]:
    """The stream's history as (entry id, decoded result), oldest first.

    Args:
        skip_invalid: Leave out entries that are not results (planted by the test itself);
            otherwise they fail the test.
    """
    out = _stream_entries(redis_url, wire.history_key(stream), skip_invalid=skip_invalid)
    assert all(isinstance(message, wire.Result) for _, message in out)
    return out


def events_history(redis_url: str, stream: str = "default") -> list[tuple[str, wire.Event]]:
    """The stream's events history as (entry id, decoded event), oldest first."""
    out = _stream_entries(redis_url, wire.events_key(stream), skip_invalid=False)
    assert all(isinstance(message, wire.Event) for _, message in out)
    return out


# --------------------------------------------------------------------------
# An MJPEG-over-HTTP camera


def start_mjpeg(port: int, *, env: Mapping[str, str], hang_after: int = 0) -> subprocess.Popen[bytes]:
    """Start the MJPEG camera on 127.0.0.1:``port`` as a child process (stop it in a ``finally``).

    Args:
        hang_after: If set, each connection gets this many frames, then silence with the
            connection left open (a camera whose encoder froze).
    """
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "mjpeg", str(port), str(hang_after)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(env),
        cwd=ROOT,
    )
    wait_for_port(port, process=process, timeout=20)
    return process


def kill(process: subprocess.Popen[bytes]) -> None:
    """Kill a child at once (like a camera losing power) and reap it."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def _serve_mjpeg(port: int, hang_after: int = 0, fps: float = 20.0) -> None:
    import cv2
    import numpy as np

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            index = 0
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                while True:
                    image = np.full((240, 320, 3), 90, np.uint8)
                    x = (index * 6) % 280
                    cv2.rectangle(image, (x, 80), (x + 40, 120), (255, 255, 255), -1)
                    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
                    self.wfile.write(
                        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                        + jpeg
                        + b"\r\n"
                    )
                    index += 1
                    if index == hang_after:
                        time.sleep(3600)
                    time.sleep(1.0 / fps)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    with Server(("127.0.0.1", port), Handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) in (3, 4) and sys.argv[1] == "mjpeg":
        _serve_mjpeg(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) == 4 else 0)
    else:
        sys.exit("usage: tests/support/producer.py mjpeg PORT [HANG_AFTER]")


def scrape(port: int) -> str:
    """A producer's ``--metrics-port`` exposition text; empty while it is not listening yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return ""
