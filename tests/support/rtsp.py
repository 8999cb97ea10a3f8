"""A real RTSP camera for the tests: GStreamer's RTSP server serving a still image as H.264.

Usage::

    from tests.support.rtsp import RtspServer

    with RtspServer(png_path) as camera:          # rtsp://127.0.0.1:<free port>/cam
        ... camera.url ...
        camera.kill()                               # like a camera losing power
        camera.start()                              # back on the same port

The server runs as a child of Debian's ``/usr/bin/python3`` (GStreamer's Python bindings, ``gi``,
are Debian packages, not wheels: ``scripts/ensure-test-packages.sh`` installs them) running this
file: ``/usr/bin/python3 tests/support/rtsp.py PORT PNG [--protocols tcp|udp|any] [--frames N]``.
The pipeline is ``filesrc ! pngdec ! imagefreeze ! videoconvert ! x264enc ! rtph264pay``; with
``--frames N`` each client gets N frames, then nothing while its session stays open (a camera
whose encoder froze).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Literal

SYSTEM_PYTHON = "/usr/bin/python3"
"""The interpreter that has GStreamer's bindings (``python3-gi``)."""

Protocols = Literal["tcp", "udp", "any"]


class RtspServer:
    """A GStreamer RTSP server child serving ``image`` at ``rtsp://127.0.0.1:PORT/cam``.

    Args:
        image: A PNG file to serve as a still video.
        port: The port (a free one when None); kept across :meth:`kill` and :meth:`start`.
        protocols: Lower transports the server accepts (``tcp`` refuses UDP setups, and back).
        frames: If set, each client session gets this many frames and then silence.
    """

    def __init__(
        self,
        image: Path,
        *,
        port: int | None = None,
        protocols: Protocols = "any",
        frames: int = 0,
    ) -> None:
        self.image = image
        from framecast.local.embedded import free_port  # not at the top: the child runs without framecast

        self.port = port or free_port()
        self.protocols = protocols
        self.frames = frames
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The stream's URL."""
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        """Start the server and wait until it listens."""
        from framecast.local.embedded import wait_for_port

        command = [
            SYSTEM_PYTHON,
            str(Path(__file__).resolve()),
            str(self.port),
            str(self.image),
            "--protocols",
            self.protocols,
            "--frames",
            str(self.frames),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port(self.port, process=self.process, timeout=20)
        except Exception:
            self.kill()
            raise

    def kill(self) -> None:
        """Kill the server at once (a camera losing power) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(timeout=10)
            if self.process.stderr is not None:
                self.process.stderr.close()

    def __enter__(self) -> RtspServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _serve(port: int, image: str, *, protocols: str, frames: int) -> None:  # pragma: no cover - child
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    location = image.replace("\\", "\\\\").replace('"', '\\"')
    factory.set_launch(
        f'( filesrc location="{location}" ! pngdec ! imagefreeze ! videoconvert ! video/x-raw,format=I420 '
        "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! rtph264pay name=pay0 pt=96 )"
    )
    lower = {
        "tcp": GstRtsp.RTSPLowerTrans.TCP,
        "udp": GstRtsp.RTSPLowerTrans.UDP,
        "any": GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP,
    }[protocols]
    factory.set_protocols(lower)

    if frames:

        def configure(_factory: object, media: GstRtspServer.RTSPMedia) -> None:
            payloader = media.get_element().get_by_name("pay0")
            sent = [0]

            def count(_pad: Gst.Pad, _info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
                sent[0] += 1
                return Gst.PadProbeReturn.OK if sent[0] <= frames else Gst.PadProbeReturn.DROP

            payloader.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, count)

        factory.connect("media-configure", configure)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit(f"rtsp: cannot listen on 127.0.0.1:{port}")
    GLib.MainLoop().run()


if __name__ == "__main__":  # pragma: no cover - the child
    import argparse

    parser = argparse.ArgumentParser(description="serve a PNG as an H.264 RTSP stream at /cam")
    parser.add_argument("port", type=int)
    parser.add_argument("image")
    parser.add_argument("--protocols", choices=["tcp", "udp", "any"], default="any")
    parser.add_argument("--frames", type=int, default=0)
    args = parser.parse_args()
    _serve(args.port, args.image, protocols=args.protocols, frames=args.frames)
