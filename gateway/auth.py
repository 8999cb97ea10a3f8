"""JWT access control: who may open a connection and which streams they may read.

A token is checked once, at the WebSocket handshake (``?token=`` or
``Authorization: Bearer``). Its ``streams`` claim lists the stream names it
allows, or is ``"*"`` for all; a token without it allows none. ``exp`` is
enforced at the handshake and, for a long connection, by closing it with 4001
when the token expires. HS256 tokens are checked with ``--jwt-secret``,
RS256/ES256 tokens with ``--jwt-public-key``; the token's own ``alg`` header
only chooses between keys the operator configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jwt

from framecast.exceptions import AuthError

__all__ = ["AuthError", "Authenticator", "Grant"]

_SECRET_ALGORITHMS = ("HS256",)
_PUBLIC_KEY_ALGORITHMS = ("RS256", "ES256")


@dataclass(frozen=True)
class Grant:
    """What a verified token allows.

    Attributes:
        streams: Allowed stream names, or None for every stream.
        expires_at: Unix time the token expires, or None.
        subject: The token's ``sub``, for logs.
    """

    streams: frozenset[str] | None
    expires_at: float | None = None
    subject: str | None = None

    def allows(self, stream: str) -> bool:
        """Whether the token lets its holder read ``stream``."""
        return self.streams is None or stream in self.streams


OPEN_GRANT = Grant(streams=None)
"""What every client gets when the gateway has no key configured."""


class Authenticator:
    """Verifies tokens against the configured keys.

    Args:
        secret: HS256 shared secret, or None.
        public_key_path: PEM public key file for RS256/ES256, or None.
        leeway: Seconds of clock skew tolerated on ``exp``/``nbf``.

    Raises:
        ValueError: The key file cannot be read, or RS256/ES256 support
            (the ``cryptography`` package) is missing.
    """

    def __init__(
        self, *, secret: str | None = None, public_key_path: str | None = None, leeway: float = 0
    ) -> None:
        self._secret = secret or None
        self._public_key: str | None = None
        if public_key_path:
            if not jwt.algorithms.has_crypto:
                raise ValueError(
                    "--jwt-public-key needs RS256/ES256 support: pip install 'pyjwt[crypto]' (cryptography)"
                )
            try:
                self._public_key = Path(public_key_path).read_text()
            except OSError as exc:
                raise ValueError(f"--jwt-public-key: cannot read {public_key_path}: {exc.strerror}") from None
        self._leeway = leeway

    @property
    def enabled(self) -> bool:
        """Whether tokens are required at all."""
        return self._secret is not None or self._public_key is not None

    def verify(self, token: str | None) -> Grant:
        """Check a token and return what it allows.

        Raises:
            AuthError: Missing, malformed, badly signed, expired, or using an
                algorithm no configured key accepts.
        """
        if not self.enabled:
            return OPEN_GRANT
        if not token:
            raise AuthError("a token is required (?token=... or Authorization: Bearer ...)")
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"malformed token: {exc}") from None
        key: str | None
        if algorithm in _SECRET_ALGORITHMS:
            key, allowed = self._secret, list(_SECRET_ALGORITHMS)
        elif algorithm in _PUBLIC_KEY_ALGORITHMS:
            key, allowed = self._public_key, list(_PUBLIC_KEY_ALGORITHMS)
        else:
            key, allowed = None, []
        if key is None:
            raise AuthError(f"token algorithm {algorithm!r} is not accepted by this gateway")
        try:
            claims = jwt.decode(token, key, algorithms=allowed, leeway=self._leeway)
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        streams = _streams_claim(claims)
        exp = claims.get("exp")
        subject = claims.get("sub")
        return Grant(
            streams=streams,
            expires_at=float(exp) if isinstance(exp, int | float) else None,
            subject=subject if isinstance(subject, str) else None,
        )


def _streams_claim(claims: dict[str, object]) -> frozenset[str] | None:
    """The ``streams`` claim: a list of names or ``"*"`` (None: every stream); absent allows none.

    Raises:
        AuthError: The claim is anything else (a plain string naming one stream included: a
            token that means ``["cam"]`` must say so, so a typo cannot widen or hide a grant).
    """
    if "streams" not in claims:
        return frozenset()
    raw = claims["streams"]
    if raw == "*":
        return None
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return frozenset(raw)
    raise AuthError('invalid token: the streams claim must be a list of stream names or "*"')
