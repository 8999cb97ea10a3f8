"""``framecast record``: save a stream's live video to an MP4 or WebM file, without re-encoding.

It joins like any viewer (:mod:`framecast.client`, asking for video), so what it saves is what a
viewer sees: the frames as the producer encoded them, put into a standard container by FFmpeg's
muxers (PyAV). The clip starts at a keyframe, and a break in the chain (a lost frame, a new
producer run, another frame size) waits for the next keyframe rather than write frames no
player can decode.

PyAV is imported only when a file is written (:class:`Recorder`): the gateway's slim install has
no ``av``, and importing this module there pulls in nothing (``tests/unit/test_boundaries.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framecast import client, logs, settings, wire
from framecast.exceptions import FramecastError
from framecast.settings import option

__all__ = ["CONTAINERS", "RecordConfig", "RecordError", "Recorder", "main"]

CONTAINERS: dict[str, tuple[str, frozenset[str]]] = {
    ".mp4": ("mp4", frozenset({"h264", "vp9", "av1"})),
    ".webm": ("webm", frozenset({"vp8", "vp9", "av1"})),
}
"""Extension -> (FFmpeg muxer, codecs it takes)."""

_CODEC_NAMES = {"vp8": "vp8", "vp09": "vp9", "avc1": "h264", "av01": "av1"}

DESCRIPTION = """\
Record a stream's live video to FILE (.mp4 or .webm, by its extension) for N seconds of
capture time, exactly as the producer encoded it (no re-encoding). The clip starts at a
keyframe and plays in any player; a lost frame makes the recording wait for the next keyframe.

URL and stream are as 'framecast watch' takes them: http://host:port, ws://host:port/ws or
ws://host:port/ws/STREAM. Codecs per container: .webm takes vp8, vp9 and av1; .mp4 takes h264,
vp9 and av1 (the producer's --video-codec decides which arrives)."""

EPILOG = """\
exit status:
  0  N seconds were recorded
  1  the gateway could not be reached, refused the token, or sent no video in time
  2  bad arguments: an extension other than .mp4/.webm, a stream without video, a codec the
     container cannot hold

examples:
  framecast record http://127.0.0.1:8080 --stream default --seconds 10 --out clip.webm
  framecast record ws://127.0.0.1:8080/ws/door --seconds 30 --out door.mp4"""


class RecordError(FramecastError):
    """Recording cannot go on; ``status`` is the exit status it calls for."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def codec_name(codec_string: str) -> str:
    """``vp8``, ``vp9``, ``h264`` or ``av1`` for a WebCodecs codec string (else its prefix)."""
    prefix = codec_string.split(".", 1)[0]
    return _CODEC_NAMES.get(prefix, prefix)


def container_for(path: str | Path) -> str:
    """The muxer for ``path``'s extension.

    Raises:
        RecordError: (status 2) an extension other than .mp4 or .webm.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in CONTAINERS:
        raise RecordError(
            f"--out={path}: unsupported extension {suffix or '(none)'!r} (use .mp4 or .webm)", status=2
        )
    return CONTAINERS[suffix][0]


def check_codec(path: str | Path, codec: str) -> None:
    """Raise RecordError (status 2) when ``path``'s container cannot hold ``codec``."""
    suffix = Path(path).suffix.lower()
    _, codecs = CONTAINERS[suffix]
    if codec not in codecs:
        fits = [ext for ext, (_, taken) in CONTAINERS.items() if codec in taken]
        hint = f"record to {' or '.join(fits)}" if fits else "no container here takes it"
        raise RecordError(f"--out={path}: {suffix} cannot hold {codec} video ({hint})", status=2)


class Recorder:
    """Writes video frames into a container, from a keyframe on, never a broken chain.

    Args:
        path: The file (.mp4 or .webm).

    Raises:
        RecordError: An unsupported extension, or PyAV missing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._format = container_for(self.path)
        try:
            import av
        except ImportError:
            raise RecordError("framecast record needs PyAV: pip install 'framecast[record]'") from None
        self._av: Any = av
        self._container: Any = None
        self._stream: Any = None
        self._last: wire.VideoFrame | None = None
        self._start = 0.0
        self._last_pts = -1
        self._shape: tuple[str, int, int] | None = None
        self.frames = 0
        """Frames written."""
        self.skipped = 0
        """Frames received but not written (before the first keyframe, or after a break)."""

    @property
    def seconds(self) -> float:
        """Capture time from the first frame written to the last."""
        return 0.0 if self._last is None or not self.frames else self._last.captured_at - self._start

    def add(self, frame: wire.VideoFrame) -> bool:
        """Write ``frame`` if it continues the chain (or starts one at a keyframe).

        Returns:
            Whether it was written.

        Raises:
            RecordError: The container cannot hold the stream's codec, or the stream changed
                codec or frame size mid-recording (status 2 / 1).
        """
        last = self._last
        follows = (
            last is not None
            and frame.epoch == last.epoch
            and frame.seq == last.seq + 1
            and frame.group >= last.group
        )
        if not follows and not frame.key:
            self._last = None  # wait for a keyframe; never write a frame whose reference is missing
            self.skipped += 1
            return False
        if frame.key:
            shape = (codec_name(frame.codec), frame.width, frame.height)
            if self._shape is None:
                check_codec(self.path, shape[0])
                self._open(frame, shape)
            elif shape != self._shape:
                raise RecordError(
                    f"the stream changed from {self._shape[0]} {self._shape[1]}x{self._shape[2]} to "
                    f"{shape[0]} {shape[1]}x{shape[2]}: one file holds one; record again"
                )
        packet = self._av.Packet(frame.data)
        self._last_pts = max(self._last_pts + 1, round((frame.captured_at - self._start) * 1000))
        packet.pts = packet.dts = self._last_pts
        packet.time_base = fractions.Fraction(1, 1000)
        packet.is_keyframe = frame.key
        packet.stream = self._stream
        self._container.mux(packet)
        self._last = frame
        self.frames += 1
        return True

    def _open(self, frame: wire.VideoFrame, shape: tuple[str, int, int]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = self._av.open(str(self.path), "w", format=self._format)
        stream = self._container.add_stream(shape[0])
        stream.width, stream.height = shape[1], shape[2]
        stream.time_base = fractions.Fraction(1, 1000)
        if frame.description:
            stream.codec_context.extradata = frame.description
        self._stream = stream
        self._shape = shape
        self._start = frame.captured_at

    def close(self) -> None:
        """Finish the file (its index and duration are written now)."""
        if self._container is not None:
            self._container.close()
            self._container = None


@dataclass(frozen=True, kw_only=True)
class RecordConfig:
    """Settings of ``framecast record``."""

    seconds: float = option(
        10.0,
        help="Seconds of video to record (capture time, from the first keyframe).",
        env="FRAMECAST_RECORD_SECONDS",
        check=settings.positive,
        metavar="N",
    )
    out: str = option(
        "",
        help="The file to write: .mp4 or .webm (required).",
        env="FRAMECAST_RECORD_OUT",
        metavar="FILE",
    )
    token: str | None = option(
        None,
        help="Access token (JWT) for gateways that require one; prefer the variable.",
        env="FRAMECAST_TOKEN",
        metavar="T",
    )
    wait: float = option(
        10.0,
        help="Seconds to wait for the first keyframe (and between frames) before giving up.",
        env="FRAMECAST_RECORD_WAIT",
        check=settings.positive,
        metavar="SECONDS",
    )
    retries: int = option(
        5,
        help="Failed connection attempts in a row before giving up.",
        env="FRAMECAST_RECORD_RETRIES",
        check=settings.positive,
        metavar="N",
    )


def _positional(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url", metavar="URL", help="gateway or load balancer: http://host:port or ws://host:port/ws"
    )
    parser.add_argument("--stream", "-s", default=None, metavar="S", help="The stream to record.")


async def record(url: str, stream: str, config: RecordConfig) -> Recorder:
    """Record ``stream`` into ``config.out``; returns the finished :class:`Recorder`.

    Raises:
        RecordError: As the exit statuses say.
        client.ClientError: The gateway could not be reached or refused.
    """
    recorder = Recorder(config.out)
    subscription = client.subscribe(
        url, [stream], token=config.token, video=True, max_attempts=config.retries
    )
    try:
        async with subscription:
            while recorder.seconds < config.seconds:
                try:
                    async with asyncio.timeout(config.wait):
                        message = await anext(subscription)
                        while not _counts(message, stream):
                            message = await anext(subscription)
                except TimeoutError:
                    what = "no video arrived" if not recorder.frames else "the video stopped"
                    raise RecordError(f"{stream}: {what} within {config.wait:g} s") from None
                _check(message, stream, url)
                if isinstance(message, wire.VideoFrame):
                    recorder.add(message)
    finally:
        recorder.close()
    return recorder


def _counts(message: client.Message, stream: str) -> bool:
    """Whether ``message`` is one the recording acts on (the timeout waits for these only)."""
    if isinstance(message, wire.VideoFrame | wire.Subscribed | wire.Status | wire.Error):
        return message.stream == stream
    return False


def _check(message: client.Message, stream: str, url: str) -> None:
    if isinstance(message, wire.Subscribed) and not message.video:
        raise RecordError(
            f"{url}: the gateway does not send video for {stream} (it predates video)", status=2
        )
    if isinstance(message, wire.Status) and not message.video and message.state == "online":
        raise RecordError(f"{stream} has no video (its producer runs with --no-video)", status=2)
    if isinstance(message, wire.Error):
        raise RecordError(f"{stream}: the gateway refused: {message.code}: {message.message}")


def main(argv: Sequence[str] | None = None, *, prog: str = "framecast record") -> int:
    """Run ``framecast record``; returns the exit status (see ``--help``)."""
    config, args = settings.parse_with_args(
        RecordConfig, argv, prog=prog, description=DESCRIPTION, epilog=EPILOG, extra=_positional
    )
    logs.setup("WARNING", name="record")
    try:
        if not config.out:
            raise RecordError("--out FILE is required (.mp4 or .webm)", status=2)
        container_for(config.out)
        _, named = client.websocket_url(args.url)
        stream = wire.check_stream_name(args.stream) if args.stream else named
        if stream is None:
            raise RecordError("name the stream: --stream S, or a ws://host/ws/S URL", status=2)
        recorder = asyncio.run(record(args.url, stream, config))
    except RecordError as exc:
        return settings.fail(prog, str(exc), exc.status)
    except (client.ClientError, wire.WireError) as exc:
        return settings.fail(prog, str(exc), 2 if isinstance(exc, wire.WireError) else 1)
    except KeyboardInterrupt:
        return 130
    print(
        f"{prog}: {config.out}: {recorder.frames} frames, {recorder.seconds:.1f} s"
        f" ({recorder.skipped} skipped before a keyframe)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
