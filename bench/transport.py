"""How a ~1 MB frame best reaches another process: shared memory + a small message, or a pickle.

Both ways make a real round trip to a child process (``python -m bench.transport``), which
reads every row of the frame it received (as a letterbox would) and answers a small message:

* **shared memory**: the frame is copied into a slot of :class:`producer.inference.protocol.Slots`
  and a ~100-byte message crosses a Unix socket (what the shared inference worker does);
* **pickle over a pipe**: ``multiprocessing.connection.Connection.send(frame)`` (what a
  ``ProcessPoolExecutor``, i.e. ``--workers``, does).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from bench.procs import ROOT, child_env
from bench.stats import percentiles
from producer.inference import protocol

__all__ = ["run"]


def _read(sock: socket.socket) -> dict[str, Any]:
    header = sock.recv(4, socket.MSG_WAITALL)
    body = sock.recv(int.from_bytes(header, "big"), socket.MSG_WAITALL)
    return protocol._decode(body)


def _child(kind: str, fd: int) -> None:
    sock = socket.socket(fileno=fd)
    if kind == "pickle":
        conn = Connection(os.dup(fd))
        while True:
            try:
                frame = conn.recv()
            except EOFError:
                return
            conn.send(int(frame[:, ::64].sum()))
    _, fds, _, _ = socket.recv_fds(sock, 1024, 1)
    slots = protocol.Slots(1, 640 * 480 * 3, fd=fds[0])
    while True:
        try:
            message = _read(sock)
        except (OSError, ValueError):
            return
        frame = slots.view(message["slot"], message["height"], message["width"])
        sock.sendall(protocol.encode({"op": "result", "id": message["id"], "sum": int(frame[:, ::64].sum())}))


def _round_trips(kind: str, frame: np.ndarray, count: int) -> list[float]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.transport", kind, str(theirs.fileno())],
        pass_fds=[theirs.fileno()],
        env=child_env(),
        cwd=ROOT,
    )
    theirs.close()
    times: list[float] = []
    try:
        if kind == "pickle":
            conn = Connection(ours.detach())
            for _ in range(count):
                started = time.perf_counter()
                conn.send(frame)
                conn.recv()
                times.append(time.perf_counter() - started)
            conn.close()
        else:
            slots = protocol.Slots(1, frame.nbytes)
            socket.send_fds(ours, [b"x"], [slots.fd])
            for index in range(count):
                started = time.perf_counter()
                slots.write(0, frame)
                ours.sendall(
                    protocol.encode({"op": "frame", "id": index, "slot": 0, "height": 480, "width": 640})
                )
                _read(ours)
                times.append(time.perf_counter() - started)
            ours.close()
            slots.close()
    finally:
        child.wait(timeout=10)
    return times[5:]  # the first ones pay for page faults and imports


def run(*, count: int = 300) -> dict[str, Any]:
    """Round-trip time of a 640x480 BGR frame each way, in microseconds (p50/p99/max)."""
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    cpu = time.process_time()
    shared = _round_trips("shm", frame, count)
    shared_cpu = time.process_time() - cpu
    cpu = time.process_time()
    pickled = _round_trips("pickle", frame, count)
    pickled_cpu = time.process_time() - cpu
    return {
        "frame_bytes": frame.nbytes,
        "shared_memory_us": percentiles(shared, scale=1e6),
        "pickle_pipe_us": percentiles(pickled, scale=1e6),
        "sender_cpu_us": {
            "shared_memory": round(shared_cpu / max(1, count) * 1e6, 1),
            "pickle_pipe": round(pickled_cpu / max(1, count) * 1e6, 1),
        },
    }


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]))
