#!/usr/bin/env bash
# Debian packages the tests need besides the wheels: GStreamer's RTSP server (a real camera for
# tests/integration/test_producer_rtsp.py, run by Debian's /usr/bin/python3, which has `gi`).
# Source it and call ensure_test_packages (scripts/test.sh does), or run it. Installs what is
# missing when we may (root or passwordless sudo); otherwise says what to install and fails.
set -euo pipefail

_rtsp_packages=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
                gstreamer1.0-plugins-ugly gstreamer1.0-libav)

_rtsp_ready() {
  /usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0"); from gi.repository import GstRtspServer' \
    2>/dev/null && command -v gst-inspect-1.0 >/dev/null \
    && gst-inspect-1.0 x264enc >/dev/null 2>&1 && gst-inspect-1.0 rtph264pay >/dev/null 2>&1 \
    && gst-inspect-1.0 pngdec >/dev/null 2>&1 && gst-inspect-1.0 imagefreeze >/dev/null 2>&1
}

ensure_test_packages() {
  _rtsp_ready && return 0
  local sudo
  if [ "$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo=sudo; else
    echo "framecast: the RTSP tests need GStreamer's RTSP server: run" \
         "'sudo apt-get install ${_rtsp_packages[*]} gstreamer1.0-tools'" >&2
    return 1
  fi
  echo "framecast: installing GStreamer's RTSP server for the RTSP tests" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${_rtsp_packages[@]}" gstreamer1.0-tools >/dev/null
  _rtsp_ready || { echo "framecast: GStreamer's RTSP server still unusable after installing" >&2; return 1; }
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  ensure_test_packages
fi
