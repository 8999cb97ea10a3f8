"""Video by group of pictures (GOP), sans I/O: a delta frame is useless without its chain.

A video frame decodes only after its group's keyframe and every frame between them, so the
rules that suit results (the newest per stream while a client lags, a stale message dropped on
its own) would hand a decoder broken chains. Video gets rules of its own:

* **The stream's chain.** Frames of a stream are numbered (``seq``, +1 per frame of an epoch;
  ``group`` names the keyframe a frame's group starts with). A keyframe starts a chain; a delta
  continues it only if it is the next ``seq`` of the same epoch and group. A gap (a frame lost
  upstream, a new epoch without its keyframe) breaks the chain: nothing is sent until the next
  keyframe.
* **The current GOP**, the keyframe and what followed it, is kept per stream, bounded by
  ``video_gop_bytes``: a group that outgrows it is given up (joining clients then wait for the
  next keyframe; live ones are not affected). It is kept for as long as frames come, after the
  last viewer left too (the gateway's video channel lingers: a viewer who reloads starts from
  it at once), until :meth:`Video.end` says they stopped: kept from before, it would miss what
  came meanwhile.
* **Joining.** A client that starts watching gets the current GOP first, frame by frame from
  its keyframe, and decodes at once; without one (none yet, given up, or its keyframe older
  than ``max_age``) it starts at the next keyframe.
* **Lagging: conflated by whole groups.** A frame a client has no room for (more than
  ``client_buffer`` unsent, or lagging on its other messages) is not held: the client skips
  the rest of that group and resumes at a keyframe, once its buffer is down to ``low_water``.
  So it never receives a delta frame without its chain, and the policy holds no video bytes per
  client: what a client holds is its socket buffer, at most ``client_buffer`` plus one frame.
* **Stale video** (older than ``max_age`` on arrival) is dropped with the rest of its group:
  clients resume at the next fresh keyframe, a keyframe boundary.

Video bypasses the join buffers, slices and conflation slots of the other kinds (see
:mod:`gateway.policy.writer`): one pass over the stream's video clients per frame, the frame
framed once for all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from framecast import wire
from gateway.policy.limits import Limits
from gateway.policy.observer import Observer
from gateway.policy.probes import Probes
from gateway.policy.state import WRITTEN, Client, Framer, Job

__all__ = ["VIDEO", "Chain", "Video"]

log = logging.getLogger("gateway.policy")

VIDEO = "video"
"""The kind of binary video frames (observer labels)."""


class Chain:
    """One stream's video: where its chain stands, and its current group of pictures.

    Attributes:
        epoch: The epoch of the last frame taken into the chain.
        seq: The ``seq`` of that frame.
        group: The ``group`` of that frame.
        broken: No chain since the last gap or stale frame: frames wait for a keyframe.
        frames: The current GOP: ``(data, frame, captured_at)`` from its keyframe (``frame``:
            ``data`` framed once); empty when there is none (broken, or given up for its size).
        size: Bytes of the frames of ``frames``.
        kept: Whether ``frames`` holds the group whole so far (False once it outgrew the bound).
    """

    __slots__ = ("broken", "epoch", "frames", "group", "kept", "seq", "size")

    def __init__(self) -> None:
        self.epoch = ""
        self.seq = 0
        self.group = 0
        self.broken = True
        self.frames: list[tuple[bytes, bytes, float]] = []
        self.size = 0
        self.kept = False

    def take(self, peek: wire.VideoPeek) -> bool:
        """Whether a frame continues (or, a keyframe, starts) the chain; records it if so."""
        if peek.key:
            self.frames.clear()
            self.size = 0
            self.kept = True
        elif self.broken or peek.epoch != self.epoch or peek.seq != self.seq + 1 or peek.group != self.group:
            self.cut()
            return False
        self.broken = False
        self.epoch, self.seq, self.group = peek.epoch, peek.seq, peek.group
        return True

    def cut(self) -> None:
        """No chain until the next keyframe."""
        self.broken = True
        self.frames.clear()
        self.size = 0
        self.kept = False

    def keep(self, data: bytes, frame: bytes, captured_at: float, bound: int) -> None:
        """Add a frame of the chain to the current GOP, or give the GOP up past ``bound`` bytes."""
        if not self.kept:
            return
        if self.size + len(frame) > bound:
            self.frames.clear()  # joining clients start at the next keyframe
            self.size = 0
            self.kept = False
            return
        self.frames.append((data, frame, captured_at))
        self.size += len(frame)


class Video:
    """The video rules (see the module docstring) for every stream's video clients.

    Args:
        limits: ``client_buffer``, ``low_water``, ``max_age`` and ``video_gop_bytes``.
        framer: Frames a message once for the clients that share frames.
        observer: Told of frames in, written and dropped.
        clock: Wall clock in Unix seconds (``captured_at`` is Unix time).
        probes: Lag probes: video counts towards a stream's next wave, and a client due a probe
            gets it right behind its next frame (None: no probes).
    """

    def __init__(
        self,
        limits: Limits,
        *,
        framer: Framer,
        observer: Observer,
        clock: Callable[[], float],
        probes: Probes | None = None,
    ) -> None:
        self._limit = limits.client_buffer
        self._resume = limits.low_water
        self._max_age = limits.max_age
        self._gop_bytes = limits.video_gop_bytes
        self._framer = framer
        self._observer = observer
        self._clock = clock
        self._probes = probes if probes is not None and probes.threshold else None
        self._chains: dict[str, Chain] = {}
        # stream -> video client -> waits for a keyframe (skips deltas). dict order = join order.
        self._viewers: dict[str, dict[Client, bool]] = {}
        self._wanted: dict[str, set[Client]] = {}  # asked for video, not live yet (replay running)

    # ------------------------------------------------------------------
    # Membership

    def want(self, stream: str, client: Client, video: bool) -> None:
        """``client`` (re)subscribed to ``stream``, with or without video; live from :meth:`attach`."""
        self.detach(stream, client)
        if video:
            self._wanted.setdefault(stream, set()).add(client)

    def attach(self, stream: str, client: Client) -> None:
        """``client`` goes live on ``stream``: if it asked for video, the current GOP first."""
        wanted = self._wanted.get(stream)
        if not wanted or client not in wanted:
            return
        wanted.discard(client)
        if not wanted:
            del self._wanted[stream]
        viewers = self._viewers.setdefault(stream, {})
        viewers[client] = True
        chain = self._chains.get(stream)
        if chain is None or not chain.frames:
            return
        max_age = self._max_age
        keyframe_captured = chain.frames[0][2]
        # The group is live while its newest frame is fresh: the joiner decodes from the keyframe
        # through to that frame at once, so what it then shows is that fresh frame. Judged by the
        # keyframe instead, a joiner late in a group (the keyframe as old as the interval, 2 s by
        # default, like --max-age) would wait up to a whole interval for the next one.
        if max_age and self._clock() - chain.frames[-1][2] > max_age:
            return  # the stream stopped or froze: start at the next keyframe
        sent = nbytes = 0
        for data, frame, _captured in chain.frames:
            if not self._write(client, data, frame, self._limit):
                viewers[client] = True  # a prefix of the chain: the rest waits for a keyframe
                break
            viewers[client] = False
            sent += 1
            nbytes += len(frame)
        if sent:
            self._observer.written(VIDEO, sent, nbytes, self._clock() - keyframe_captured)

    def detach(self, stream: str, client: Client) -> None:
        """``client`` no longer gets ``stream``'s video."""
        for table in (self._viewers, self._wanted):
            members = table.get(stream)
            if members is not None and client in members:
                if isinstance(members, dict):
                    del members[client]
                else:
                    members.discard(client)
                if not members:
                    del table[stream]

    def end(self, stream: str) -> None:
        """``stream``'s frames stopped coming (the gateway gave its video channel up): no GOP."""
        self._chains.pop(stream, None)

    def forget(self, client: Client, streams: Iterable[str]) -> None:
        """``client`` is gone."""
        for stream in streams:
            self.detach(stream, client)

    def viewers(self, stream: str) -> int:
        """Clients of ``stream``'s video (live and waiting to go live)."""
        return len(self._viewers.get(stream, ())) + len(self._wanted.get(stream, ()))

    def waiting(self, stream: str, client: Client) -> bool | None:
        """Whether a live video client waits for a keyframe (None: not a live video client)."""
        return self._viewers.get(stream, {}).get(client)

    def gop_bytes(self, stream: str) -> int:
        """Bytes of ``stream``'s current GOP."""
        chain = self._chains.get(stream)
        return 0 if chain is None else chain.size

    # ------------------------------------------------------------------
    # Frames

    def deliver(self, stream: str, data: bytes) -> wire.VideoPeek | None:
        """A binary video frame of ``stream`` arrived. Returns its routing fields (None: malformed)."""
        try:
            peek = wire.peek_video(data)
        except wire.WireError as exc:
            self._observer.dropped("malformed", 1)
            log.debug("dropped a malformed video frame on %s: %s", stream, exc)
            return None
        self._observer.received(VIDEO)
        chain = self._chains.get(stream)
        if chain is None:
            chain = self._chains[stream] = Chain()
        viewers = self._viewers.get(stream)
        if not chain.take(peek):
            self._skip_all(viewers, "broken-chain")
            return peek
        age = self._clock() - peek.captured_at
        if self._max_age and age > self._max_age:
            chain.cut()
            self._skip_all(viewers, "stale")
            return peek
        frame = self._framer(data, True)
        chain.keep(data, frame, peek.captured_at, self._gop_bytes)
        if viewers:
            if self._probes is not None:
                self._probes.carried(Job((stream, VIDEO), data, True, None, None))
            self._fan(viewers, data, frame, peek.key, age)
        return peek

    def _fan(self, viewers: dict[Client, bool], data: bytes, frame: bytes, key: bool, age: float) -> None:
        # The hot loop, flat like the write rule's (Writer.write): a viewer in its group's chain
        # that is ready (Client.direct) and not closing costs two flag tests and one sink call;
        # every other case is out of line. It counts what it did not write (rare).
        limit = self._limit
        missed = 0
        for client, waits in viewers.items():
            if not waits and client.direct and not client.closing:
                # A slot read, then a call: `client.offer(...)` would be an unspecialised method
                # look-up (the attribute is an instance slot, not a method of the class).
                offer = client.offer
                if offer(frame, limit):  # not WRITTEN: no room, or not writable
                    viewers[client] = True  # skip the rest of this group
                    missed += 1
            elif not self._other(viewers, client, waits, data, frame, key):
                missed += 1
        sent = len(viewers) - missed
        if sent:
            self._observer.written(VIDEO, sent, sent * len(frame), age)
        if missed:
            self._observer.dropped("conflated", missed)

    def _other(
        self, viewers: dict[Client, bool], client: Client, waits: bool, data: bytes, frame: bytes, key: bool
    ) -> bool:
        """A viewer that is not ready, or waits for a keyframe: whether the frame was written to it."""
        if waits:
            if not key:
                return False
            # A client resumes at a keyframe only with its buffer down to low_water, so that it
            # does not skip again a few frames into the group.
            if not self._write(client, data, frame, self._resume):
                return False
            viewers[client] = False
            return True
        if self._write(client, data, frame, self._limit):
            return True
        viewers[client] = True  # skip the rest of this group
        return False

    def _write(self, client: Client, data: bytes, frame: bytes, limit: int) -> bool:
        """Write one video frame to ``client`` if it has room; False if it did not."""
        if client.closing or client.lagging_since is not None:
            return False
        if client.shared:
            probes = self._probes
            if client.probe_due and probes is not None:
                # The round's ping right behind the frame, in the same write (as the write rule
                # does): a client stalled behind a balancer is found by video alone.
                payload, ping = probes.current
                if client.offer(frame + ping, limit) != WRITTEN:
                    return False
                probes.probed(client, payload)
                return True
            return client.offer(frame, limit) == WRITTEN
        sink = client.sink  # framed (and compressed) per connection
        if not sink.writable() or sink.buffered() > limit:
            return False
        try:
            sink.write_message(data, True)
        except Exception as exc:  # a dying connection: its handler cleans up
            log.debug("write failed: %s", exc)
            return False
        return True

    def _skip_all(self, viewers: dict[Client, bool] | None, reason: str) -> None:
        if not viewers:
            return
        for client in viewers:
            viewers[client] = True
        self._observer.dropped(reason, len(viewers))
