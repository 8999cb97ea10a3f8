"""Every error framecast raises on purpose, under one root.

``except FramecastError`` catches them all; each subclass also derives from
the built-in it replaces (``ValueError``, ``RuntimeError``) so that code
written against the built-ins keeps working.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BrokerError",
    "ClientError",
    "ConfigError",
    "ConnectError",
    "EmbeddedError",
    "FramecastError",
    "UpError",
    "WireError",
]


class FramecastError(Exception):
    """Root of every framecast error; the text says what went wrong and how to fix it."""


class WireError(FramecastError, ValueError):
    """A message that does not follow the wire format.

    The text names the field that is wrong and why, so the log line that
    reports a bad message is enough to find the culprit.

    Attributes:
        code: The protocol's error code for it (``wire.Error.code``): ``"bad-message"``,
            ``"unknown-op"`` or ``"bad-stream"``, so a gateway answers without parsing the text.
        stream: For ``"bad-stream"``, the name that was refused (so the answer can name it).
    """

    def __init__(self, message: str, *, code: str = "bad-message", stream: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.stream = stream


class AuthError(FramecastError):
    """Credentials were missing or refused; the text says why (safe to show a client).

    Raised by a gateway checking a token (``gateway.auth``) and by the Python client
    when a gateway answers its handshake with HTTP 401 or 403.

    Attributes:
        status: The HTTP status the refusal was (or will be) answered with, if known.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ConfigError(FramecastError, ValueError):
    """A setting has a bad value; the text names the flag or variable."""


class ClientError(FramecastError):
    """A client's subscription cannot go on; the text says why and what to do."""


class ConnectError(ClientError):
    """The gateway could not be reached within the allowed attempts."""


class EmbeddedError(FramecastError, RuntimeError):
    """An embedded server (valkey-server, nginx from their wheels) could not be found or started."""


class UpError(FramecastError, RuntimeError):
    """The local topology could not be started; the text says which part and why."""


class BrokerError(FramecastError):
    """A call to the broker (Redis) failed; the text is what Redis or the connection said.

    Attributes:
        reply: Redis's error reply when it refused the command for good (a key of another
            type, a value out of range...): the same command would be refused again. None
            when the link failed: Redis unreachable or slower than the timeout, or a reply
            that means "not here, not now" (a read-only replica after a failover, a cluster
            that is down or moving a slot, a server out of memory), which a later try may pass.
        stale_id: The refusal was an append whose entry id is not above the newest of its
            history (another writer, or an earlier try of the same write that landed).
    """

    def __init__(self, message: str, *, reply: str | None = None, stale_id: bool = False) -> None:
        super().__init__(message)
        self.reply = reply
        self.stale_id = stale_id

    @property
    def refused(self) -> bool:
        """Redis answered with an error reply that retrying the same command cannot fix."""
        return self.reply is not None
