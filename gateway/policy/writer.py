"""The one write rule: how a message reaches a client, for a whole audience or for one client.

Per client, in order:

* **ready** (shares the pre-framed bytes, not lagging, not due a lag probe): one call,
  :meth:`Sink.offer`, checks and writes the frame framed once for everyone; over
  ``client_buffer`` bytes unsent, the message is held instead and the client starts lagging;
* **lagging**: the message is held, the newest per stream and kind (an older one it replaces
  counts as ``conflated``);
* **due a lag probe**: the same frame with the round's ping right behind it, in one write;
* **framed per connection** (permessage-deflate): the connection frames and compresses the
  message itself, the ping (if due) as its own frame behind it.

The hot loop is the ready case: a flat pass over the audience with one flag test and one sink
call per client, everything else out of line. Fan-outs (:mod:`gateway.policy.slicing`), a
lagging client's flush (:mod:`gateway.policy.recovery`) and a joining client's buffered messages
all write through :meth:`Writer.write`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from gateway.policy.lag import Lag
from gateway.policy.limits import Limits
from gateway.policy.observer import Observer
from gateway.policy.probes import Probes
from gateway.policy.state import OVER, Client, Framer, Job

__all__ = ["Mark", "Writer"]

log = logging.getLogger("gateway.policy")

Mark = tuple[int, int, int]
"""A job's ``(sent, framed_bytes, conflated)`` before a batch, for :meth:`Writer.report`."""

_ZERO: Mark = (0, 0, 0)


class Writer:
    """Applies the write rule and reports what it wrote.

    Args:
        limits: ``client_buffer``, the unsent bytes above which a client lags.
        framer: Frames a message once for the clients that share frames.
        lag: Where held messages go and lagging starts.
        probes: The current probe and who owes one.
        observer: Told of each batch written and of conflated messages.
        clock: Wall clock, for the age at write time.
    """

    def __init__(
        self,
        limits: Limits,
        *,
        framer: Framer,
        lag: Lag,
        probes: Probes,
        observer: Observer,
        clock: Callable[[], float],
    ) -> None:
        self._limit = limits.client_buffer
        self._framer = framer
        self._lag = lag
        self._probes = probes
        self._observer = observer
        self._clock = clock

    def write(self, clients: Collection[Client], job: Job) -> None:
        """Write ``job``'s message to ``clients`` (see the module docstring); adds to its counts."""
        frame = job.frame
        if frame is None:
            # Framed up front: one framing per message even when no client shares it, against
            # a per-client "framed yet?" test in the loop.
            frame = job.frame = self._framer(job.data, job.binary)
        limit = self._limit
        # The hot loop counts what it did not write (rare), not what it wrote.
        missed = 0
        for client in clients:
            if client.direct:
                # A slot read, then a call: `client.offer(...)` would be an unspecialised method
                # look-up (the attribute is an instance slot, not a method of the class).
                offer = client.offer
                outcome = offer(frame, limit)
                if outcome:
                    missed += 1
                    if outcome == OVER:
                        self._over(client, job)
            else:
                missed += 1
                self._other(client, job, frame)
        ready = len(clients) - missed
        if ready:
            job.sent += ready
            job.framed_bytes += ready * len(frame)

    def _over(self, client: Client, job: Job) -> None:
        self._lag.hold(client, job.slot, job.data, job.binary, job.captured)
        self._lag.start(client)

    def _other(self, client: Client, job: Job, frame: bytes) -> None:
        """The rule for a client that is not ready: lagging, due a probe, or framed per connection."""
        if client.lagging_since is not None:
            if self._lag.hold(client, job.slot, job.data, job.binary, job.captured):
                job.conflated += 1
            return
        if client.shared:
            # Due a lag probe: the frame with the round's ping right behind it, built once per
            # message, written in the same call (no extra write per probe).
            probe = job.probe
            if probe is None:
                payload, ping = self._probes.current
                probe = job.probe = (payload, frame + ping)
            outcome = client.offer(probe[1], self._limit)
            if not outcome:
                job.sent += 1
                job.framed_bytes += len(frame)
                self._probes.probed(client, probe[0])
            elif outcome == OVER:
                self._over(client, job)
            return
        if not client.writable():
            return
        if client.buffered() > self._limit:
            self._over(client, job)
            return
        try:
            job.framed_bytes += client.sink.write_message(job.data, job.binary)
            if client.probe_due:
                payload, ping = self._probes.current
                client.write_frame(ping)  # control frames are never compressed
                self._probes.probed(client, payload)
        except Exception as exc:  # a dying connection: its handler will clean up
            log.debug("write failed: %s", exc)
            return
        job.sent += 1

    @staticmethod
    def mark(job: Job) -> Mark:
        """The job's counts now, to report a batch against."""
        return (job.sent, job.framed_bytes, job.conflated)

    def report(self, job: Job, mark: Mark = _ZERO) -> None:
        """Tell the observer what one batch (a slice, a single write) did since ``mark``."""
        conflated = job.conflated - mark[2]
        if conflated:
            self._observer.dropped("conflated", conflated)
        sent = job.sent - mark[0]
        if sent:
            captured = job.captured
            age = None if captured is None else self._clock() - captured
            self._observer.written(job.kind, sent, job.framed_bytes - mark[1], age)

    def send(
        self,
        client: Client,
        slot: tuple[str, str],
        data: bytes,
        *,
        binary: bool = False,
        captured: float | None = None,
    ) -> None:
        """One message to one client (a flush, a joining client's buffer), by the same rule."""
        job = Job(slot, data, binary, captured, None)
        self.write((client,), job)
        self.report(job)
