"""The gateway's WebSocket connection: every HTTP request gets an answer, even one websockets drops.

websockets' request parser (``websockets.http11.Request.parse``) raises on a request with a
body (``Content-Length`` other than 0, or ``Transfer-Encoding``), on a header value it does not
accept (a NUL in ``Host``) and on a non-ASCII request line; ``ServerProtocol.parse`` then
closes the connection without a response. Behind nginx that is an upstream error, which nginx
always counts as a failed attempt: two such requests took every gateway out of the rotation
(issue 12). :class:`Connection` replaces that first parsing step with one that answers 413
(a body: the gateway serves GET only) or 400 (anything else malformed), then half-closes and
reads the rest of the request away, as websockets does after any refusal.

A request that repeats a header which must appear once (:data:`SINGLE_HEADERS`: ``Host``,
``Origin``, ``Authorization``, ``Sec-WebSocket-Key``, ``Sec-WebSocket-Version``) is malformed
too, and gets the same 400 on every path: reading one of them later raised
``MultipleValuesError`` (a 500 and a logged traceback per request, issue 20), and which of the
values counted would be a guess (RFC 9112 section 3.2 asks for a 400 on a second ``Host``).
"""

from __future__ import annotations

import http
from collections.abc import Generator
from typing import Any

from websockets.asyncio.server import Server, ServerConnection
from websockets.exceptions import HeaderLineTooLong, InvalidMessage, RequestLineTooLong, TooManyHeaders
from websockets.http11 import Request
from websockets.protocol import CONNECTING, Protocol
from websockets.server import ServerProtocol

__all__ = ["SINGLE_HEADERS", "Connection", "refusal"]

SINGLE_HEADERS = ("Host", "Origin", "Authorization", "Sec-WebSocket-Key", "Sec-WebSocket-Version")
"""Headers a request may carry at most once; a second one is answered with 400."""

_BODY = "unsupported request body"  # websockets' ValueError text for a Content-Length above 0


class Connection(ServerConnection):
    """A :class:`~websockets.asyncio.server.ServerConnection` whose protocol answers bad requests.

    Pass it as ``serve(..., create_connection=Connection)``.
    """

    def __init__(self, protocol: ServerProtocol, server: Server, **kwargs: Any) -> None:
        super().__init__(protocol, server, **kwargs)
        # No byte has been received yet: the protocol's parser can be swapped safely.
        protocol.parser = _parse(protocol)
        next(protocol.parser)


def refusal(exc: Exception) -> tuple[http.HTTPStatus, str]:
    """The status and one-line text answering a request websockets could not parse."""
    if isinstance(exc, NotImplementedError) or str(exc) == _BODY:
        return http.HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request bodies are not accepted (use GET or HEAD)"
    return http.HTTPStatus.BAD_REQUEST, f"bad request: {exc}"


def _parse(protocol: ServerProtocol) -> Generator[None]:
    """``ServerProtocol.parse`` with an answer where the original closes without one."""
    assert protocol.state is CONNECTING
    try:
        request = yield from Request.parse(protocol.reader.read_line)
    except EOFError as exc:
        # The client went away mid-request: nobody to answer.
        protocol.handshake_exc = InvalidMessage("did not receive a valid HTTP request")
        protocol.handshake_exc.__cause__ = exc
        protocol.send_eof()
        protocol.parser = protocol.discard()
        next(protocol.parser)
        yield
        return
    except Exception as exc:
        protocol.handshake_exc = InvalidMessage("did not receive a valid HTTP request")
        protocol.handshake_exc.__cause__ = exc
        status, text = _status_for(exc)
        # send_response half-closes and swaps in the parser that reads the rest away.
        protocol.send_response(protocol.reject(status, text + "\n"))
        yield
        return
    repeated = _repeated(request)
    if repeated is not None:
        protocol.handshake_exc = InvalidMessage(f"more than one {repeated} header")
        protocol.send_response(
            protocol.reject(http.HTTPStatus.BAD_REQUEST, f"bad request: {repeated} sent twice\n")
        )
        yield
        return
    protocol.events.append(request)
    yield from Protocol.parse(protocol)


def _repeated(request: Request) -> str | None:
    """The first of :data:`SINGLE_HEADERS` the request carries more than once, if any."""
    for name in SINGLE_HEADERS:
        if len(request.headers.get_all(name)) > 1:
            return name
    return None


def _status_for(exc: Exception) -> tuple[http.HTTPStatus, str]:
    # The statuses websockets itself sends for these.
    if isinstance(exc, RequestLineTooLong):
        return http.HTTPStatus.REQUEST_URI_TOO_LONG, f"bad request: {exc}"
    if isinstance(exc, HeaderLineTooLong | TooManyHeaders):
        return http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"bad request: {exc}"
    return refusal(exc)
