"""The gateway's WebSocket connection: every HTTP request gets an answer, even one websockets drops.

websockets' request parser (``websockets.http11.Request.parse``) raises on a request with a
body (``Content-Length`` other than 0, or ``Transfer-Encoding``), on a header value it does not
accept (a NUL in ``Host``) and on a non-ASCII request line; ``ServerProtocol.parse`` then
closes the connection without a response. Behind nginx that is an upstream error, which nginx
always counts as a failed attempt: two such requests took every gateway out of the rotation
(issue 12). The gateway's connection (:class:`gateway._wsio.AnsweringConnection`, the
adapter's: it swaps websockets' parser) answers 413 (a body: the gateway serves GET only) or
400 (anything else malformed) instead, as this module decides (:func:`answer_for`), then
half-closes and reads the rest of the request away, as websockets does after any refusal.

A request that repeats a header which must appear once (:data:`SINGLE_HEADERS`: ``Host``,
``Origin``, ``Authorization``, ``Sec-WebSocket-Key``, ``Sec-WebSocket-Version``) is malformed
too, and gets the same 400 on every path: reading one of them later raised
``MultipleValuesError`` (a 500 and a logged traceback per request, issue 20), and which of the
values counted would be a guess (RFC 9112 section 3.2 asks for a 400 on a second ``Host``).
"""

from __future__ import annotations

import http

from websockets.exceptions import HeaderLineTooLong, RequestLineTooLong, TooManyHeaders
from websockets.http11 import Request

__all__ = ["SINGLE_HEADERS", "answer_for", "repeated"]

SINGLE_HEADERS = ("Host", "Origin", "Authorization", "Sec-WebSocket-Key", "Sec-WebSocket-Version")
"""Headers a request may carry at most once; a second one is answered with 400."""

_BODY = "unsupported request body"  # websockets' ValueError text for a Content-Length above 0


def repeated(request: Request) -> str | None:
    """The first of :data:`SINGLE_HEADERS` the request carries more than once, if any."""
    for name in SINGLE_HEADERS:
        if len(request.headers.get_all(name)) > 1:
            return name
    return None


def answer_for(exc: Exception) -> tuple[http.HTTPStatus, str]:
    """The status and text answering a request whose parsing raised ``exc``.

    Lines and headers too long, or too many headers: the statuses websockets itself sends for
    these; a body: 413; anything else: 400.
    """
    if isinstance(exc, RequestLineTooLong):
        return http.HTTPStatus.REQUEST_URI_TOO_LONG, f"bad request: {exc}"
    if isinstance(exc, HeaderLineTooLong | TooManyHeaders):
        return http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"bad request: {exc}"
    if isinstance(exc, NotImplementedError) or str(exc) == _BODY:
        return http.HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request bodies are not accepted (use GET or HEAD)"
    return http.HTTPStatus.BAD_REQUEST, f"bad request: {exc}"
