"""Replay from a stream's bounded history (a Redis Stream), for clients that resume.

The producer appends each result to ``wire.history_key(stream)`` with the entry
id ``<epoch start ms>-<seq>`` *before* publishing it. A gateway that subscribes
to the live channel first and reads the history second therefore misses
nothing: a result is either in the history it read, or published after the
subscription took effect (or both, and the duplicate is dropped by seq).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from framecast import wire
from framecast.broker import Broker, Entry

__all__ = ["Replay", "replay"]


@dataclass(frozen=True)
class Replay:
    """What to send a subscribing client before it goes live.

    Attributes:
        messages: Encoded results, oldest first.
        reset: A :class:`framecast.wire.Reset` reason to send before them, or None.
        epoch: Epoch of the last message sent (or of the client's cursor).
        seq: Seq of the last message sent: live results up to it are duplicates.
    """

    messages: list[bytes] = field(default_factory=list)
    reset: str | None = None
    epoch: str | None = None
    seq: int = 0


async def replay(
    broker: Broker,
    stream: str,
    *,
    since: int | None = None,
    epoch: str | None = None,
    limit: int = 1000,
) -> Replay:
    """Work out what a client subscribing to ``stream`` gets before live messages.

    Without ``since``: the latest result (if any). With ``since`` and ``epoch``:
    every result after ``since`` in that epoch, or, when the history cannot
    provide them contiguously, a reset reason and the latest result:
    ``no-history`` (nothing stored), ``epoch-changed`` (the producer restarted),
    ``history-expired`` (trimmed past ``since``, or more than ``limit`` behind),
    ``position-ahead`` (``since`` is beyond the newest result of that epoch: a
    corrupt or foreign position, which the client must drop to receive anything).

    Raises:
        BrokerError: Redis could not be read.
    """
    key = wire.history_key(stream)
    latest = _latest(await broker.latest(key))
    if latest is None:
        return Replay(reset="no-history" if since is not None else None, epoch=epoch, seq=since or 0)
    data, peeked, entry = latest
    if since is None:
        return Replay([data], None, peeked.epoch, peeked.seq)
    if peeked.epoch != epoch:
        return Replay([data], "epoch-changed", peeked.epoch, peeked.seq)
    if since > peeked.seq:
        # No result of this epoch was ever numbered past the newest: the position is not one
        # this stream gave. Kept, it would make the client drop every result up to it as seen.
        return Replay([data], "position-ahead", peeked.epoch, peeked.seq)
    if since == peeked.seq:
        return Replay([], None, peeked.epoch, peeked.seq)  # up to date
    if peeked.seq - since > limit:
        return Replay([data], "history-expired", peeked.epoch, peeked.seq)
    entries = await broker.entries_after(key, f"{entry.ms}-{since}", count=limit)
    if not entries or entries[0].seq != since + 1:
        return Replay([data], "history-expired", peeked.epoch, peeked.seq)
    messages: list[bytes] = []
    last_epoch, last_seq = epoch, since
    for found in entries:
        message = found.data
        if message is None:
            continue
        try:
            item = wire.peek(message)
        except wire.WireError:
            continue
        messages.append(message)
        last_epoch, last_seq = item.epoch, item.seq
    return Replay(messages, None, last_epoch, last_seq)


def _latest(entry: Entry | None) -> tuple[bytes, wire.Peek, Entry] | None:
    if entry is None or entry.data is None:
        return None
    data = entry.data
    try:
        return data, wire.peek(data), entry
    except wire.WireError:
        return None
