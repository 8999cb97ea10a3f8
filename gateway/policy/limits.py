"""The fan-out's limits: one frozen object, built once from the gateway's settings.

The defaults of the settings a user can change are :class:`gateway.config.GatewayConfig`'s,
read from there (stated once); the others are the policy's own bounds, stated here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from gateway.config import GatewayConfig

__all__ = ["MAX_WAITING", "Limits"]

# Messages of one stream that may wait behind the one going out in slices before the oldest
# waiting result is shed: a memory cap for a stream that is over capacity. Latency has its own
# bound, max_age, applied when a waiting message's turn comes.
MAX_WAITING = 64

# Limits field -> GatewayConfig field, where the gateway's settings name it differently.
_SETTING = {
    "probe_interval": "lag_probe_interval",
    "probe_messages": "lag_probe_messages",
    "chunk": "fanout_chunk",
    "slice_time": "fanout_slice",
}

_DEFAULTS: dict[str, Any] = {field.name: field.default for field in dataclasses.fields(GatewayConfig)}


def _setting(name: str) -> Any:
    return _DEFAULTS[_SETTING.get(name, name)]


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Everything the fan-out bounds, and how (see ``python -m gateway --help`` for the settings).

    Attributes:
        client_buffer: Unsent bytes above which a client is lagging (``--client-buffer``).
        max_lag: Seconds a client may stay lagging, or leave a lag probe unanswered, before it
            is closed with 4008 (``--max-lag``).
        lag_threshold: Seconds a lag probe may go unanswered before the client counts as
            lagging (0: no lag probes; ``--lag-threshold``).
        probe_interval: Seconds between rounds of lag probes (``--lag-probe-interval``).
        probe_messages: Messages a stream's fan-outs carry between two waves of probes, at
            most (``--lag-probe-messages``)...
        probe_bytes: ...or bytes, whichever comes first.
        max_age: Seconds since capture after which a message is not sent (0: never; ``--max-age``).
        send_deadline: Seconds one wait for lagging clients to drain may last (``--send-deadline``).
        close_timeout: Seconds the 4008 closing handshake may take before the connection is
            aborted (``--close-timeout``).
        chunk: Clients written per slice at most; bigger audiences are served in slices (0: no
            count limit, slices end on ``slice_time`` alone; ``--fanout-chunk``).
        slice_time: Seconds one slice may run, checked every 16 clients (0: count only;
            ``--fanout-slice``).
        join_limit: Live messages kept per joining client and stream while its replay is sent.
        join_bytes: Bytes of live messages kept per joining client and stream (0: count only).
        max_waiting: Messages of a stream that may wait behind a sliced one before the oldest
            waiting result or preview is shed.
        video_gop_bytes: Bytes of a stream's current group of pictures kept for joining video
            clients (one bigger is given up: they start at the next keyframe). 4 MiB holds a
            2-second group at 16 Mbit/s, 32 times the producer's default bitrate.
    """

    client_buffer: int = _setting("client_buffer")
    max_lag: float = _setting("max_lag")
    lag_threshold: float = _setting("lag_threshold")
    probe_interval: float = _setting("probe_interval")
    probe_messages: int = _setting("probe_messages")
    probe_bytes: int = 64 << 10
    max_age: float = _setting("max_age")
    send_deadline: float = _setting("send_deadline")
    close_timeout: float = _setting("close_timeout")
    chunk: int = _setting("chunk")
    slice_time: float = _setting("slice_time")
    join_limit: int = 1024
    join_bytes: int = 8 << 20
    max_waiting: int = MAX_WAITING
    video_gop_bytes: int = 4 << 20

    def __post_init__(self) -> None:
        if self.client_buffer <= 0:
            raise ValueError("client_buffer must be greater than 0")

    @property
    def low_water(self) -> int:
        """Unsent bytes at or below which a lagging client has caught up (a quarter of ``client_buffer``)."""
        return self.client_buffer // 4

    @property
    def probing(self) -> bool:
        """Whether lag probes are on."""
        return self.lag_threshold > 0 and self.probe_interval > 0

    @classmethod
    def from_config(cls, config: GatewayConfig) -> Limits:
        """The limits a gateway runs with."""
        return cls(**{name: getattr(config, _SETTING.get(name, name)) for name in _CONFIGURED})


_CONFIGURED = tuple(
    field.name for field in dataclasses.fields(Limits) if _SETTING.get(field.name, field.name) in _DEFAULTS
)
