"""One logging set-up for every framecast process, and URLs made safe to log."""

from __future__ import annotations

import logging
import os
from urllib.parse import unquote_plus

__all__ = ["redact_url", "setup"]

# Query parameters whose values are secrets (redis-py reads ?password=, the gateway ?token=).
_SECRET_PARAMS = frozenset(
    {"password", "passwd", "pass", "pwd", "token", "access_token", "secret", "api_key", "apikey", "auth"}
)


def setup(level: str | None = None, *, name: str = "") -> None:
    """Log to stderr, one line per event, with the component name.

    Args:
        level: ``DEBUG``, ``INFO`` (default), ``WARNING``...; falls back to
            ``FRAMECAST_LOG_LEVEL``.
        name: Short component tag put at the start of every line
            (``framecast up`` prefixes child output with its own tag instead).
    """
    chosen = (level or os.environ.get("FRAMECAST_LOG_LEVEL") or "INFO").upper()
    tag = f"{name} " if name else ""
    logging.basicConfig(
        level=getattr(logging, chosen, logging.INFO),
        format=f"%(asctime)s {tag}%(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # websockets logs every failed handshake at ERROR with a traceback; one line is enough.
    logging.getLogger("websockets.server").setLevel(logging.WARNING)


def redact_url(url: str) -> str:
    """``url`` with its secrets replaced by ``***``, for logs and error messages.

    The password of ``user:password@`` becomes ``***`` (the user stays), and so does the value
    of a query parameter named like a secret (``password``, ``token``...). Everything else is
    kept byte for byte, percent-encoding included, so the result still names the same server.

    Example: ``redis://app:p%40ss@cache:6379/0?password=x`` gives
    ``redis://app:***@cache:6379/0?password=***``.
    """
    rest, hash_sign, fragment = url.partition("#")
    rest, question_mark, query = rest.partition("?")
    scheme, slashes, remainder = rest.partition("://")
    if slashes:
        # The authority ends at the first "/" (RFC 3986; "?" and "#" are already split off).
        authority, slash, path = remainder.partition("/")
        userinfo, at, host = authority.rpartition("@")
        if at and ":" in userinfo:
            authority = f"{userinfo.split(':', 1)[0]}:***@{host}"
        rest = f"{scheme}://{authority}{slash}{path}"
    if query:
        query = "&".join(_redact_param(param) for param in query.split("&"))
    return rest + question_mark + query + hash_sign + fragment


def _redact_param(param: str) -> str:
    name, equals, _value = param.partition("=")
    if equals and unquote_plus(name).strip().lower() in _SECRET_PARAMS:
        return f"{name}=***"
    return param
