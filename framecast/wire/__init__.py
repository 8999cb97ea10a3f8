"""The framecast wire format: the one place it is defined.

Every message a producer publishes, a gateway forwards and a client reads is
defined in this package; ``docs/protocol.md`` describes the same format for
client authors, and a test keeps the two in step. Import it as a whole
(``from framecast import wire``; ``wire.Result``, ``wire.encode``...); its
modules each have one job:

* :mod:`framecast.wire.keys`: Redis key and channel names, the stream-name rule (zone and
  line names follow it too).
* :mod:`framecast.wire.messages`: the message dataclasses and protocol constants.
* :mod:`framecast.wire.codec`: encoding and decoding (bytes <-> messages).
* :mod:`framecast.wire.video`: the binary framing of encoded video frames (``FCV1``).

Text messages are UTF-8 JSON objects with a ``type`` field; stream messages
also carry ``v``, the format version. Decoding never trusts its input:
anything malformed raises :class:`WireError` naming the offending field.

This package imports neither OpenCV nor numpy: the gateway ships without them.
"""

from __future__ import annotations

from framecast.exceptions import (
    WireError,
)
from framecast.wire.codec import (
    decode,
    decode_op,
    decode_preview,
    encode,
    encode_preview,
    is_preview,
    parse_kinds,
    parse_max_rate,
    peek,
)
from framecast.wire.keys import (
    HISTORY_FIELD,
    KEY_PREFIX,
    STATUS_KEY_PATTERN,
    STREAM_NAME_PATTERN,
    canary_channel,
    channel,
    check_stream_name,
    events_key,
    history_key,
    preview_channel,
    status_key,
    stream_of_status_key,
    video_channel,
)
from framecast.wire.messages import (
    CLOSE_BAD_REQUEST,
    CLOSE_GOING_AWAY,
    CLOSE_SLOW_CONSUMER,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_TRY_AGAIN_LATER,
    KINDS,
    MAX_RATE,
    MAX_SEQ,
    VERSION,
    ClientOp,
    Detection,
    Error,
    Event,
    EventKind,
    Gap,
    GatewayReply,
    Hello,
    Kind,
    Peek,
    PredictorState,
    Preview,
    Reset,
    Result,
    Status,
    StreamMessage,
    StreamState,
    Subscribe,
    Subscribed,
    TextMessage,
    Unsubscribe,
    Unsubscribed,
)
from framecast.wire.video import (
    VIDEO_HEADER_SIZE,
    VideoFrame,
    VideoPeek,
    decode_video,
    encode_video,
    is_video,
    peek_video,
)

__all__ = [
    "CLOSE_BAD_REQUEST",
    "CLOSE_GOING_AWAY",
    "CLOSE_SLOW_CONSUMER",
    "CLOSE_TOKEN_EXPIRED",
    "CLOSE_TRY_AGAIN_LATER",
    "HISTORY_FIELD",
    "KEY_PREFIX",
    "KINDS",
    "MAX_RATE",
    "MAX_SEQ",
    "STATUS_KEY_PATTERN",
    "STREAM_NAME_PATTERN",
    "VERSION",
    "VIDEO_HEADER_SIZE",
    "ClientOp",
    "Detection",
    "Error",
    "Event",
    "EventKind",
    "Gap",
    "GatewayReply",
    "Hello",
    "Kind",
    "Peek",
    "PredictorState",
    "Preview",
    "Reset",
    "Result",
    "Status",
    "StreamMessage",
    "StreamState",
    "Subscribe",
    "Subscribed",
    "TextMessage",
    "Unsubscribe",
    "Unsubscribed",
    "VideoFrame",
    "VideoPeek",
    "WireError",
    "canary_channel",
    "channel",
    "check_stream_name",
    "decode",
    "decode_op",
    "decode_preview",
    "decode_video",
    "encode",
    "encode_preview",
    "encode_video",
    "events_key",
    "history_key",
    "is_preview",
    "is_video",
    "parse_kinds",
    "parse_max_rate",
    "peek",
    "peek_video",
    "preview_channel",
    "status_key",
    "stream_of_status_key",
    "video_channel",
]
