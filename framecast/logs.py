"""One logging set-up for every framecast process."""

from __future__ import annotations

import logging
import os

__all__ = ["setup"]


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
