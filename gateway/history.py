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

__all__ = ["EPOCH_STEPS", "Replay", "event_replay", "replay"]

EPOCH_STEPS = 8
"""Earlier epochs an events replay looks back through for the client's epoch (one read each)."""


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


async def event_replay(
    broker: Broker,
    stream: str,
    *,
    since: int,
    epoch: str,
    limit: int = 1000,
) -> Replay:
    """The events a client that has ``(epoch, since)`` missed, from the events history.

    Every event after it: the rest of its epoch and all of the later epochs' (a producer restart
    loses none). Its epoch is found by stepping back one epoch at a time from the newest entry
    (``XREVRANGE key (<ms>-0 - COUNT 1`` gives the previous epoch's last event), at most
    :data:`EPOCH_STEPS`. When the history cannot give them contiguously, a reset reason (sent
    with ``kind: event``): ``no-history``, ``history-expired`` (trimmed past ``since``, or more
    than ``limit`` behind), ``position-ahead`` (beyond its epoch's last event), or
    ``epoch-changed`` (its epoch is not in the history: the newest epoch's events are replayed
    from its seq 1 when the history still holds them). The replay's ``(epoch, seq)`` is its last
    event's (or the client's position when it is up to date); with a reset and nothing replayed,
    ``epoch`` is None: every live event from the subscription on is new to the client.

    Raises:
        BrokerError: Redis could not be read.
    """
    key = wire.events_key(stream)
    newest = _latest(await broker.latest(key))
    if newest is None:
        return Replay(reset="no-history")
    _, top, top_entry = newest
    start: Entry = top_entry  # an entry of the client's epoch (its newest), once found
    last_of_epoch = top.seq
    if top.epoch != epoch:
        found = None
        ms = top_entry.ms
        for _ in range(EPOCH_STEPS):
            before = _latest(await broker.entry_before(key, f"{ms}-0"))
            if before is None:
                break
            _, peeked, entry = before
            if peeked.epoch == epoch:
                found = (peeked, entry)
                break
            ms = entry.ms
        if found is None:
            return await _newest_epoch(broker, key, top, top_entry, limit)
        last_of_epoch, start = found[0].seq, found[1]
    if since > last_of_epoch:
        return Replay(reset="position-ahead")
    if start is top_entry and since == top.seq:
        return Replay([], None, epoch, since)  # up to date
    if start is top_entry and top.seq - since > limit:
        return Replay(reset="history-expired")
    entries = await broker.entries_after(key, f"{start.ms}-{since}", count=limit)
    if not _reaches(entries, top_entry, limit):
        return Replay(reset="history-expired")  # trimmed meanwhile, or more than limit behind
    first = entries[0]
    contiguous = (first.ms == start.ms and first.seq == since + 1) or (
        since == last_of_epoch and first.ms > start.ms and first.seq == 1
    )
    if not contiguous:
        return Replay(reset="history-expired")
    return _replayed(entries, None, epoch, since)


async def _newest_epoch(broker: Broker, key: str, top: wire.Peek, top_entry: Entry, limit: int) -> Replay:
    """The client's epoch is gone from the history: the newest epoch's events from its seq 1."""
    if top.seq > limit:
        return Replay(reset="history-expired")
    entries = await broker.entries_after(key, f"{top_entry.ms}-0", count=limit)
    if not _reaches(entries, top_entry, limit) or entries[0].seq != 1:
        return Replay(reset="history-expired")
    return _replayed(entries, "epoch-changed", None, 0)


def _reaches(entries: list[Entry], top: Entry, limit: int) -> bool:
    """Whether ``entries`` run up to ``top`` (the newest entry when the replay began).

    Events published since then may follow it: the read is not cut short by them, only by
    ``limit`` before reaching ``top``.
    """
    if not entries:
        return False
    last = entries[-1]
    return len(entries) < limit or (last.ms, last.seq) >= (top.ms, top.seq)


def _replayed(entries: list[Entry], reset: str | None, epoch: str | None, seq: int) -> Replay:
    messages: list[bytes] = []
    for found in entries:
        if found.data is None:
            continue
        try:
            item = wire.peek(found.data)
        except wire.WireError:
            continue
        messages.append(found.data)
        epoch, seq = item.epoch, item.seq
    return Replay(messages, reset, epoch, seq)


def _latest(entry: Entry | None) -> tuple[bytes, wire.Peek, Entry] | None:
    if entry is None or entry.data is None:
        return None
    data = entry.data
    try:
        return data, wire.peek(data), entry
    except wire.WireError:
        return None
