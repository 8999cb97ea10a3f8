"""Membership: the clients, and per stream who is live, who takes previews and who is joining."""

from __future__ import annotations

from collections.abc import Hashable

from gateway.policy.state import Client, Join, Sink

__all__ = ["Membership"]


class Membership:
    """Clients by key, and each stream's audiences (dicts used as ordered sets).

    Attributes:
        clients: Every client, by key.
        live: Per stream, the clients receiving its messages.
        previews: Per stream, the live clients that asked for its previews too.
        joining: Per stream, the clients whose live messages are buffered (their replay runs).
    """

    def __init__(self) -> None:
        self.clients: dict[Hashable, Client] = {}
        self.live: dict[str, dict[Client, None]] = {}
        self.previews: dict[str, dict[Client, None]] = {}
        self.joining: dict[str, dict[Client, None]] = {}

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
        """``client`` is live on ``stream`` (and takes its previews if it asked)."""
        self.live.setdefault(stream, {})[client] = None
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
        client.joining.pop(stream, None)

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
