"""The TCP proxy of the tests and the fault suite: freeze a link (connections stay open, no byte
moves), thaw it, or cut it.

    with running_proxy(redis_server.port) as proxy:
        gateway = start_gateway(redis_url=proxy.redis_url)
        proxy.freeze()   # the gateway's Redis link goes deaf (no error, no EOF)
        proxy.thaw()     # what was held back flows again
        proxy.cut()      # every current link is reset; new connections still work

It runs its own event loop in a thread, so blocking test code (``gw.get``) cannot stall it.
A frozen proxy stops reading from both sides; the kernel buffers what was already sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

__all__ = ["Proxy", "running_proxy"]

_CHUNK = 65536


class Proxy:
    """Forward ``127.0.0.1:<port>`` to ``127.0.0.1:<target>``; see :func:`running_proxy`.

    Args:
        target: Port forwarded to.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-proxy", daemon=True)
        self.connections = 0
        """Connections accepted so far."""

    @property
    def redis_url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Listen on a free port (:attr:`port`)."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def freeze(self) -> None:
        """Stop moving bytes in both directions (connections stay open)."""
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def thaw(self) -> None:
        """Move bytes again."""
        self._loop.call_soon_threadsafe(self._flowing.set)

    def cut(self) -> None:
        """Reset every current link (new connections are still accepted)."""

        def _abort() -> None:
            for writer in list(self._writers):
                writer.transport.abort()

        self._loop.call_soon_threadsafe(_abort)

    def close(self) -> None:
        """Close the listener and every connection, stop the thread."""
        with contextlib.suppress(RuntimeError, TimeoutError):
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        self._flowing.set()  # let frozen pumps see their closed sockets and end

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            for _ in range(10_000_000):  # bounded: a test moves far less than this many chunks
                await self._flowing.wait()
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await self._flowing.wait()  # a chunk read just before a freeze is held too
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()


@contextlib.contextmanager
def running_proxy(target: int) -> Iterator[Proxy]:
    """A started :class:`Proxy` to ``target``, closed on exit."""
    proxy = Proxy(target)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()
