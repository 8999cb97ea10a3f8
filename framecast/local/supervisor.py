"""Child processes kept running: started, echoed, restarted with backoff, stopped.

:class:`Supervisor` knows nothing of what its children are; ``framecast up``
(:mod:`framecast.local.up`) decides which to start, in which order, and how to tell
that each is ready.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from framecast.exceptions import EmbeddedError, UpError
from framecast.local.embedded import wait_for_port
from framecast.local.procs import die_with_parent
from framecast.retry import backoff

__all__ = ["Child", "Supervisor"]


def _restart_delays() -> Iterator[float]:
    return backoff(initial=0.5, maximum=10.0)


@dataclass
class Child:
    """One supervised process.

    Attributes:
        name: Prefix of its echoed lines and key in :attr:`Supervisor.children`.
        argv: Its command line.
        port: The port it listens on, if any.
        process: The running (or last) process; None before the first start.
        lines: Its last output lines.
        restarts: Times it was restarted after an unexpected exit.
        expected_exit: Whether an exit is expected (it is being stopped, or it finished).
        env: Its own environment variables, over :attr:`Supervisor.env` (secrets stay out of argv).
    """

    name: str
    argv: list[str]
    port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=500))
    restarts: int = 0
    expected_exit: bool = False
    _next_start: float = 0.0
    _delays: Iterator[float] = field(default_factory=_restart_delays, repr=False)

    def tail(self, count: int = 15) -> str:
        """The child's last output lines, for error reports."""
        return "\n".join(list(self.lines)[-count:])

    def running(self) -> bool:
        """Whether its process was started and has not exited."""
        return self.process is not None and self.process.poll() is None


class Supervisor:
    """Starts children, echoes their output, restarts those that exit, stops them.

    Args:
        echo: Called with each ``name | line`` of every child and each supervisor
            message (None: keep quiet; lines stay in ``Child.lines``).
        cwd: Working directory of the children.
        restart: Restart a child that exits unexpectedly (else record :attr:`failure`).
        finished: Whether a child's exit status means it is done, not failed (e.g. a
            producer whose source ended); such a child is not restarted.
    """

    def __init__(
        self,
        *,
        echo: Callable[[str], None] | None,
        cwd: Path,
        restart: bool = True,
        finished: Callable[[Child, int], str | None] = lambda child, status: None,
    ) -> None:
        self.env: dict[str, str] = {}
        """Environment of the children started from now on."""
        self.children: dict[str, Child] = {}
        self.failure: str | None = None
        """Why a child is down for good (restart off), or None."""
        self._echo = echo
        self._cwd = cwd
        self._restart = restart
        self._finished = finished
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def add(
        self, name: str, argv: list[str], *, port: int | None = None, env: dict[str, str] | None = None
    ) -> Child:
        """Register a child (not started yet)."""
        child = Child(name, argv, port, dict(env or {}))
        self.children[name] = child
        return child

    def launch(self, child: Child) -> None:
        """Start ``child`` with :attr:`env` and its own; its output is echoed by a thread."""
        child.process = subprocess.Popen(
            child.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**self.env, **child.env},
            cwd=self._cwd,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        threading.Thread(
            target=self._pump, args=(child, child.process), name=f"log-{child.name}", daemon=True
        ).start()

    def wait_listening(self, child: Child, timeout: float = 15.0) -> None:
        """Wait until ``child`` accepts TCP connections on its port; raises UpError naming it."""
        assert child.port is not None
        try:
            wait_for_port(child.port, timeout=timeout, process=child.process)
        except EmbeddedError as exc:
            raise UpError(f"{child.name} did not start: {exc}\n{child.tail()}") from None

    def watch(self) -> None:
        """Start restarting children that exit (in a daemon thread, until :meth:`stop_watching`)."""
        self._thread = threading.Thread(target=self._supervise, name="framecast-up", daemon=True)
        self._thread.start()

    def stop_watching(self) -> None:
        """No more restarts: every exit from now on is expected."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def terminate(self, *children: Child, timeout: float) -> None:
        """SIGTERM ``children`` at once and wait for them all; SIGKILL those left after ``timeout`` seconds.

        Signalled together, several gateways drain their clients in parallel, not one after another.
        """
        stopping = [(c, p) for c in children if (p := c.process) is not None and p.poll() is None]
        for child, process in stopping:
            child.expected_exit = True
            # SIGTERM is nginx's fast shutdown (SIGQUIT its graceful one), and every other child's stop.
            process.terminate()
        deadline = time.monotonic() + timeout
        for child, process in stopping:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop within {timeout:.0f} s; killing it")
                process.kill()
                process.wait(timeout=5)

    def say(self, message: str) -> None:
        """Echo a supervisor message."""
        if self._echo is not None:
            self._echo(f"framecast up: {message}")

    def _pump(self, child: Child, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            child.lines.append(line)
            if self._echo is not None:
                self._echo(f"{child.name:>8} | {line}")

    def _supervise(self) -> None:
        while not self._stopping.wait(0.2):
            for child in list(self.children.values()):
                process = child.process
                if process is None or process.poll() is None or child.expected_exit:
                    continue
                self._exited(child, process.returncode)

    def _exited(self, child: Child, status: int) -> None:
        done = self._finished(child, status)
        if done is not None:
            self.say(done)
            child.expected_exit = True
            return
        now = time.monotonic()
        if child._next_start == 0.0:
            delay = next(child._delays)
            child._next_start = now + delay
            action = f"restarting in {delay:.1f} s" if self._restart else "not restarting"
            self.say(f"{child.name} exited with status {status}; {action}")
            if not self._restart:
                child.expected_exit = True
                self.failure = f"{child.name} exited with status {status}"
        elif now >= child._next_start:
            child._next_start = 0.0
            child.restarts += 1
            self.launch(child)
