"""Membership: the clients, and per stream who is live, who takes which kind, who is joining."""

from __future__ import annotations

from collections.abc import Hashable

from gateway.policy.state import FILTERED, RESULT, Client, Join, Sink

__all__ = ["Membership"]

Members = dict[Client, None]


class Membership:
    """Clients by key, and each stream's audiences (dicts used as ordered sets).

    A client that chose nothing is in every audience of its stream; one that chose ``kinds``
    only in theirs, and one that capped its results in no results audience (its results are
    :mod:`gateway.policy.caps`'). So a message goes to its kind's audience as it is, with no
    test per client: a filter costs the clients that set one, never the others.

    Attributes:
        clients: Every client, by key.
        live: Per stream, the clients live on it (gateway notices go to all of them).
        kinds: Per stream and kind (:data:`~gateway.policy.state.FILTERED`), the live clients
            that take that kind as it comes.
        previews: Per stream, the live clients that asked for its previews too.
        joining: Per stream, the clients whose live messages are buffered (their replay runs).
    """

    def __init__(self) -> None:
        self.clients: dict[Hashable, Client] = {}
        self.live: dict[str, Members] = {}
        self.kinds: dict[str, dict[str, Members]] = {}
        self.previews: dict[str, Members] = {}
        self.joining: dict[str, Members] = {}

    def client(self, key: Hashable, sink: Sink) -> Client:
        """The client of ``key``, made with ``sink`` if it is new."""
        client = self.clients.get(key)
        if client is None:
            client = self.clients[key] = Client(key, sink)
        return client

    def join(self, stream: str, client: Client) -> None:
        """``client`` joins ``stream``: its live messages are buffered until it goes live."""
        client.joining[stream] = Join()
        self.joining.setdefault(stream, {})[client] = None

    def joined(self, stream: str, client: Client) -> Join | None:
        """``client`` goes live on ``stream``: its join buffer, if it was joining."""
        join = client.joining.pop(stream, None)
        members = self.joining.get(stream)
        if members is not None:
            members.pop(client, None)
            if not members:
                del self.joining[stream]
        return join

    def attach(self, stream: str, client: Client) -> None:
        """``client`` is live on ``stream``: in the audience of each kind it takes (and previews)."""
        self.live.setdefault(stream, {})[client] = None
        by_kind = self.kinds.get(stream)
        if by_kind is None:
            by_kind = self.kinds[stream] = {kind: {} for kind in FILTERED}
        cap = client.caps.get(stream)
        if cap is None:
            for members in by_kind.values():
                members[client] = None
        else:
            for kind in cap.kinds:
                if kind != RESULT or not cap.interval:
                    by_kind[kind][client] = None
        if client.streams.get(stream):
            self.previews.setdefault(stream, {})[client] = None

    def detach(self, stream: str, client: Client) -> None:
        """``client`` is out of every audience of ``stream``."""
        for table in (self.live, self.previews, self.joining):
            members = table.get(stream)
            if members is not None and client in members:
                del members[client]
                if not members:
                    del table[stream]
        if stream not in self.live:
            self.kinds.pop(stream, None)
        else:
            for members in self.kinds[stream].values():
                members.pop(client, None)
        client.joining.pop(stream, None)

    def audience(self, stream: str, kind: str) -> Members | None:
        """The live clients of ``stream`` that take messages of ``kind`` as they come."""
        by_kind = self.kinds.get(stream)
        if by_kind is None:
            return None
        members = by_kind.get(kind)
        return self.live.get(stream) if members is None else members

    def forget(self, client: Client) -> None:
        """``client`` is gone."""
        self.clients.pop(client.key, None)

    def streams(self) -> list[str]:
        """Streams with at least one client (live or joining)."""
        return sorted(set(self.live) | set(self.joining))

    def count(self, stream: str | None = None) -> int:
        """Clients of ``stream`` (live and joining), or all clients."""
        if stream is None:
            return len(self.clients)
        return len(self.live.get(stream, ())) + len(self.joining.get(stream, ()))
