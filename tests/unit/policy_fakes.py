"""Fakes for the fan-out policy's tests: a recording sink, clocks, message makers (no socket, no loop)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from framecast import wire
from gateway.policy import OVER, SKIP, WRITTEN, Close, Counters, Policy, Step, Timer, Wait

EPOCH = "e1"


def framer(data: bytes, binary: bool) -> bytes:
    """A stand-in framing: an opcode byte, a 4-byte length, the payload (the policy never looks inside)."""
    return (b"B" if binary else b"T") + len(data).to_bytes(4, "big") + data


def ping_framer(payload: bytes) -> bytes:
    """The same stand-in framing for a lag probe (a ping)."""
    return b"P" + len(payload).to_bytes(4, "big") + payload


def unframe(frames: bytes) -> list[tuple[bytes, bytes]]:
    """Split written bytes into (opcode byte, payload) frames."""
    out = []
    pos = 0
    while pos < len(frames):
        size = int.from_bytes(frames[pos + 1 : pos + 5], "big")
        out.append((frames[pos : pos + 1], frames[pos + 5 : pos + 5 + size]))
        pos += 5 + size
    assert pos == len(frames), "torn frame"
    return out


@dataclass
class Clock:
    """A settable clock: call it for the time."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Written:
    """One message a fake sink received, with the wall time of the write."""

    binary: bool
    data: bytes
    at: float

    @property
    def message(self) -> object:
        if not self.binary:
            return wire.decode(self.data)
        return wire.decode_video(self.data) if wire.is_video(self.data) else wire.decode_preview(self.data)


@dataclass
class FakeSink:
    """A client's output: a byte level the test drains by hand, and the messages written, in order."""

    wall: Callable[[], float]
    shared: bool = True
    level: int = 0
    open: bool = True
    fragmenting: bool = False
    written: list[Written] = field(default_factory=list)
    peak: int = 0
    # Lag probes: every ping written, as (index in `written` it follows, payload), and the
    # payloads registered with expect_pong, in order.
    pings: list[tuple[int, bytes]] = field(default_factory=list)
    expected: list[bytes] = field(default_factory=list)

    def buffered(self) -> int:
        return self.level

    def writable(self) -> bool:
        return self.open and not self.fragmenting

    def closed(self) -> bool:
        return not self.open

    def write_frame(self, frame: bytes) -> None:
        for opcode, data in unframe(frame):
            if opcode == b"P":
                self.pings.append((len(self.written), data))
                self.level += 5 + len(data)
            else:
                self._record(opcode == b"B", data, 5 + len(data))

    def expect_pong(self, payload: bytes) -> None:
        assert self.pings and self.pings[-1][1] == payload, "a pong expected for a ping never written"
        self.expected.append(payload)

    def offer(self, frame: bytes, limit: int) -> int:
        if not self.writable():
            return SKIP
        if self.level > limit:
            return OVER
        self.write_frame(frame)
        return WRITTEN

    def write_message(self, data: bytes, binary: bool) -> int:
        if not self.open:
            raise ConnectionError("closed")
        self._record(binary, data, len(data))
        return len(data)

    def _record(self, binary: bool, data: bytes, size: int) -> None:
        self.written.append(Written(binary, data, self.wall()))
        self.level += size
        self.peak = max(self.peak, self.level)

    def results(self, stream: str | None = None) -> list[int]:
        """Seqs of the results written, in order."""
        out = []
        for item in self.written:
            message = item.message
            if isinstance(message, wire.Result) and (stream is None or message.stream == stream):
                out.append(message.seq)
        return out

    def kinds(self) -> list[str]:
        return [str(getattr(item.message, "type", "?")) for item in self.written]

    def events(self, stream: str | None = None) -> list[int]:
        """Seqs of the events written, in order."""
        return [
            m.seq
            for m in (item.message for item in self.written)
            if isinstance(m, wire.Event) and (stream is None or m.stream == stream)
        ]


def result(stream: str, seq: int, *, captured_at: float, epoch: str = EPOCH, pad: int = 0) -> bytes:
    detections = (wire.Detection(label="x" * pad, confidence=0.5, box=(0.0, 0.0, 1.0, 1.0)),) if pad else ()
    return wire.encode(
        wire.Result(
            stream=stream,
            epoch=epoch,
            seq=seq,
            frame=seq,
            captured_at=captured_at,
            published_at=captured_at,
            width=10,
            height=10,
            detections=detections,
        )
    )


def event(stream: str, seq: int, *, captured_at: float, epoch: str = EPOCH, pad: int = 0) -> bytes:
    return wire.encode(
        wire.Event(
            stream=stream,
            epoch=epoch,
            seq=seq,
            kind="cross",
            line="door" + "x" * pad,
            direction="in",
            track=seq,
            label="person",
            frame=seq,
            captured_at=captured_at,
            published_at=captured_at,
        )
    )


def status(stream: str, seq: int, *, sent_at: float) -> bytes:
    return wire.encode(wire.Status(stream=stream, epoch=EPOCH, seq=seq, sent_at=sent_at))


def preview(stream: str, seq: int, *, captured_at: float) -> bytes:
    return wire.encode_preview(
        wire.Preview(
            stream=stream,
            epoch=EPOCH,
            seq=seq,
            frame=seq,
            captured_at=captured_at,
            width=4,
            height=4,
            jpeg=b"\xff\xd8jpeg\xff\xd9",
        )
    )


class Recorder(Counters):
    """The policy's counters, and every batch written and fan-out ended, as the observer saw them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, float | None, int]] = []
        self.fanouts: list[tuple[str, float | None, int]] = []

    def written(self, kind: str, clients: int, nbytes: int, age: float | None) -> None:
        super().written(kind, clients, nbytes, age)
        self.writes.append((kind, age, clients))

    def fanned_out(self, kind: str, seconds: float, age: float | None, clients: int) -> None:
        self.fanouts.append((kind, age, clients))


class Driver:
    """Runs a policy's actions the way the asyncio driver would, synchronously and in order."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.steps: list[str] = []
        self.waits: list[object] = []
        self.closes: list[object] = []
        self.timers: list[float] = []

    def collect(self) -> None:
        for action in self.policy.actions():
            if isinstance(action, Step):
                self.steps.append(action.stream)
            elif isinstance(action, Wait):
                self.waits.append(action.key)
            elif isinstance(action, Close):
                self.closes.append(action.key)
            elif isinstance(action, Timer):
                self.timers.append(action.at)

    def fire_timers(self, now: float) -> int:
        """Wake the policy for each timer due at ``now`` (monotonic); returns how many fired."""
        self.collect()
        due = [at for at in self.timers if at <= now]
        self.timers = [at for at in self.timers if at > now]
        for _ in due:
            self.policy.wake()
        self.collect()
        return len(due)

    def run_steps(self, *, limit: int = 10_000) -> int:
        """Run queued slices (and the ones they queue) until none is left; returns how many ran."""
        self.collect()
        ran = 0
        while self.steps:
            assert ran < limit, "slices never ended"
            self.policy.step(self.steps.pop(0))
            self.collect()
            ran += 1
        return ran
