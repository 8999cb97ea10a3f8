"""Child processes of the tests: the environment they get (framecast's own :func:`child_env`) and
their output lines."""

from __future__ import annotations

import queue
import subprocess
import threading
import time

from framecast.local.procs import ROOT, child_env

__all__ = ["ROOT", "OutputLines", "child_env"]


class OutputLines:
    """A child's output lines, read by a thread so that no wait can block past its deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(target=lambda: [self.lines.put(line) for line in stdout], daemon=True).start()

    def wait_for(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                break
            self.seen.append(line)
            if needle in line:
                return line
        raise AssertionError(f"no line with {needle!r} within {timeout:.0f} s:\n{''.join(self.seen)}")
