"""Plain HTTP on the WebSocket port: health, readiness, metrics, live streams, the viewer.

Answered from the WebSocket server's ``process_request`` hook, so the gateway
needs one port and no second web framework:

* ``/healthz``: 200 while the process serves (liveness), JSON with its id.
* ``/readyz``: 200 only while the Redis subscription is up and its canary
  fresh and the gateway is not draining; else 503 with the reason.
* ``/metrics``: Prometheus text format.
* ``/streams``: JSON list of the streams whose producer heartbeat is recent
  (their ``framecast:{<stream>}:status`` key exists; on a Redis Cluster every
  primary is scanned), cached for a second. When
  the gateway requires tokens, so does this list, and it shows only the
  streams the token allows.
* anything else: a file of the static directory (``/`` is ``index.html``).

Every answer carries CORS headers for the ``--origins`` allowlist, so a page on
another origin can import ``/client.js`` and read these endpoints: the
request's ``Origin`` is echoed when it is allowed (``*`` when the list is
empty, i.e. open), and a disallowed origin gets none. ``OPTIONS`` answers the
preflight with 204.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import json
import logging
import mimetypes
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from framecast import wire
from framecast.broker import Broker
from framecast.exceptions import BrokerError
from gateway.auth import AuthError

__all__ = ["HttpRoutes", "json_response", "text_response"]

log = logging.getLogger(__name__)

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".wasm": "application/wasm",
}
_SCAN_LIMIT = 10_000  # keys looked at per /streams refresh, at most
_METHODS = "GET, HEAD, OPTIONS"
_PREFLIGHT_MAX_AGE = "600"  # seconds a browser may reuse a preflight answer


def _response(status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> Response:
    code = http.HTTPStatus(status)
    all_headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            ("Cache-Control", "no-cache"),
        ]
    )
    for key, value in (headers or {}).items():
        all_headers[key] = value
    return Response(code.value, code.phrase, all_headers, body)


def _everything(_: str) -> bool:
    return True


def text_response(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    """A plain-text response (one line, newline-terminated)."""
    return _response(status, (text.rstrip("\n") + "\n").encode(), "text/plain; charset=utf-8", headers)


def json_response(status: int, payload: Any) -> Response:
    """A JSON response."""
    return _response(status, json.dumps(payload, separators=(",", ":")).encode(), "application/json")


class HttpRoutes:
    """The gateway's plain HTTP endpoints.

    Args:
        gateway_id: Reported by ``/healthz``.
        static_dir: Directory served for every other path.
        not_ready: Returns None when ready, else the reason.
        metrics: Returns the Prometheus exposition (bytes) and its content type.
        health: Returns extra fields for ``/healthz`` (connections, ...).
        broker: Where live streams are listed from.
        allowed: Returns which streams a request's credentials allow (None: all)
            or raises :class:`gateway.auth.AuthError`; None when auth is off.
        streams_ttl: Seconds a ``/streams`` answer is reused.
        origins: Browser origins given CORS headers (``--origins``); empty: any (``*``).
    """

    def __init__(
        self,
        *,
        gateway_id: str,
        static_dir: str | Path,
        not_ready: Callable[[], str | None],
        metrics: Callable[[], tuple[bytes, str]],
        health: Callable[[], dict[str, Any]],
        broker: Broker,
        allowed: Callable[[Request], Callable[[str], bool]] | None = None,
        streams_ttl: float = 1.0,
        origins: tuple[str, ...] = (),
    ) -> None:
        self._origins = frozenset(origins)
        self._id = gateway_id
        self._static = Path(static_dir).resolve()
        self._not_ready = not_ready
        self._metrics = metrics
        self._health = health
        self._broker = broker
        self._allowed = allowed
        self._streams_ttl = streams_ttl
        self._streams_cache: tuple[float, list[dict[str, Any]]] | None = None
        self._streams_lock = asyncio.Lock()
        self._files: dict[Path, tuple[float, bytes]] = {}

    async def respond(self, request: Request) -> Response:
        """Answer a non-WebSocket request (GET; HEAD: the same headers, no body; OPTIONS: preflight)."""
        cors = self.cors_headers(request.headers.get("Origin"))
        if request.method == "OPTIONS":
            if "Access-Control-Allow-Origin" in cors:
                cors["Access-Control-Allow-Methods"] = _METHODS
                cors["Access-Control-Allow-Headers"] = "Authorization"
                cors["Access-Control-Max-Age"] = _PREFLIGHT_MAX_AGE
            preflight = _response(204, b"", "text/plain; charset=utf-8", {"Allow": _METHODS, **cors})
            del preflight.headers["Content-Length"]  # RFC 9110: never on a 204
            del preflight.headers["Content-Type"]
            return preflight
        if request.method not in ("GET", "HEAD"):
            response = text_response(405, f"method {request.method} not allowed", {"Allow": _METHODS})
        else:
            response = await self._route(request)
        for key, value in cors.items():
            response.headers[key] = value
        if request.method == "HEAD":
            response.body = b""
        return response

    def cors_headers(self, origin: str | None) -> dict[str, str]:
        """The CORS headers for a request from ``origin`` (none for a disallowed one)."""
        if not self._origins:
            return {"Access-Control-Allow-Origin": "*"}
        # The answer depends on Origin: caches between here and browsers must key on it.
        headers = {"Vary": "Origin"}
        if origin is not None and origin in self._origins:
            headers["Access-Control-Allow-Origin"] = origin
        return headers

    async def _route(self, request: Request) -> Response:
        path = urllib.parse.urlsplit(request.path).path
        if path == "/healthz":
            return json_response(200, {"status": "ok", "id": self._id, **self._health()})
        if path == "/readyz":
            reason = self._not_ready()
            if reason is None:
                return json_response(200, {"ready": True, "id": self._id})
            return json_response(503, {"ready": False, "id": self._id, "reason": reason})
        if path == "/metrics":
            body, content_type = self._metrics()
            return _response(200, body, content_type)
        if path == "/streams":
            allows: Callable[[str], bool] = _everything
            if self._allowed is not None:
                try:
                    allows = self._allowed(request)
                except AuthError as exc:
                    return text_response(401, str(exc), {"WWW-Authenticate": 'Bearer realm="framecast"'})
            try:
                found = await self._streams()
            except (BrokerError, TimeoutError) as exc:
                return json_response(503, {"error": f"redis unavailable: {exc}"})
            return json_response(200, [s for s in found if allows(str(s["stream"]))])
        return self._static_file(path)

    async def _streams(self) -> list[dict[str, Any]]:
        async with self._streams_lock:
            now = time.monotonic()
            if self._streams_cache is not None and now - self._streams_cache[0] < self._streams_ttl:
                return self._streams_cache[1]
            async with asyncio.timeout(3.0):
                found = await self._scan_statuses()
            self._streams_cache = (time.monotonic(), found)
            return found

    async def _scan_statuses(self) -> list[dict[str, Any]]:
        values = await self._broker.scan_values(
            wire.STATUS_KEY_PATTERN,
            keep=lambda key: bool(wire.stream_of_status_key(key)),
            limit=_SCAN_LIMIT,
        )
        now = time.time()
        out: list[dict[str, Any]] = []
        for value in values:  # a key expired between SCAN and MGET is left out
            try:
                status = wire.decode(value)
            except wire.WireError:
                continue
            if not isinstance(status, wire.Status):
                continue
            out.append(
                {
                    "stream": status.stream,
                    "state": status.state,
                    "epoch": status.epoch,
                    "seq": status.seq,
                    "sent_at": status.sent_at,
                    "age": round(max(now - status.sent_at, 0.0), 3),
                    "capture_fps": status.capture_fps,
                    "process_fps": status.process_fps,
                    "skipped": status.skipped,
                    "reconnects": status.reconnects,
                    "active": status.active,
                    "source": status.source,
                }
            )
        out.sort(key=lambda s: str(s["stream"]))
        return out

    def _static_file(self, path: str) -> Response:
        relative = urllib.parse.unquote(path).lstrip("/") or "index.html"
        if relative.endswith("/"):
            relative += "index.html"
        parts = relative.split("/")
        if any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
            return text_response(404, "not found")
        # Contained lexically (the parts check above refuses "..", "." and empty parts), not by
        # resolving: the static directory's own symlinks are served, e.g. client.js ->
        # clients/js/src/index.js, the npm package's file, so the viewer never runs a copy.
        target = self._static / relative
        if not target.is_file():
            if relative == "index.html":
                return text_response(
                    404,
                    f"this gateway serves WebSocket streams at /ws/<stream>; "
                    f"no viewer is installed ({self._static}/index.html is missing)",
                )
            return text_response(404, "not found")
        try:
            body = self._read(target)
        except OSError:
            return text_response(404, "not found")
        content_type = _TYPES.get(target.suffix.lower()) or mimetypes.guess_type(target.name)[0]
        return _response(200, body, content_type or "application/octet-stream")

    def _read(self, target: Path) -> bytes:
        mtime = target.stat().st_mtime
        cached = self._files.get(target)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        body = target.read_bytes()
        self._files[target] = (mtime, body)
        return body


HttpHandler = Callable[[Request], Awaitable[Response]]
