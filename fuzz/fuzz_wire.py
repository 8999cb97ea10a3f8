"""Coverage-guided fuzz target (atheris) for framecast's decoders and the gateway's request parsers.

Run it through ``fuzz/run.sh`` (bounded time, on a scratch copy of the committed corpus)::

    fuzz/run.sh 60          # seconds

The first byte of each input picks the target (so one corpus covers all of them); the rest is the
input. Every target must return normally or raise the documented refusal -- ``wire.WireError`` for
messages (the gateway's ``error`` reply), ``ValueError`` for a handshake path (HTTP 400), ``AuthError``
for a token (HTTP 401). Anything else escapes and atheris reports the crash with its input.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports():
    from framecast import wire
    from gateway.auth import Authenticator, AuthError
    from gateway.handshake import parse_ws_path


_auth = Authenticator(secret="fuzz-" * 13)


def _decode_text(data: bytes) -> None:
    wire.decode(data)


def _decode_str(data: bytes) -> None:
    wire.decode_op(data.decode("utf-8", "surrogatepass"))


def _path(data: bytes) -> None:
    parse_ws_path("/ws/" + data.decode("latin-1"))


def _query(data: bytes) -> None:
    parse_ws_path("/ws?" + data.decode("utf-8", "replace"))


def _token(data: bytes) -> None:
    with contextlib.suppress(AuthError):
        _auth.verify(data.decode("latin-1"))


_TARGETS: tuple[Callable[[bytes], Any], ...] = (
    wire.decode_op,
    _decode_text,
    wire.peek,
    wire.decode_preview,
    _decode_str,
    _path,
    _query,
    _token,
)


def test_one_input(raw: bytes) -> None:
    """One fuzz input: byte 0 picks the target, the rest is its input."""
    if not raw:
        return
    target = _TARGETS[raw[0] % len(_TARGETS)]
    # WireError is a ValueError; so is the path parser's refusal (its 400).
    with contextlib.suppress(ValueError):
        target(raw[1:])


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
