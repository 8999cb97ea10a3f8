"""Child processes of the benchmark: started with a bounded wait, always stopped.

:class:`Children` is a context manager: every process started through it is
terminated (then killed) when the block exits, whatever happened inside.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from framecast.exceptions import FramecastError
from framecast.local import launch, procs

__all__ = ["ROOT", "BenchError", "Children", "child_env", "read_json_line", "start_valkey", "wait_http"]

ROOT = Path(__file__).resolve().parent.parent


class BenchError(FramecastError, RuntimeError):
    """A benchmark step failed; the text says which and why."""


def wait_http(port: int, path: str = "/readyz", *, timeout: float = 30.0) -> None:
    """Until ``http://127.0.0.1:{port}{path}`` answers 200 (a gateway's or nginx's readiness).

    Raises:
        BenchError: It did not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.1) + 1):
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer,
        ):
            if answer.status == 200:
                return
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    raise BenchError(f"127.0.0.1:{port}{path} did not answer 200 within {timeout:g} s")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """:func:`framecast.local.procs.child_env`; children log at WARNING unless ``extra`` says otherwise."""
    return procs.child_env({"FRAMECAST_LOG_LEVEL": "WARNING", **(extra or {})})


def read_json_line(process: subprocess.Popen[str], timeout: float, what: str) -> dict[str, Any]:
    """The next JSON line a child prints on stdout, within ``timeout`` seconds.

    Raises:
        BenchError: The child exited, printed something else, or said nothing in time.
    """
    stdout = process.stdout
    assert stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BenchError(f"{what}: no answer within {timeout:.0f} s")
        ready, _, _ = select.select([stdout], [], [], min(remaining, 0.5))
        if not ready:
            if process.poll() is not None:
                raise BenchError(f"{what}: exited with status {process.returncode}")
            continue
        line = stdout.readline()
        if not line:
            process.wait(timeout=5)
            raise BenchError(f"{what}: exited with status {process.returncode}")
        with contextlib.suppress(json.JSONDecodeError):
            obj = json.loads(line)
            if isinstance(obj, dict):
                return obj
        # Anything else a child prints (a warning) is passed on, not parsed.
        sys.stderr.write(line)


class Children:
    """Processes started for one benchmark step, stopped when the step ends."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[str]] = []

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    def start(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        stdin: bool = False,
        stdout: bool = True,
        stderr: IO[str] | int | None = None,
        nice: int = 0,
        cpus: tuple[int, ...] = (),
    ) -> subprocess.Popen[str]:
        """Start a child (``stdout`` piped for :func:`read_json_line`, ``stdin`` piped if asked),
        at ``nice`` and pinned to ``cpus`` (empty: any CPU)."""

        def _prepare() -> None:
            # If the benchmark dies without cleaning up, Linux stops its children too.
            procs.die_with_parent()
            if nice:
                os.nice(nice)
            if cpus:
                os.sched_setaffinity(0, cpus)

        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=stderr,
            env=env if env is not None else child_env(),
            cwd=ROOT,
            text=True,
            preexec_fn=_prepare,
        )
        self._procs.append(process)
        return process

    def python(self, module: str, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``python -m module args...`` with this interpreter."""
        return self.start([sys.executable, "-m", module, *args], **kwargs)

    def launch(self, spec: launch.Spec, **kwargs: Any) -> subprocess.Popen[str]:
        """Start a child of the topology from its spec (see :meth:`start` for ``kwargs``)."""
        spec.prepare()
        return self.start(spec.argv(), env=child_env(spec.env()), **kwargs)

    def stop(
        self, process: subprocess.Popen[str], *, sig: int = signal.SIGTERM, timeout: float = 10.0
    ) -> int:
        """Stop one child: ``sig``, then SIGKILL after ``timeout`` seconds; returns its exit status."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return process.returncode

    def stop_all(self) -> None:
        """Stop every child still running, newest first."""
        for process in reversed(self._procs):
            self.stop(process, timeout=5.0)
        self._procs.clear()


def start_valkey(children: Children, workdir: str) -> str:
    """Start a valkey-server among ``children`` (data in ``workdir``); returns its URL once it listens.

    Raises:
        BenchError: It did not start.
    """
    from framecast.local.embedded import free_port, wait_for_port

    spec = launch.Valkey(port=free_port(), workdir=Path(workdir))
    valkey = children.launch(spec, stdout=False)
    try:
        wait_for_port(spec.port, process=valkey, timeout=10)  # type: ignore[arg-type]
    except Exception as exc:
        raise BenchError(f"valkey-server did not start: {exc}") from None
    return spec.url
