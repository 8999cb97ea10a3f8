"""The gateway's one Redis subscription: subscribe on demand, survive drops, notice deafness.

One :class:`Subscriber` owns one pub/sub connection. It subscribes a stream's
channel only while the gateway has local clients for it (reference counted by
:meth:`Subscriber.acquire` / :meth:`Subscriber.release`), hands every message
to a callback, and yields to the event loop after each one so a backlog
cannot starve the WebSocket side.

Failure handling, beyond what redis-py does by itself:

* A dropped connection is reconnected with capped exponential backoff and
  jitter; every channel is subscribed again, and once that is confirmed the
  ``on_gap`` callback names every stream whose messages may have been missed.
* A :class:`~gateway.canary.Canary` watches the link; when it turns deaf the
  link is torn down and rebuilt.

How the link is made (one connection, or one per primary of a Redis Cluster
with a canary each) is the :class:`~gateway.store.Store`'s business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from framecast import wire
from framecast.retry import backoff
from gateway.canary import Canary, Deaf
from gateway.store import STORE_ERRORS, Store, Subscription, open_store

__all__ = ["Subscriber"]

log = logging.getLogger(__name__)


class Subscriber:
    """One pub/sub link shared by every stream this gateway serves.

    Args:
        gateway_id: Names the canary channel.
        on_message: Called synchronously with ``(stream, data)`` for each result
            or status message.
        store: The gateway's Redis; if None, one is opened for ``url`` (and closed by :meth:`stop`).
        url: Redis URL, when no ``store`` is given.
        on_preview: Called with ``(stream, data)`` for each binary preview.
        on_gap: Called with the streams subscribed when the connection came back
            after a drop (their clients may have missed messages).
        sharded: With ``url``: SSUBSCRIBE/SPUBLISH instead of SUBSCRIBE/PUBLISH.
        cluster: With ``url``: it is a Redis Cluster node.
        health_check_interval: Seconds between PINGs on an idle connection.
        ready_timeout: Freshness a canary must have for :attr:`ready`.
        canary_interval: Seconds between canaries.
        poll_interval: Longest wait for a message before subscription changes
            and the watchdog are looked at.
        backoff_base: First reconnect delay, doubled per failure...
        backoff_cap: ...up to this many seconds.
    """

    def __init__(
        self,
        *,
        gateway_id: str,
        on_message: Callable[[str, bytes], None],
        store: Store | None = None,
        url: str | None = None,
        on_preview: Callable[[str, bytes], None] | None = None,
        on_gap: Callable[[list[str]], None] | None = None,
        sharded: bool = False,
        cluster: bool = False,
        health_check_interval: float = 5.0,
        ready_timeout: float = 3.0,
        canary_interval: float = 1.0,
        poll_interval: float = 0.1,
        backoff_base: float = 0.2,
        backoff_cap: float = 5.0,
    ) -> None:
        if store is None:
            if url is None:
                raise ValueError("Subscriber needs a store or a url")
            store = open_store(url, timeout=ready_timeout, cluster=cluster, sharded=sharded)
            self._owns_store = True
        else:
            self._owns_store = False
        self._store = store
        self._on_message = on_message
        self._on_preview = on_preview
        self._on_gap = on_gap
        self._gateway_id = gateway_id
        self._health_check_interval = health_check_interval
        self.ready_timeout = ready_timeout
        self._poll_interval = poll_interval
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._canary = Canary(store, ready_timeout=ready_timeout, interval=canary_interval)
        self._canary.reset([wire.canary_channel(gateway_id)])

        self._refs: dict[str, int] = {}  # channel -> local users
        self._routes: dict[bytes, tuple[str, bool]] = {}  # channel -> (stream, is_preview)
        self._requested: set[str] = set()  # SUBSCRIBE sent on the current connection
        self._active: set[bytes] = set()  # confirmed on the current connection
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._dirty = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self._kick: asyncio.Task[None] | None = None
        self._link: Subscription | None = None
        self._stopping = False
        self._gap_due = False
        self.reconnects = 0
        """Times the subscription was re-established after a drop."""
        self.last_error: str | None = None
        """Why the subscription is down, if it is."""

    @property
    def canary_rtt(self) -> float | None:
        """Round trip of the last canary, seconds."""
        return self._canary.rtt

    # ------------------------------------------------------------------
    # Demand

    def acquire(self, stream: str, *, previews: bool = False) -> asyncio.Future[Any]:
        """Count one more local user of a stream; subscribe if it is the first.

        Returns:
            A future done once Redis confirmed the subscription (and the preview
            one, if asked); at once if it already had. It stays pending while
            Redis is down.
        """
        channels = [wire.channel(stream)] + ([wire.preview_channel(stream)] if previews else [])
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        for name in channels:
            self._refs[name] = self._refs.get(name, 0) + 1
            self._routes[name.encode()] = (stream, name != channels[0])
            future: asyncio.Future[None] = loop.create_future()
            if name.encode() in self._active:
                future.set_result(None)
            else:
                self._waiters.setdefault(name, []).append(future)
                self._request_sync()
            futures.append(future)
        return futures[0] if len(futures) == 1 else asyncio.gather(*futures)

    def release(self, stream: str, *, previews: bool = False) -> None:
        """Count one user less; unsubscribe when it was the last."""
        channels = [wire.channel(stream)] + ([wire.preview_channel(stream)] if previews else [])
        for name in channels:
            count = self._refs.get(name, 0) - 1
            if count > 0:
                self._refs[name] = count
            else:
                self._refs.pop(name, None)
                self._request_sync()

    def streams(self) -> list[str]:
        """Streams with at least one local user."""
        return sorted({self._routes[n.encode()][0] for n in self._refs if not self._routes[n.encode()][1]})

    @property
    def channels(self) -> int:
        """Channels confirmed on the current connection (the canary included)."""
        return len(self._active)

    # ------------------------------------------------------------------
    # Health

    @property
    def connected(self) -> bool:
        """Whether the subscription connection is up (every canary subscription confirmed)."""
        return self._canary.keys <= self._active

    def not_ready_reason(self) -> str | None:
        """None when ready; else why not, in a few words."""
        if self._stopping:
            return "shutting down"
        if not self.connected:
            return f"redis subscription down: {self.last_error or 'connecting'}"
        return self._canary.stale_reason()

    @property
    def ready(self) -> bool:
        """Connected, and a canary came back within ``ready_timeout``."""
        return self.not_ready_reason() is None

    # ------------------------------------------------------------------
    # Running

    async def run(self) -> None:
        """Keep the subscription up until :meth:`stop`; never raises for Redis trouble."""
        canary = asyncio.create_task(
            self._canary.run(lambda: self.connected, lambda: self._stopping), name="framecast-canary"
        )
        failures = 0
        delays = backoff(initial=self._backoff_base, maximum=self._backoff_cap)
        try:
            while not self._stopping:
                try:
                    await self._connect()
                    if failures:
                        log.info("redis subscription restored after %d failed attempt(s)", failures)
                    failures = 0
                    delays = backoff(initial=self._backoff_base, maximum=self._backoff_cap)
                    await self._read()
                except Exception as exc:  # never die: anything unexpected is one more failed attempt
                    if not isinstance(exc, (*STORE_ERRORS, Deaf)):
                        log.exception("redis subscription failed unexpectedly")
                    text = _describe(exc)
                    if self.connected or failures == 0:
                        log.warning("redis subscription lost: %s; reconnecting with backoff", text)
                    self.last_error = text
                    failures += 1
                finally:
                    await self._disconnect()
                if self._stopping:
                    break
                await asyncio.sleep(next(delays))
        finally:
            canary.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await canary

    async def stop(self) -> None:
        """Stop :meth:`run` (it returns soon after) and close the connections."""
        self._stopping = True
        self._dirty.set()
        if self._owns_store:
            with contextlib.suppress(Exception):
                await self._store.aclose()

    async def _connect(self) -> None:
        self._link = await self._store.open_subscription(
            gateway_id=self._gateway_id, health_check_interval=self._health_check_interval
        )
        self._canary.reset(self._link.canaries)
        self._requested.clear()
        self._active.clear()
        self._dirty.set()
        await self._sync()

    async def _disconnect(self) -> None:
        had = self.connected
        self._active.clear()
        self._requested.clear()
        link, self._link = self._link, None
        if had and not self._stopping:
            self._gap_due = True
        if link is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await link.aclose()

    def _request_sync(self) -> None:
        """Apply a change of demand now, without waiting for the reader's next wake-up."""
        self._dirty.set()
        if self._link is not None and (self._kick is None or self._kick.done()):
            self._kick = asyncio.get_running_loop().create_task(self._sync_soon())

    async def _sync_soon(self) -> None:
        # Runs beside the reader's pending read: a SUBSCRIBE is only a write on the
        # same connection, and its confirmation arrives through the reader.
        try:
            await self._sync()
        except STORE_ERRORS as exc:
            log.debug("subscription change deferred: %s", _describe(exc))  # the reader reconnects

    async def _sync_if_dirty(self) -> None:
        if self._dirty.is_set():
            await self._sync()

    async def _sync(self) -> None:
        """Bring the connection's subscriptions in line with local demand."""
        async with self._sync_lock:
            link = self._link
            if link is None or not self._dirty.is_set():
                return
            self._dirty.clear()
            canaries = self._canary.channels
            wanted = set(self._refs)
            wanted.update(canaries)
            # The canaries go last: their confirmation then means every channel before them is live.
            add = sorted(wanted - self._requested, key=lambda n: n in canaries)
            remove = sorted(self._requested - wanted)
            if add:
                await link.subscribe(add)
                if link is self._link:
                    self._requested.update(add)
            if remove:
                await link.unsubscribe(remove)
                if link is self._link:
                    self._requested.difference_update(remove)
                for name in remove:
                    self._active.discard(name.encode())
                    if name not in self._refs:
                        self._routes.pop(name.encode(), None)
                        for future in self._waiters.pop(name, []):
                            future.cancel()

    async def _read(self) -> None:
        link = self._link
        assert link is not None
        await link.pump(
            handle=self._handle,
            before=self._sync_if_dirty,
            after=self._canary.check,
            poll_interval=self._poll_interval,
            running=lambda: not self._stopping,
        )

    def _handle(self, message: dict[str, object]) -> None:
        kind = message["type"]
        channel = message["channel"]
        if not isinstance(channel, bytes):
            return  # a pong
        if kind in ("message", "smessage"):
            data = message["data"]
            assert isinstance(data, bytes)
            if channel in self._canary.keys:
                self._canary.back(channel, data)
                return
            route = self._routes.get(channel)
            if route is None:
                return  # a channel being unsubscribed
            stream, preview = route
            try:
                if preview:
                    if self._on_preview is not None:
                        self._on_preview(stream, data)
                else:
                    self._on_message(stream, data)
            except Exception:
                log.exception("fan-out failed for a message on %s", stream)
        elif kind in ("subscribe", "ssubscribe"):
            self._active.add(channel)
            name = channel.decode()
            for future in self._waiters.pop(name, []):
                if not future.done():
                    future.set_result(None)
            if channel in self._canary.keys and self.connected:
                self._canary.link_up()
                self.last_error = None
                if self._gap_due:
                    self._gap_due = False
                    self.reconnects += 1
                    streams = self.streams()
                    log.info("redis subscription back: %d stream(s) told about a possible gap", len(streams))
                    if self._on_gap is not None and streams:
                        self._on_gap(streams)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
