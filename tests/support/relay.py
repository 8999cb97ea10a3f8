"""A stand-in gateway for developing the viewer's video before the gateway fans video out.

It serves ``gateway/static`` and relays one stream's Redis channels (results and status, video,
previews) to WebSocket clients as they come, with the protocol's hello and subscribed replies. It
keeps no history and no group of pictures and applies no slow-client policy: a client joins
mid-group and must skip to the next keyframe itself, which is exactly what the viewer's own chain
rule is tested on. The real gateway (with GOP caching, joins at keyframes and conflation) replaces
it in the end-to-end tests.

Usage::

    with relay(redis_url, stream="default") as url:
        page.goto(url)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from framecast import wire
from framecast.local.embedded import free_port

STATIC = Path(__file__).resolve().parents[2] / "gateway" / "static"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


def _static(connection: ServerConnection, request: Request, stream: str) -> Response | None:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None
    path = request.path.split("?", 1)[0]
    if path == "/streams":
        body, kind = json.dumps([{"stream": stream}]).encode(), "application/json"
    else:
        name = path.lstrip("/") or "index.html"
        target = STATIC / name  # one level, no traversal: the static folder is flat
        if "/" in name or name.startswith(".") or not target.is_file():
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        body, kind = target.read_bytes(), TYPES.get(target.suffix, "application/octet-stream")
    headers = Headers(
        [("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
    )
    return Response(200, "OK", headers, body)


class _Relay:
    def __init__(self, redis_url: str, stream: str) -> None:
        self.redis_url = redis_url
        self.stream = stream
        self.clients: dict[ServerConnection, dict[str, bool]] = {}

    async def handle(self, ws: ServerConnection) -> None:
        self.clients[ws] = {}
        try:
            await ws.send(wire.encode(wire.Hello(gateway="relay")).decode())
            async for raw in ws:
                op = wire.decode_op(raw)
                if isinstance(op, wire.Subscribe):
                    self.clients[ws] = {"video": op.video, "previews": op.previews}
                    reply = wire.Subscribed(stream=op.stream, previews=op.previews, video=op.video)
                else:
                    self.clients[ws] = {}
                    reply = wire.Unsubscribed(stream=op.stream)
                await ws.send(wire.encode(reply).decode())
        except ConnectionClosed:
            pass
        finally:
            self.clients.pop(ws, None)

    async def pump(self) -> None:
        client: Any = aioredis.Redis.from_url(self.redis_url)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        kinds = {
            wire.channel(self.stream).encode(): None,
            wire.video_channel(self.stream).encode(): "video",
            wire.preview_channel(self.stream).encode(): "previews",
        }
        await pubsub.subscribe(*kinds)
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            kind = kinds[message["channel"]]
            data: bytes = message["data"]
            for ws, wants in list(self.clients.items()):
                if not wants or (kind is not None and not wants.get(kind)):
                    continue
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(data if kind else data.decode())


@contextlib.contextmanager
def relay(redis_url: str, *, stream: str = "default", host: str = "127.0.0.1") -> Iterator[str]:
    """Serve the viewer and relay ``stream`` on ``host``; yields the page's URL."""
    port = free_port()
    ready = threading.Event()
    stop: dict[str, Any] = {}

    async def main() -> None:
        state = _Relay(redis_url, stream)
        stop["event"] = asyncio.Event()
        stop["loop"] = asyncio.get_running_loop()
        process = lambda c, r: _static(c, r, stream)  # noqa: E731
        async with serve(state.handle, host, port, process_request=process, compression=None):
            pump = asyncio.create_task(state.pump())
            ready.set()
            await stop["event"].wait()
            pump.cancel()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="relay", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the relay did not start")
    try:
        yield f"http://{host}:{port}/"
    finally:
        stop["loop"].call_soon_threadsafe(stop["event"].set)
        thread.join(10)
