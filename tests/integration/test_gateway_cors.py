"""CORS on a real gateway's plain HTTP endpoints: the ``--origins`` allowlist, ``*`` when open, and
the ``OPTIONS`` preflight. (A real browser importing ``/client.js`` from another origin is in
tests/browser/test_cors.py.)
"""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from typing import TYPE_CHECKING

from tests.support.gateway import GatewayProc, running_gateway

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer

ALLOWED = "https://app.example"
OTHER = "https://evil.example"
PATHS = ("/client.js", "/healthz", "/readyz", "/metrics", "/streams")


def _request(
    gw: GatewayProc, method: str, path: str, headers: Mapping[str, str]
) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    try:
        connection.request(method, path, headers=dict(headers))
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def test_an_allowlisted_origin_gets_cors_headers_and_others_get_none(redis_server: RedisServer) -> None:
    args = ["--origins", f"{ALLOWED},http://127.0.0.1:1"]
    with running_gateway(redis_url=redis_server.url, args=args, wait="ready") as gw:
        for path in PATHS:
            status, headers, body = _request(gw, "GET", path, {"Origin": ALLOWED})
            assert status == 200, (path, status)
            assert headers["Access-Control-Allow-Origin"] == ALLOWED, path
            assert "Origin" in headers.get_all("Vary", []), path

            status, headers, _ = _request(gw, "GET", path, {"Origin": OTHER})
            assert status == 200, (path, status)
            assert not [k for k in headers if k.lower().startswith("access-control-")], (path, headers)
            assert "Origin" in headers.get_all("Vary", []), path

        status, headers, body = _request(
            gw,
            "OPTIONS",
            "/streams",
            {"Origin": ALLOWED, "Access-Control-Request-Method": "GET",
             "Access-Control-Request-Headers": "authorization"},
        )  # fmt: skip
        assert status == 204 and body == b""
        assert headers["Access-Control-Allow-Origin"] == ALLOWED
        assert headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"
        assert headers["Access-Control-Allow-Headers"] == "Authorization"
        assert headers["Content-Length"] is None

        status, headers, _ = _request(gw, "OPTIONS", "/streams", {"Origin": OTHER})
        assert status == 204
        assert not [k for k in headers if k.lower().startswith("access-control-")], headers


def test_an_open_gateway_allows_every_origin(redis_server: RedisServer) -> None:
    with running_gateway(redis_url=redis_server.url, wait="ready") as gw:
        for path in PATHS:
            status, headers, _ = _request(gw, "GET", path, {"Origin": OTHER})
            assert status == 200, (path, status)
            assert headers["Access-Control-Allow-Origin"] == "*", path
        status, headers, _ = _request(gw, "HEAD", "/client.js", {})
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
        status, headers, _ = _request(gw, "OPTIONS", "/client.js", {"Origin": OTHER})
        assert status == 204
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"
        assert headers["Allow"] == "GET, HEAD, OPTIONS"
        # Other methods are still refused, and say what is allowed.
        status, headers, _ = _request(gw, "POST", "/healthz", {"Origin": OTHER})
        assert status == 405 and headers["Allow"] == "GET, HEAD, OPTIONS"
