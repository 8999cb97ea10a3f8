"""Lag measured end to end: lag probes, a WebSocket ping written right behind the data.

A balancer between gateway and client reads whatever the gateway writes, so the gateway's own
buffer level cannot see a client stall behind it. A client answers a ping only once it has read
everything before it, through any number of proxies: a probe unanswered for more than
``lag_threshold`` makes the client lagging (:mod:`gateway.policy.lag`), and one unanswered for
more than ``max_lag`` gets it closed.

Probes go out in waves per stream: once a stream's fan-outs carried ``probe_messages`` messages
or ``probe_bytes`` bytes since its last wave, each of its clients with no probe out owes one,
written right behind its next message (the write rule, :mod:`gateway.policy.writer`, does it in
the same write). The cost is the answer (a frame the gateway must read and parse, tens of
microseconds): one per client per ``probe_messages`` deliveries at most, none without traffic.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.policy.lag import Lag
from gateway.policy.limits import Limits
from gateway.policy.observer import Observer
from gateway.policy.state import PREVIEW, Client, Job, PingFramer

__all__ = ["Probes"]

# Lag probes carry 8 bytes, this prefix and a round number: never equal to the 4 random bytes of
# websockets' own keepalive pings, so both can be outstanding on one connection.
_PROBE_PREFIX = b"fcl:"

Members = dict[str, dict[Client, None]]


class Probes:
    """Probe rounds, the traffic that makes a stream due a wave, and the probes out.

    Args:
        limits: ``lag_threshold``, ``probe_messages``, ``probe_bytes``.
        ping_framer: Frames a probe (None: no probes, whatever the threshold).
        lag: Where a client whose probe is overdue starts lagging.
        observer: Told of probes sent, answered and overdue.
        monotonic: Clock for probe ages.
    """

    def __init__(
        self,
        limits: Limits,
        *,
        ping_framer: PingFramer | None,
        lag: Lag,
        observer: Observer,
        monotonic: Callable[[], float],
    ) -> None:
        self.threshold = limits.lag_threshold if ping_framer is not None and limits.probing else 0.0
        """Seconds a probe may go unanswered; 0 when probes are off."""
        self._ping_framer = ping_framer
        self._messages = limits.probe_messages
        self._bytes = limits.probe_bytes
        self._lag = lag
        self._observer = observer
        self._monotonic = monotonic
        self._round = 0
        self.current: tuple[bytes, bytes] = (b"", b"")
        """The current round's (ping payload, ping frame), renewed by every :meth:`round`."""
        # Per stream, since its last wave of probes: [messages, bytes, previews, preview bytes].
        self._traffic: dict[str, list[int]] = {}
        # Clients with a probe out, for the rounds' lag check (not a pass over every client).
        self._outstanding: dict[Client, None] = {}

    def round(self, live: Members, previews: Members, joining: Members) -> None:
        """A probe interval passed: start a round, and find the clients that lag.

        A client whose probe has gone unanswered for more than ``lag_threshold`` starts
        lagging, counted from the probe's send time. Then every stream that carried enough
        since its last wave gets one: each of its clients with no probe out owes one (previews
        count too, for the clients that take them). Cost per round: the streams, the clients
        with a probe out, and the audience of a stream due a wave; never a pass over every
        client, and no write of its own.
        """
        assert self._ping_framer is not None
        self._round = (self._round + 1) & 0xFFFFFFFF
        payload = _PROBE_PREFIX + self._round.to_bytes(4, "big")
        self.current = (payload, self._ping_framer(payload))
        now = self._monotonic()
        for client in self._outstanding:
            sent = client.probe_sent
            if (
                sent is not None
                and client.lagging_since is None
                and not client.closing
                and now - sent > self.threshold
            ):
                self._observer.probe_lagged()
                self._lag.start(client, since=sent)
        most, size = self._messages, self._bytes
        for stream, carried in list(self._traffic.items()):
            if stream not in live and stream not in joining:
                del self._traffic[stream]  # nobody left to probe: a stream's entry goes with it
                continue
            messages, bytes_, previewed, preview_bytes = carried
            if messages >= most or bytes_ >= size:
                _wave(live.get(stream))
                carried[:] = (0, 0, 0, 0)
            elif messages + previewed >= most or bytes_ + preview_bytes >= size:
                # Previews go to their takers only: they may owe a probe before the rest.
                _wave(previews.get(stream))
                carried[2] = carried[3] = 0

    def carried(self, job: Job) -> None:
        """Count a message whose fan-out starts towards its clients' next probe (per message, not
        per client). Messages dropped before their fan-out (stale, overload) reach nobody: not counted.
        """
        stream = job.slot[0]
        carried = self._traffic.get(stream)
        if carried is None:
            carried = self._traffic[stream] = [0, 0, 0, 0]
        index = 2 if job.kind == PREVIEW else 0
        carried[index] += 1
        carried[index + 1] += len(job.data)

    def probed(self, client: Client, payload: bytes) -> None:
        """A probe went out behind the data just written to ``client``."""
        client.due(False)
        client.probe_sent = self._monotonic()
        self._outstanding[client] = None
        self._observer.probe_sent()
        client.sink.expect_pong(payload)

    def answered(self, client: Client) -> bool:
        """``client`` answered its probe: True if it had one out (a second answer counts once)."""
        if client.probe_sent is None:
            return False
        client.probe_sent = None
        self._outstanding.pop(client, None)
        self._observer.probe_answered()
        return True

    def forget(self, client: Client) -> None:
        """``client`` is closing or gone: its probe is no longer awaited."""
        self._outstanding.pop(client, None)

    def age(self, client: Client) -> float | None:
        """Seconds the client's probe has gone unanswered, or None if it has none out."""
        return None if client.probe_sent is None else self._monotonic() - client.probe_sent

    def oldest(self) -> float:
        """The oldest unanswered probe's age over every client, in seconds (0: none out)."""
        sent = [c.probe_sent for c in self._outstanding if c.probe_sent is not None]
        return self._monotonic() - min(sent) if sent else 0.0


def _wave(clients: dict[Client, None] | None) -> None:
    for client in clients or ():
        if client.probe_sent is None and not client.probe_due and not client.closing:
            client.due(True)
