"""The producer's settings: one frozen object read from flags and environment."""

from __future__ import annotations

from dataclasses import dataclass

from framecast import settings, wire
from framecast.settings import LOG_LEVELS, non_negative, option, port_number, positive
from producer.devices import ENGINES, check_device

__all__ = ["DESCRIPTION", "EPILOG", "LOG_LEVELS", "Config"]

DESCRIPTION = """\
Read a camera (or a synthetic scene), keep only its newest frame, run a predictor on it off the
event loop and publish each result to Redis: to the stream's history (a Redis Stream, for replay)
and then to its pub/sub channel, where gateways pick it up. A status heartbeat follows at least once
per second, detections or not."""

EPILOG = """\
sources:
  synthetic          a generated 640x480 scene at 30 fps with moving shapes, a walking figure
                     and a QR code (the default: works with every built-in detector)
  0, 1, ...          a camera device index; one that cannot be opened is an error (exit 1)
  PATH               a video file, played at its own frame rate; a missing or unreadable file is an
                     error (exit 1). At its end the producer publishes the last results and exits 0,
                     unless --loop is given
  rtsp://, http(s)://  a network camera via FFmpeg (RTSP over TCP, MJPEG over HTTP, HLS...); one that
                     cannot be opened, drops or stalls for --stall-timeout is reopened forever with
                     capped exponential backoff, state "offline" meanwhile. Credentials in the URL are
                     never logged or published

detectors:
  motion             moving regions (background subtraction); --min-area sets the smallest box
  faces              frontal faces (Haar cascade)
  people             standing people (HOG)
  qr                 QR codes; the label is the decoded text
  onnx:PATH          a YOLOv5/v8-style ONNX model run with onnxruntime (OpenCV DNN where it is
                     absent); see --device, --threads, --confidence, --nms, --classes, --input-size
  module:callable    your own predictor: a function frame -> list of framecast.wire.Detection (or
                     (label, confidence, (x1, y1, x2, y2)) tuples), or a class instantiated once
  NAME               a predictor registered under the entry-point group 'framecast.detectors'
  An unknown detector, or a --device whose execution provider is not installed, is an error
  (exit 2). --predictor-socket sends frames to a shared inference worker (framecast inference)
  instead: one model for many cameras, batched. A predictor that raises is logged (rate-limited) and
  counted; the producer carries on with the next frame.

tracking:
  --track gives every detection a "track" id (ByteTrack, one tracker per label). --zones FILE adds
  zones and lines (and turns tracking on): each result then carries the occupancy of every zone and
  the in/out totals of every line, and enter/leave/cross events are published as messages of their
  own, with their own seq and history (framecast:{STREAM}:events). A bad zones file is one line
  naming the zone or line and key, exit 2.

behaviour:
  Redis unreachable, at start-up or later: the producer keeps capturing and predicting, keeps only the
  newest result and retries with capped exponential backoff; it never exits for that.
  With --demand (the default) the predictor pauses while nobody subscribes to the stream (heartbeats
  go on with active=false) and resumes within a second of the first subscriber.
  SIGTERM or SIGINT: a final "offline" heartbeat, then exit 0.

More in docs/producer.md: the publishing contract, plugins, metrics."""


def _unit_interval(value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")


def _quality(value: int) -> None:
    if not 1 <= value <= 100:
        raise ValueError("must be between 1 and 100")


def _input_size(value: int) -> None:
    if value < 32 or value % 32:
        raise ValueError("must be a multiple of 32, at least 32")


def _video_codec(value: str) -> None:
    # Imported here, not at module level: `framecast up` checks camera settings with this class.
    from producer.encoder import EncodeError, check_codec

    try:
        check_codec(value)
    except EncodeError as exc:
        raise ValueError(str(exc)) from None


def _non_empty(value: str) -> None:
    if not value.strip():
        raise ValueError("must not be empty")


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything the producer reads from its command line and environment."""

    # source
    source: str = option(
        "synthetic",
        help="What to read: 'synthetic', a camera index ('0'), a video file, an rtsp:// or http(s):// URL.",
        metavar="SOURCE",
        check=_non_empty,
        group="source",
    )
    loop: bool = option(False, help="Play a video file again from its start when it ends.", group="source")
    stall_timeout: float = option(
        10.0,
        help="Seconds without a frame after which the source is reopened (also FFmpeg's open/read timeout).",
        metavar="SECONDS",
        check=positive,
        group="source",
    )

    # predictor
    detector: str = option(
        "motion",
        help="Predictor: motion, faces, people, qr, onnx:PATH, module:callable or an entry-point name.",
        metavar="NAME",
        check=_non_empty,
        group="predictor",
    )
    max_fps: float = option(
        15.0,
        help="Run the predictor at most this many times per second (0: as fast as it goes).",
        metavar="FPS",
        check=non_negative,
        group="predictor",
    )
    workers: int = option(
        0,
        help="0: predict in one thread; N: in a pool of N processes, N frames in flight.",
        metavar="N",
        check=non_negative,
        group="predictor",
    )
    demand: bool = option(
        True,
        help="Pause the predictor while nobody subscribes to the stream.",
        group="predictor",
    )
    min_area: int = option(
        400,
        help="motion: smallest moving region reported, in frame pixels.",
        metavar="PIXELS",
        check=positive,
        group="predictor",
    )
    confidence: float = option(
        0.25,
        help="onnx: lowest confidence reported (0-1).",
        metavar="SCORE",
        check=_unit_interval,
        group="predictor",
    )
    nms: float = option(
        0.45,
        help="onnx: IoU above which overlapping boxes of a class are merged (0-1).",
        metavar="IOU",
        check=_unit_interval,
        group="predictor",
    )
    classes: str | None = option(
        None,
        help="onnx: text file of class names, one per line"
        " (default: the model's names metadata, else COCO's 80 names for 80-class models).",
        metavar="FILE",
        group="predictor",
    )
    input_size: int = option(
        640,
        help="onnx: the model's square input size in pixels.",
        metavar="PIXELS",
        check=_input_size,
        group="predictor",
    )
    device: str = option(
        "auto",
        help="onnx: where the model runs: auto, cpu, cuda[:N], tensorrt[:N], openvino[:CPU/GPU/NPU], "
        "rocm[:N], migraphx[:N], coreml, directml[:N] (onnxruntime execution providers). auto: the "
        "first of cuda, migraphx, rocm, openvino, coreml, directml, cpu that is installed and starts.",
        metavar="DEVICE",
        check=check_device,
        group="predictor",
    )
    engine: str = option(
        "auto",
        help="onnx: what runs the model: onnxruntime, opencv (OpenCV DNN, CPU only), or auto "
        "(onnxruntime when installed).",
        choices=ENGINES,
        group="predictor",
    )
    threads: int = option(
        0,
        help="onnx: threads per inference (0: one per core; 1 in each --workers process).",
        metavar="N",
        check=non_negative,
        group="predictor",
    )
    predictor_socket: str | None = option(
        None,
        help="Send frames to the shared inference worker on this Unix socket ('framecast inference', "
        "or a [predictors.NAME] of framecast up) instead of running --detector in this process.",
        metavar="PATH",
        group="predictor",
    )

    # tracking (producer/analytics.py)
    track: bool = option(
        False,
        help="Give each detection a track id, stable from frame to frame (ByteTrack); --zones turns it on.",
        group="tracking",
    )
    zones: str | None = option(
        None,
        help="TOML file of [zones.<name>] polygons and [lines.<name>] lines: publish enter/leave/cross"
        " events, occupancy and line totals (see docs/producer.md).",
        metavar="FILE",
        group="tracking",
    )
    track_lost: float = option(
        1.0,
        help="Seconds a track may go undetected before it is given up (capture time for a camera, the"
        " recording's own time for a file or scene); a track lost inside a zone then leaves it"
        " (rounded to 1/30 s).",
        metavar="SECONDS",
        check=positive,
        group="tracking",
    )
    event_history: int = option(
        10000,
        help="Events kept in the stream's Redis events history for replay (approximate).",
        metavar="N",
        check=positive,
        group="tracking",
    )

    # output
    stream: str = option(
        "default",
        help="Stream name to publish (1-64 of A-Z a-z 0-9 _ . -).",
        metavar="NAME",
        check=wire.check_stream_name,
        group="output",
    )
    history: int = option(
        1000,
        help="Results kept in the stream's Redis history for replay (approximate, trimmed by Redis).",
        metavar="N",
        check=positive,
        group="output",
    )
    heartbeat_interval: float = option(
        1.0,
        help="Seconds between status heartbeats (clients expect at least one per second).",
        metavar="SECONDS",
        check=positive,
        group="output",
    )
    preview_fps: float = option(
        5.0,
        help="Annotated JPEG previews per second, sent only while someone watches previews (0: never).",
        metavar="FPS",
        check=non_negative,
        group="output",
    )
    preview_width: int = option(
        640,
        help="Largest preview width in pixels (never scaled up).",
        metavar="PIXELS",
        check=positive,
        group="output",
    )
    preview_quality: int = option(
        75, help="Preview JPEG quality (1-100).", metavar="Q", check=_quality, group="output"
    )

    # video
    video: bool = option(
        True,
        help="Encode the frames the predictor takes as live video, only while someone watches video"
        " (--no-video: never; the stream then offers previews only).",
        group="video",
    )
    video_codec: str = option(
        "vp8",
        help="vp8 (libvpx, BSD; every browser's WebCodecs), vp9 (libvpx, BSD), h264 (libx264, GPL) or"
        " av1 (SVT-AV1, BSD). One the installed PyAV cannot encode is refused.",
        metavar="CODEC",
        check=_video_codec,
        group="video",
    )
    video_bitrate: int = option(
        500,
        help="Bitrate cap in kbit/s (a one-second rate buffer never holds more).",
        metavar="KBITS",
        check=positive,
        group="video",
    )
    video_keyframe_interval: float = option(
        2.0,
        help="Seconds of capture time between keyframes: where a joining viewer starts, and the most"
        " a lagging one skips.",
        metavar="SECONDS",
        check=positive,
        group="video",
    )
    video_width: int = option(
        640,
        help="Largest video width in pixels (never scaled up; the aspect is kept, both sides even).",
        metavar="PIXELS",
        check=positive,
        group="video",
    )

    # redis
    redis_url: str = option(
        "redis://127.0.0.1:6379/0",
        help="Redis to publish to; unreachable is retried forever, never fatal.",
        env="REDIS_URL",
        metavar="URL",
        check=settings.redis_url,
        group="redis",
    )
    sharded: bool = option(
        False,
        help="Use sharded pub/sub: SPUBLISH, and PUBSUB SHARDNUMSUB for --demand. Must match the gateways' "
        "--sharded (a mismatch delivers nothing). On a Redis Cluster use --cluster, which implies it.",
        group="redis",
    )
    cluster: bool = option(
        False,
        help="The Redis URL is a node of a Redis Cluster: discover the others and publish each result "
        "(one MULTI on the stream's hash slot) to the shard owning the stream. Implies --sharded; the "
        "gateways must run with --cluster too.",
        group="redis",
    )

    # operations
    metrics_port: int = option(
        0,
        help="Serve Prometheus metrics on this port (0: off).",
        metavar="PORT",
        check=port_number,
        group="operations",
    )
    metrics_host: str = option(
        "127.0.0.1",
        help="Address the metrics server listens on (0.0.0.0 in a container).",
        metavar="ADDR",
        group="operations",
    )
    log_level: str = option(
        "INFO",
        help="DEBUG, INFO, WARNING or ERROR.",
        metavar="LEVEL",
        check=settings.log_level,
        group="operations",
    )
