"""Redis key and channel names of the wire format, and the stream-name rule they rest on.

Every Redis name framecast uses is built here; nothing else formats one.
"""

from __future__ import annotations

import re

from framecast.exceptions import WireError

__all__ = [
    "HISTORY_FIELD",
    "KEY_PREFIX",
    "STATUS_KEY_PATTERN",
    "STREAM_NAME_PATTERN",
    "canary_channel",
    "channel",
    "check_stream_name",
    "events_key",
    "history_key",
    "preview_channel",
    "status_key",
    "stream_of_status_key",
    "video_channel",
]

KEY_PREFIX = "framecast:"
HISTORY_FIELD = "m"
"""The one field of every :func:`history_key` entry: the encoded :class:`Result`.

Redis hands field names back as bytes: read an entry with ``fields[HISTORY_FIELD.encode()]``.
"""
STREAM_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_STREAM_NAME = re.compile(STREAM_NAME_PATTERN)


def check_stream_name(name: str) -> str:
    """Return ``name`` if it is a valid stream name, else raise WireError.

    Stream names become Redis keys and URL path segments, so they are limited
    to 1-64 characters of ``A-Z a-z 0-9 _ . -``, starting with a letter or digit.
    """
    if not isinstance(name, str) or not _STREAM_NAME.fullmatch(name):
        raise WireError(
            f"stream: {name!r} is not a valid stream name "
            f"(1-64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit)",
            code="bad-stream",
            stream=name if isinstance(name, str) else None,
        )
    return name


def _tagged(stream: str) -> str:
    """``framecast:{<stream>}``: the braces are a Redis Cluster hash tag.

    Every name of one stream hashes to the same slot, so the producer's ``MULTI`` (history
    ``XADD`` + channel ``(S)PUBLISH``) is legal on a Redis Cluster, and sharded pub/sub spreads
    streams across shards. A standalone server ignores the braces.
    """
    return f"{KEY_PREFIX}{{{stream}}}"


def channel(stream: str) -> str:
    """Redis pub/sub channel carrying a stream's results and heartbeats: ``framecast:{<stream>}``."""
    return _tagged(stream)


def preview_channel(stream: str) -> str:
    """Redis pub/sub channel carrying a stream's binary preview frames: ``framecast:{<stream>}:preview``."""
    return f"{_tagged(stream)}:preview"


def video_channel(stream: str) -> str:
    """Redis pub/sub channel carrying a stream's encoded video frames: ``framecast:{<stream>}:video``.

    Apart from the results: a gateway subscribes to it only while one of its clients watches
    video, and the producer encodes only while someone subscribes to it.
    """
    return f"{_tagged(stream)}:video"


def history_key(stream: str) -> str:
    """Redis Stream holding a stream's recent results, newest last: ``framecast:{<stream>}:history``.

    Entry IDs are ``<epoch start ms>-<seq>``, so a replay from ``seq`` within
    an epoch is one ``XRANGE`` and the newest entry is the latest result.
    Each entry has one field, :data:`HISTORY_FIELD` (``m``), holding the encoded :class:`Result`.
    """
    return f"{_tagged(stream)}:history"


def events_key(stream: str) -> str:
    """Redis Stream holding a stream's recent events, newest last: ``framecast:{<stream>}:events``.

    Apart from :func:`history_key`, so that events outlive the result firehose (they are few
    and must not be missed). Entry IDs are ``<epoch start ms>-<event seq>`` with the same epoch
    start as the results' of that epoch; ids increase across epochs, so the key is one ordered log
    of every event it still holds. One field, :data:`HISTORY_FIELD`, holds the encoded
    :class:`Event`.
    """
    return f"{_tagged(stream)}:events"


def canary_channel(gateway_id: str, shard: int | None = None) -> str:
    """Redis pub/sub channel a gateway publishes its liveness canary on and reads it back from.

    ``framecast:{__canary__:<id>}``, or ``framecast:{__canary__:<shard>:<id>}`` with ``shard``:
    a number that moves the channel to another hash slot, so that a gateway on a Redis Cluster
    can find one canary channel per shard. The ``__canary__`` segment cannot be a stream name,
    so no stream's channels collide with it.
    """
    inner = f"__canary__:{gateway_id}" if shard is None else f"__canary__:{shard}:{gateway_id}"
    return f"{KEY_PREFIX}{{{inner}}}"


def status_key(stream: str) -> str:
    """Redis string holding a stream's latest :class:`Status`, with a TTL of a few seconds.

    ``framecast:{<stream>}:status``. The producer refreshes it with every heartbeat, so the keys
    that exist are the live streams (a gateway's ``/streams`` lists them).
    """
    return f"{_tagged(stream)}:status"


STATUS_KEY_PATTERN = f"{KEY_PREFIX}{{*}}:status"
"""``SCAN MATCH`` pattern of every :func:`status_key` (check each hit with :func:`stream_of_status_key`)."""


def stream_of_status_key(key: str) -> str | None:
    """The stream name in a :func:`status_key`, or None if ``key`` is not one."""
    head, tail = f"{KEY_PREFIX}{{", "}:status"
    if key.startswith(head) and key.endswith(tail):
        name = key[len(head) : -len(tail)]
        if _STREAM_NAME.fullmatch(name):
            return name
    return None
