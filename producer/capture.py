"""Frame capture: read a source on its own thread into a :class:`LatestFrame`, reopening it when it fails.

Data flows one way: :mod:`producer.sources` opens the camera, :class:`Grabber` (here) reads it and
keeps only the newest frame in :mod:`producer.latest`, where the service's feeder takes it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

from framecast.retry import backoff
from producer.latest import LatestFrame
from producer.sources import Opener, Reader

__all__ = ["Grabber"]

log = logging.getLogger(__name__)

_Outcome = Literal["ended", "failed", "stalled", "stopped"]


class Grabber:
    """Reads a source into a :class:`LatestFrame` on its own thread, reopening it when it fails.

    A failed or stalled source (no frame for ``stall_timeout``) is reopened with capped
    exponential backoff and jitter, forever. A read that hangs is abandoned on its thread (it
    releases its capture whenever it returns) and a fresh one is opened. A file that ends is
    reopened at once when ``repeat`` is set; otherwise the slot is closed and :attr:`ended` set.

    Args:
        open: Opens the source (raising when it cannot).
        slot: Where frames go.
        finite: The source ends rather than fails when it returns no frame (a file).
        repeat: Reopen a finite source when it ends.
        stall_timeout: Seconds without a frame before the source is reopened.
        first: An already open reader to start with (a start-up check opened it).
        description: How the source is named in logs (no credentials).
        on_state: Called with True when frames start flowing, False when the source is lost.
        backoff_base: First reopen delay in seconds (doubled per failure, with jitter).
        backoff_cap: Largest reopen delay in seconds.
    """

    def __init__(
        self,
        open: Opener,
        slot: LatestFrame,
        *,
        finite: bool = False,
        repeat: bool = False,
        stall_timeout: float = 10.0,
        first: Reader | None = None,
        description: str = "source",
        on_state: Callable[[bool], None] | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 10.0,
    ) -> None:
        self._open = open
        self._slot = slot
        self._finite = finite
        self._repeat = repeat
        self._stall_timeout = stall_timeout
        self._first = first
        self._description = description
        self._on_state = on_state
        self._delays = functools.partial(backoff, initial=backoff_base, maximum=backoff_cap)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="grabber", daemon=True)
        self._readers: list[threading.Thread] = []
        self._session = 0
        self._last_frame = time.monotonic()
        self.online = False
        """Whether the source is delivering frames."""
        self.reconnects = 0
        """Times the source was opened again after being lost (not counting file loops)."""
        self.ended = False
        """A finite source reached its end and will not be reopened."""

    def start(self) -> None:
        """Start reading on a background thread."""
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop reading, waiting up to ``timeout`` seconds for reads in progress to return.

        Returns:
            Whether every thread finished. A read still blocked inside the source (a dead network
            camera) keeps its thread; such a process should end with ``os._exit``, since letting
            the interpreter tear down a thread inside FFmpeg aborts it ("exception not rethrown").
        """
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in (self._thread, *self._readers):
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in (self._thread, *self._readers))

    def _supervise(self) -> None:
        reader = self._first
        self._first = None
        opened_before = reader is not None
        delays = self._delays()
        opening_failed = False
        rewinding = False  # reopening a file that ended, to loop: not a reconnect
        try:
            while not self._stop.is_set():
                if reader is None:
                    try:
                        reader = self._open()
                    except Exception as exc:  # any failure to open is worth another try
                        if not opening_failed:
                            log.warning("cannot open %s: %s; retrying", self._description, _one_line(exc))
                            opening_failed = True
                        self._stop.wait(next(delays))
                        continue
                    if opened_before and not rewinding:
                        self.reconnects += 1
                    opened_before = True
                    rewinding = False
                    opening_failed = False
                outcome, delivered = self._run_session(reader)
                reader = None
                if outcome == "stopped":
                    return
                if outcome == "ended" and self._finite:
                    if not self._repeat:
                        log.info("%s ended", self._description)
                        self.ended = True
                        return
                    rewinding = True
                    continue
                self._set_online(False)
                why = f"stalled (no frame for {self._stall_timeout:g} s)" if outcome == "stalled" else "lost"
                log.warning("%s %s; reopening", self._description, why)
                if delivered:
                    delays = self._delays()
                self._stop.wait(next(delays))
        finally:
            self._set_online(False)
            self._slot.close()

    def _run_session(self, reader: Reader) -> tuple[_Outcome, bool]:
        """Read from ``reader`` on a worker thread until it ends, fails, stalls or we stop."""
        self._session += 1
        session = self._session
        done = threading.Event()
        result: list[_Outcome] = []
        delivered = threading.Event()
        self._last_frame = time.monotonic()
        worker = threading.Thread(
            target=self._read_loop,
            args=(reader, session, done, result, delivered),
            name=f"reader-{session}",
            daemon=True,
        )
        self._readers = [t for t in self._readers if t.is_alive()]
        self._readers.append(worker)
        worker.start()
        poll = min(0.25, self._stall_timeout / 4)
        while True:
            if done.wait(poll):
                return (result[0] if result else "failed"), delivered.is_set()
            if self._stop.is_set():
                self._session += 1  # the reader sees it is superseded and closes its source
                return "stopped", delivered.is_set()
            if time.monotonic() - self._last_frame > self._stall_timeout:
                self._session += 1
                return "stalled", delivered.is_set()

    def _read_loop(
        self,
        reader: Reader,
        session: int,
        done: threading.Event,
        result: list[_Outcome],
        delivered: threading.Event,
    ) -> None:
        outcome: _Outcome = "failed"
        try:
            while self._session == session:
                if self._stop.is_set():
                    outcome = "stopped"
                    break
                image = reader.read()
                if self._session != session:
                    break
                if image is None:
                    outcome = "ended" if self._finite else "failed"
                    break
                self._last_frame = time.monotonic()
                if not delivered.is_set():
                    delivered.set()
                    self._set_online(True)
                self._slot.put(image, pace=getattr(reader, "pace", None))
        except Exception as exc:
            log.warning("reading %s failed: %s", self._description, _one_line(exc))
        finally:
            with contextlib.suppress(Exception):
                reader.close()
            result.append(outcome)
            done.set()

    def _set_online(self, online: bool) -> None:
        if online == self.online:
            return
        self.online = online
        if online:
            log.info(
                "%s online%s", self._description, f" (reconnect {self.reconnects})" if self.reconnects else ""
            )
        if self._on_state is not None:
            self._on_state(online)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
