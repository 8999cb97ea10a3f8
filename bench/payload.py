"""The benchmark's message: a real :class:`framecast.wire.Result` of about 300 bytes.

Messages are made from a template encoded once by :func:`framecast.wire.encode`,
so producing one costs a string format, not a JSON encode: the gateway being
measured receives ready bytes from Redis, and so does the bench server.
"""

from __future__ import annotations

from framecast import wire

__all__ = ["Payload"]

_DETECTIONS = (
    wire.Detection(label="person", confidence=0.8731, box=(112.5, 40.0, 260.2, 460.8)),
    wire.Detection(label="face", confidence=0.9102, box=(150.1, 60.3, 210.9, 130.2)),
)
_SEQ, _CAPTURED, _PUBLISHED = 918273645, 1234.0625, 5678.5


class Payload:
    """Encoded results for one stream, differing only in ``seq`` and timestamps.

    Args:
        stream: Stream name.
        epoch: Producer run id carried by every message.
    """

    def __init__(self, *, stream: str = "bench", epoch: str = "bench") -> None:
        sample = wire.encode(
            wire.Result(
                stream=stream,
                epoch=epoch,
                seq=_SEQ,
                frame=_SEQ,
                captured_at=_CAPTURED,
                published_at=_PUBLISHED,
                width=640,
                height=480,
                detections=_DETECTIONS,
            )
        )
        template = sample.replace(b"%", b"%%")
        for old, new in (
            (b'"seq":%d' % _SEQ, b'"seq":%d'),
            (b'"frame":%d' % _SEQ, b'"frame":%d'),
            (b'"captured_at":%r' % _CAPTURED, b'"captured_at":%r'),
            (b'"published_at":%r' % _PUBLISHED, b'"published_at":%r'),
        ):
            if template.count(old) != 1:
                raise RuntimeError(f"bench payload template: {old!r} not found once in {sample!r}")
            template = template.replace(old, new)
        self._template = template
        self.size = len(sample)
        check = wire.decode(self.make(7, 1.5))
        if not isinstance(check, wire.Result) or check.seq != 7 or check.captured_at != 1.5:
            raise RuntimeError("bench payload template does not round-trip through wire.decode")

    def make(self, seq: int, captured_at: float, published_at: float | None = None) -> bytes:
        """The encoded result number ``seq``, captured at ``captured_at`` (Unix seconds)."""
        published = captured_at if published_at is None else published_at
        return self._template % (seq, seq, captured_at, published)
