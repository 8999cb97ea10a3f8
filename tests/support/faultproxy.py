"""An asyncio TCP proxy on 127.0.0.1 that can freeze, unfreeze and cut its links (fault tests).

It runs its own event loop in a daemon thread, so blocking tests and the benchmark can drive it::

    with FaultProxy(upstream_port=redis.port) as proxy:
        gateway = start_gateway(redis_url=f"redis://127.0.0.1:{proxy.port}/0")
        proxy.freeze()      # bytes stop flowing both ways; TCP stays up (a stalled NAT entry)
        proxy.unfreeze()    # what was held flows again
        proxy.cut()         # every current link is reset; new connections still work
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from types import TracebackType

__all__ = ["FaultProxy"]


class FaultProxy:
    """A TCP proxy from a free 127.0.0.1 port to ``127.0.0.1:upstream_port``.

    Args:
        upstream_port: Where connections are forwarded.
        port: Port to listen on (0: a free one).
    """

    def __init__(self, upstream_port: int, *, port: int = 0) -> None:
        self.upstream_port = upstream_port
        self._listen = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listen.bind(("127.0.0.1", port))
        self.port: int = self._listen.getsockname()[1]
        self._flowing: asyncio.Event | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy", daemon=True)
        self._thread.start()
        self._call(self._start())

    def _call(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)  # type: ignore[arg-type]

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, sock=self._listen)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._links.update((writer, up_writer))
        await asyncio.gather(
            self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._links.discard(w)
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self._flowing.wait()  # frozen: hold the bytes, keep the TCP link up
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()

    # ------------------------------------------------------------------

    def freeze(self) -> None:
        """Stop forwarding bytes in both directions (connections stay open)."""
        self._loop.call_soon_threadsafe(self._flowing.clear)  # type: ignore[union-attr]

    def unfreeze(self) -> None:
        """Forward again, starting with what was held."""
        self._loop.call_soon_threadsafe(self._flowing.set)  # type: ignore[union-attr]

    def cut(self) -> None:
        """Reset every current link (new connections are still accepted)."""

        def _abort() -> None:
            for writer in list(self._links):
                writer.transport.abort()

        self._loop.call_soon_threadsafe(_abort)

    def close(self) -> None:
        """Stop listening, drop every link and end the thread."""

        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._links):
                writer.transport.abort()

        with contextlib.suppress(Exception):
            self._call(_stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
