"""The Python client: subscribe to streams on a gateway, survive reconnects, miss nothing.

::

    from framecast import client, wire

    async with client.subscribe("http://127.0.0.1:8080", ["cam1"]) as messages:
        async for msg in messages:
            if isinstance(msg, wire.Result):
                print(msg.seq, [d.label for d in msg.detections])
            elif isinstance(msg, wire.Event):
                print(msg.kind, msg.zone or msg.line, msg.direction or "", msg.track)

    # a counter's dashboard: events and heartbeats only, no result firehose
    client.subscribe(url, ["door"], kinds=["event", "status"])
    # a wall display: at most 2 results per second, always the newest
    client.subscribe(url, ["lobby"], max_rate=2)

:func:`subscribe` returns a :class:`Subscription`, an async iterator of typed
:mod:`framecast.wire` messages (:class:`~framecast.wire.Result`,
:class:`~framecast.wire.Event`,
:class:`~framecast.wire.Status`, :class:`~framecast.wire.Preview`,
:class:`~framecast.wire.Reset`, :class:`~framecast.wire.Gap`, plus the
gateway's :class:`~framecast.wire.Hello`, :class:`~framecast.wire.Subscribed`,
:class:`~framecast.wire.Unsubscribed` and :class:`~framecast.wire.Error`).
Behind it:

* **Reconnect.** A dropped connection, a slow-consumer close (4008) or a 5xx
  at the handshake is retried after a capped exponential backoff with jitter;
  a gateway going away (close 1001) or one that lost Redis (1013) is left at
  once, without a delay, for another gateway behind the load balancer. HTTP 401/403 at the handshake raises
  :class:`AuthError` at once; other 4xx answers raise :class:`ClientError`.
* **Resume.** Every (re)subscription carries ``since``/``epoch`` of the last
  result seen on that stream, so the gateway replays what was missed within
  its history window (or sends :class:`~framecast.wire.Reset` if it cannot).
  A :class:`~framecast.wire.Gap` (the gateway lost Redis for a while) triggers
  the same resubscription.
* **De-duplication.** Results and previews are delivered at most once per
  ``(epoch, seq)``, in increasing ``seq`` order within an epoch; results of an
  epoch that was replaced are dropped. Events likewise, by their own
  ``(epoch, seq)``, and they resume from their own position (``event_since``):
  an application that counts them misses none and counts none twice.

This module needs only ``websockets`` (no OpenCV, no numpy).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, TypeAlias

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from framecast import logs, wire
from framecast.exceptions import AuthError, ClientError, ConnectError
from framecast.retry import backoff

__all__ = [
    "POSITION_AHEAD",
    "AuthError",
    "ClientError",
    "ConnectError",
    "Cursor",
    "Message",
    "Position",
    "Subscription",
    "backoff",
    "subscribe",
    "websocket_url",
]

log = logging.getLogger(__name__)

Message: TypeAlias = (
    wire.Result
    | wire.Event
    | wire.Status
    | wire.Preview
    | wire.VideoFrame
    | wire.Hello
    | wire.Subscribed
    | wire.Unsubscribed
    | wire.Reset
    | wire.Gap
    | wire.Error
)
"""Everything a :class:`Subscription` yields."""

# Error codes after which the gateway will never serve a stream on this connection:
# resubscribing would only be refused again.
_REFUSALS = frozenset({"bad-stream", "forbidden", "too-many-streams"})
_MAX_MESSAGE = 16 * 2**20  # previews of large frames must fit


class Position(NamedTuple):
    """Where a stream is: the last result seen.

    Attributes:
        epoch: The producer run the result belongs to.
        seq: Its sequence number within the epoch.
    """

    epoch: str
    seq: int


POSITION_AHEAD = "position-ahead"
"""The :class:`~framecast.wire.Reset` reason for a ``since`` beyond the stream's newest result."""


class Cursor:
    """Per-stream positions and de-duplication by ``(epoch, seq)``.

    Pure bookkeeping, no I/O: :class:`Subscription` uses one, and an
    application that persists :attr:`positions` can pass them back as
    ``since`` to resume later.

    Args:
        since: Starting positions per stream (results at or before them are
            treated as already seen).
        event_since: Starting event positions per stream (events at or before
            them are treated as already seen).
        remember_epochs: How many replaced epochs per stream to remember, so
            that stragglers of an old producer run are dropped.
    """

    def __init__(
        self,
        since: Mapping[str, Position] | None = None,
        *,
        event_since: Mapping[str, Position] | None = None,
        remember_epochs: int = 8,
    ) -> None:
        self._results: dict[str, Position] = {s: Position(*p) for s, p in (since or {}).items()}
        self._events: dict[str, Position] = {s: Position(*p) for s, p in (event_since or {}).items()}
        self._previews: dict[str, Position] = {}
        self._video: dict[str, Position] = {}
        self._retired: dict[str, list[str]] = {}
        self._events_retired: dict[str, list[str]] = {}
        self._remember = remember_epochs
        self.duplicates = 0
        """Messages dropped because they were already delivered (or older)."""
        self.resets: dict[str, int] = {}
        """Resets received per stream: replays the gateway could not serve contiguously."""

    @property
    def positions(self) -> dict[str, Position]:
        """The last result delivered per stream (a copy)."""
        return dict(self._results)

    @property
    def event_positions(self) -> dict[str, Position]:
        """The last event delivered per stream (a copy)."""
        return dict(self._events)

    def position(self, stream: str) -> Position | None:
        """The last result delivered on ``stream``, if any."""
        return self._results.get(stream)

    def event_position(self, stream: str) -> Position | None:
        """The last event delivered on ``stream``, if any."""
        return self._events.get(stream)

    def accept(self, message: wire.Result | wire.Event | wire.Preview | wire.VideoFrame) -> bool:
        """Whether ``message`` is new; if so, record it as the stream's position.

        A result is new when it belongs to a different epoch than the last one
        (that is not a replaced epoch), or has a higher ``seq`` in the same one.
        Previews, video frames and events are tracked separately from results, by the
        same rule (events with epochs of their own: a new epoch in results does not retire
        the events of the old one that are still to come, in a replay).
        """
        if isinstance(message, wire.Event):
            table, retired = self._events, self._events_retired
        elif isinstance(message, wire.Result):
            table, retired = self._results, self._retired
        elif isinstance(message, wire.Preview):
            table, retired = self._previews, self._retired
        else:
            table, retired = self._video, self._retired
        stream = message.stream
        if message.epoch in retired.get(stream, ()):
            self.duplicates += 1
            return False
        last = table.get(stream)
        if last is not None and last.epoch == message.epoch and message.seq <= last.seq:
            self.duplicates += 1
            return False
        if not isinstance(message, wire.Preview) and last is not None and last.epoch != message.epoch:
            self._retire(retired, stream, last.epoch)
        table[stream] = Position(message.epoch, message.seq)
        return True

    def seed(self, stream: str, position: Position) -> None:
        """Set where ``stream`` starts, unless results were already delivered on it."""
        self._results.setdefault(stream, Position(*position))

    def reset(self, stream: str, reason: str = "") -> None:
        """Note a :class:`~framecast.wire.Reset` on ``stream``: the replay could not be served.

        The position is kept. A reset says what follows is not contiguous with it, not that
        what was delivered is undelivered: ``(epoch, seq)`` names one result for good, so a
        result already delivered is still dropped (the latest that follows a reset may be one
        the client got live while its resubscription was in flight), and a new epoch still
        retires the old one (:meth:`accept`). Except for ``position-ahead``: the position is
        beyond anything the stream numbered, so no result was delivered past the stream's
        newest and the position is dropped, or every result up to it would be dropped as seen.
        """
        self.resets[stream] = self.resets.get(stream, 0) + 1
        if reason == POSITION_AHEAD:
            self._results.pop(stream, None)
            self._previews.pop(stream, None)

    def _retire(self, table: dict[str, list[str]], stream: str, epoch: str) -> None:
        retired = table.setdefault(stream, [])
        if epoch not in retired:
            retired.append(epoch)
            del retired[: -self._remember]


def websocket_url(url: str, *, token: str | None = None) -> tuple[str, str | None]:
    """Turn what a user typed into the gateway's multiplexed ``/ws`` URL.

    Accepts ``http(s)://host[:port][/prefix]``, ``ws(s)://`` URLs, the ``/ws``
    endpoint itself and a single-stream ``/ws/<stream>`` URL.

    Args:
        url: The URL.
        token: Access token, added as the ``token`` query parameter.

    Returns:
        The ``ws://.../ws`` URL and the stream named in the URL, if any.

    Raises:
        ClientError: Not an http, https, ws or wss URL, or no host.
    """
    expected = "expected http://host:port or ws://host:port/ws"
    try:
        parts = urllib.parse.urlsplit(url.strip())
        parts.port  # noqa: B018 - parsed on access: a bad or out-of-range port raises here
    except ValueError as exc:  # "Invalid IPv6 URL" ('ws://[::1'), "Port out of range 0-65535"
        raise ClientError(f"{url!r} is not a gateway URL ({exc}; {expected})") from None
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    if parts.scheme not in schemes or not parts.hostname:
        raise ClientError(f"{url!r} is not a gateway URL ({expected})")
    segments = [s for s in parts.path.split("/") if s]
    stream = None
    if len(segments) >= 2 and segments[-2] == "ws":
        stream = wire.check_stream_name(urllib.parse.unquote(segments[-1]))
        segments = segments[:-1]
    elif not segments or segments[-1] != "ws":
        segments.append("ws")
    # Per-subscription choices travel in each subscribe operation, not in the URL.
    per_subscription = ("since", "epoch", "previews", "kinds", "max_rate", "event_since", "event_epoch")
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k not in per_subscription]
    if token is not None:
        query = [(k, v) for k, v in query if k != "token"] + [("token", token)]
    path = "/" + "/".join(segments)
    full = urllib.parse.urlunsplit(
        (schemes[parts.scheme], parts.netloc, path, urllib.parse.urlencode(query), "")
    )
    return full, stream


@dataclass(frozen=True, slots=True)
class _Closed:
    """Why a connection ended, and whether trying again can help."""

    reason: str
    retry: bool = True
    immediate: bool = False


def _describe_close(exc: ConnectionClosed) -> _Closed:
    rcvd = exc.rcvd
    if rcvd is None:
        return _Closed("connection lost")
    return _describe_code(rcvd.code, rcvd.reason)


def _describe_ended(ws: ClientConnection) -> _Closed:
    """Why a session whose message loop ended without an exception is over.

    websockets ends ``async for`` quietly on a clean close (1000, 1001), so the gateway's code
    is read from the connection rather than from a ``ConnectionClosed``. The frame received is
    read from the protocol: ``ws.close_code`` stays None until the TCP connection is gone too.
    """
    rcvd = ws.protocol.close_rcvd
    if rcvd is None:
        return _Closed("connection closed")
    return _describe_code(rcvd.code, rcvd.reason)


def _describe_code(code: int, reason: str) -> _Closed:
    text = f"closed by the gateway ({code}{': ' + reason if reason else ''})"
    if code in (wire.CLOSE_GOING_AWAY, wire.CLOSE_TRY_AGAIN_LATER):
        # The gateway is shutting down (1001) or lost Redis (1013): through the load balancer,
        # another, ready gateway can take us now, so waiting would only lengthen the outage.
        return _Closed(text, immediate=True)
    if code == wire.CLOSE_BAD_REQUEST:
        return _Closed(text, retry=False)
    return _Closed(text)


class Subscription:
    """A live subscription: iterate it for messages; use it as a context manager to close it.

    Made by :func:`subscribe`; see there for the arguments. Attributes are
    safe to read at any time.

    Attributes:
        cursor: Positions per stream and the de-duplication state.
        gateway: Id of the gateway serving the current connection (from its hello).
        connected: Whether a connection is open now.
        reconnects: Connections made after the first one.
    """

    def __init__(
        self,
        url: str,
        streams: Iterable[str],
        *,
        token: str | None = None,
        since: Mapping[str, Position] | None = None,
        previews: bool = False,
        kinds: Iterable[str] | None = None,
        max_rate: float | None = None,
        event_since: Mapping[str, Position] | None = None,
        video: bool = False,
        max_attempts: int | None = None,
        delays: Callable[[], Iterator[float]] = backoff,
        on_disconnect: Callable[[str, float], None] | None = None,
        open_timeout: float = 10.0,
        ping_interval: float | None = 10.0,
        connect_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._url, named = websocket_url(url, token=token)
        try:
            self._kinds = None if kinds is None else wire.parse_kinds(list(kinds))
            self._max_rate = None if max_rate is None else wire.parse_max_rate(max_rate)
        except wire.WireError as exc:
            raise ClientError(str(exc)) from None
        wanted = [*([named] if named else []), *streams]
        self._streams: dict[str, None] = {wire.check_stream_name(s): None for s in wanted}
        if not self._streams:
            raise ClientError("no stream to subscribe to: name at least one")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._previews = previews
        self._video = video
        self._max_attempts = max_attempts
        self._delays = delays
        self._on_disconnect = on_disconnect
        self._connect_options: dict[str, Any] = {
            "open_timeout": open_timeout,
            "ping_interval": ping_interval,
            "ping_timeout": ping_interval,
            "max_size": _MAX_MESSAGE,
            **(connect_options or {}),
        }
        self._refused: dict[str, str] = {}
        # Subscribe ops sent per stream and not yet answered (`subscribed` or `error`), each noted
        # with whether it asked for an events replay (event_since).
        self._unanswered: dict[str, collections.deque[bool]] = {}
        self._ws: ClientConnection | None = None
        self._raw: str | bytes = b""
        self._iterator = self._run()
        self._stop = asyncio.Event()
        self._iterating = False
        self.cursor = Cursor(since, event_since=event_since)
        self.gateway: str | None = None
        self.connected = False
        self.reconnects = 0

    @property
    def url(self) -> str:
        """The WebSocket URL connected to, with the token (and any password) masked."""
        return logs.redact_url(self._url)

    @property
    def streams(self) -> list[str]:
        """Streams currently asked for."""
        return list(self._streams)

    @property
    def raw(self) -> str | bytes:
        """The message last yielded exactly as received (text, or bytes for a preview or video frame)."""
        return self._raw

    # ---------------------------------------------------------------- iteration

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        self._iterating = True
        try:
            return await self._iterator.__anext__()
        finally:
            self._iterating = False

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection and end the iteration (also from another task)."""
        self._stop.set()
        if self._ws is not None:
            await self._ws.close()
        if not self._iterating:
            await self._iterator.aclose()

    # ---------------------------------------------------------------- changes while running

    async def add(self, stream: str, *, since: Position | None = None) -> None:
        """Start receiving ``stream`` too (on this connection and after reconnects).

        Raises:
            ClientError: Not a valid stream name.
        """
        try:
            wire.check_stream_name(stream)
        except wire.WireError as exc:
            raise ClientError(str(exc)) from None
        if since is not None and self.cursor.position(stream) is None:
            self.cursor.seed(stream, since)
        self._streams[stream] = None
        self._refused.pop(stream, None)
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(self._subscribe_op(stream))

    async def remove(self, stream: str) -> None:
        """Stop receiving ``stream``."""
        self._streams.pop(stream, None)
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(wire.encode(wire.Unsubscribe(stream=stream)).decode())

    # ---------------------------------------------------------------- internals

    def _wants(self, kind: wire.Kind) -> bool:
        return self._kinds is None or kind in self._kinds

    def _subscribe_op(self, stream: str) -> str:
        position = self.cursor.position(stream) if self._wants("result") else None
        events = self.cursor.event_position(stream) if self._wants("event") else None
        self._unanswered.setdefault(stream, collections.deque()).append(events is not None)
        op = wire.Subscribe(
            stream=stream,
            since=position.seq if position else None,
            epoch=position.epoch if position else None,
            previews=self._previews,
            kinds=self._kinds,
            max_rate=self._max_rate,
            event_since=events.seq if events else None,
            event_epoch=events.epoch if events else None,
            video=self._video,
        )
        return wire.encode(op).decode()

    async def _run(self) -> AsyncGenerator[Message, None]:
        failures = 0
        delays = self._delays()
        first = True
        while not self._stop.is_set():
            try:
                ws = await connect(self._url, **self._connect_options)
            except InvalidStatus as exc:
                closed = self._handshake_refused(exc.response.status_code)
            except InvalidURI as exc:
                raise ClientError(f"{self.url}: {exc}") from None
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                closed = _Closed(f"cannot connect: {exc or type(exc).__name__}")
            else:
                if self._stop.is_set():  # closed while the handshake was under way
                    await ws.close()
                    return
                self._ws = ws
                if not first:
                    self.reconnects += 1
                first = False
                try:
                    async for message in self._session(ws):
                        if failures and isinstance(
                            message,
                            wire.Result | wire.Event | wire.Status | wire.Preview | wire.VideoFrame,
                        ):
                            # Stream traffic flows again: the next outage starts a fresh backoff.
                            # (A hello alone does not count, or a gateway that accepts and then
                            # drops every connection would be retried at the shortest delay forever.)
                            failures = 0
                            delays = self._delays()
                        yield message
                    closed = _describe_ended(ws)
                except ConnectionClosed as exc:
                    closed = _describe_close(exc)
                finally:
                    self._ws = None
                    self.connected = False
                    await ws.close()
            if self._stop.is_set():
                return
            if not closed.retry:
                raise ClientError(f"{self.url}: {closed.reason}")
            failures += 1
            if self._max_attempts is not None and failures >= self._max_attempts:
                raise ConnectError(f"{self.url}: {closed.reason} (gave up after {failures} attempts)")
            delay = 0.0 if closed.immediate and failures == 1 else next(delays)
            log.info("%s: %s; reconnecting in %.2f s", self.url, closed.reason, delay)
            if self._on_disconnect is not None:
                self._on_disconnect(closed.reason, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    def _handshake_refused(self, status: int) -> _Closed:
        if status in (401, 403):
            what = "refused access" if status == 403 else "requires a valid token"
            raise AuthError(f"{self.url}: HTTP {status}: the gateway {what}", status=status)
        if 400 <= status < 500 and status not in (408, 429):
            raise ClientError(
                f"{self.url}: HTTP {status} at the WebSocket handshake (is this a gateway URL?)"
            )
        return _Closed(f"HTTP {status} at the handshake")

    async def _session(self, ws: ClientConnection) -> AsyncIterator[Message]:
        self.connected = True
        self._unanswered.clear()
        for stream in self._streams:
            await ws.send(self._subscribe_op(stream))
        async for raw in ws:
            message = self._decode(raw)
            if message is None or not self._admit(message):
                continue
            if isinstance(message, wire.Gap) and message.stream in self._streams:
                # Messages may have been lost between Redis and the gateway: ask for a replay.
                await ws.send(self._subscribe_op(message.stream))
            binary = isinstance(message, wire.Preview | wire.VideoFrame)
            self._raw = raw.decode() if isinstance(raw, bytes) and not binary else raw
            yield message

    def _decode(self, raw: str | bytes) -> Message | None:
        try:
            if isinstance(raw, bytes):
                if wire.is_preview(raw):
                    return wire.decode_preview(raw)
                if wire.is_video(raw):
                    return wire.decode_video(raw)
                # Tolerate a gateway that frames a JSON message as binary.
                return wire.decode(raw)
            return wire.decode(raw)
        except wire.WireError as exc:
            # A newer gateway may send message types this client does not know: skip, never crash.
            log.warning("%s: skipped a message this client cannot read: %s", self.url, exc)
            return None

    def _admit(self, message: Message) -> bool:
        """Update state for ``message``; False when it must not be delivered."""
        if isinstance(message, wire.VideoFrame):
            # Not replayed, so not held back while a resubscription is answered: the decoding
            # chain goes on (the gateway never sends a broken one).
            return message.stream in self._streams and self.cursor.accept(message)
        if isinstance(message, wire.Result | wire.Event | wire.Preview):
            if message.stream not in self._streams:
                return False
            pending = self._unanswered.get(message.stream)
            if pending and (not isinstance(message, wire.Event) or any(pending)):
                # Sent before the gateway took the (re)subscription: the replay that follows
                # `subscribed` holds it again, in order. Taken now, it would move the position
                # past the hole the replay is about to fill, and the replay would be dropped.
                # (Events are replayed only when the subscribe asked, with event_since.)
                return False
            return self.cursor.accept(message)
        if isinstance(message, wire.Subscribed | wire.Error) and message.stream:
            # The gateway answers each subscribe with one `subscribed` or one `error` naming it.
            pending = self._unanswered.get(message.stream)
            if pending:
                pending.popleft()
            if not pending:
                self._unanswered.pop(message.stream, None)
        if isinstance(message, wire.Hello):
            self.gateway = message.gateway
        elif isinstance(message, wire.Reset):
            self.cursor.reset(message.stream, message.reason)
        elif isinstance(message, wire.Error) and message.stream and message.code in _REFUSALS:
            self._streams.pop(message.stream, None)
            self._refused[message.stream] = f"{message.code}: {message.message}"
            if not self._streams:
                refused = "; ".join(f"{s}: {why}" for s, why in self._refused.items())
                raise ClientError(f"{self.url}: the gateway refused every stream ({refused})")
        return True


def subscribe(
    url: str,
    streams: Iterable[str] = (),
    *,
    token: str | None = None,
    since: Mapping[str, Position] | None = None,
    previews: bool = False,
    kinds: Iterable[str] | None = None,
    max_rate: float | None = None,
    event_since: Mapping[str, Position] | None = None,
    video: bool = False,
    max_attempts: int | None = None,
    delays: Callable[[], Iterator[float]] = backoff,
    on_disconnect: Callable[[str, float], None] | None = None,
    open_timeout: float = 10.0,
    ping_interval: float | None = 10.0,
    connect_options: Mapping[str, Any] | None = None,
) -> Subscription:
    """Subscribe to streams on a gateway (or a load balancer in front of several).

    Nothing happens until the subscription is iterated. Close it with
    ``async with`` or :meth:`Subscription.aclose`.

    Args:
        url: ``http://host:port`` (the viewer's address), a ``ws://.../ws``
            URL, or ``ws://.../ws/<stream>`` (that stream is added to ``streams``).
        streams: Stream names.
        token: Access token, sent as the ``token`` query parameter.
        since: Position per stream to resume from: results after it are
            replayed (within the gateway's history), earlier ones are never
            delivered.
        previews: Also receive :class:`~framecast.wire.Preview` JPEGs.
        kinds: Only these kinds of stream message (``"result"``, ``"event"``,
            ``"status"``; None: all). ``["event", "status"]`` suits a counter.
        max_rate: At most this many results per second per stream, the newest
            each time (None: every result). Events and status are never capped.
        event_since: Event position per stream to resume from: events after it
            are replayed from the gateway's events history, earlier ones never
            delivered (positions: :attr:`Cursor.event_positions`).
        video: Also receive the encoded video (:class:`~framecast.wire.VideoFrame`), from a
            keyframe on.
        max_attempts: Consecutive failed connection attempts after which
            :class:`ConnectError` is raised; None retries forever.
        delays: Makes the iterator of delays between attempts (default
            :func:`backoff`); a new one starts after each message received.
        on_disconnect: Called with the reason and the delay before the next
            attempt each time a connection ends or fails.
        open_timeout: Seconds allowed for the TCP + WebSocket handshake.
        ping_interval: Keepalive ping interval (and timeout) in seconds, so a
            dead peer is noticed; None disables.
        connect_options: Extra keyword arguments for
            :func:`websockets.asyncio.client.connect` (``ssl``, ``proxy``...).

    Returns:
        The :class:`Subscription` to iterate.

    Raises:
        ClientError: ``url`` is not a gateway URL, no/invalid stream names, or
            bad ``kinds``/``max_rate`` (at once); while iterating, the gateway refused the request
            (:class:`AuthError` for HTTP 401/403, :class:`ConnectError` after
            ``max_attempts``, plain :class:`ClientError` otherwise).
    """
    try:
        return Subscription(
            url,
            streams,
            token=token,
            since=since,
            previews=previews,
            kinds=kinds,
            max_rate=max_rate,
            event_since=event_since,
            video=video,
            max_attempts=max_attempts,
            delays=delays,
            on_disconnect=on_disconnect,
            open_timeout=open_timeout,
            ping_interval=ping_interval,
            connect_options=connect_options,
        )
    except wire.WireError as exc:
        raise ClientError(str(exc)) from None
