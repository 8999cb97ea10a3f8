#!/usr/bin/env bash
# Lint, type-check and run every test against real servers and a real headless Chromium.
# Creates .venv on first use; installs the Debian packages the tests drive (Chromium, Prometheus, GStreamer's
# RTSP server, Node) when they are missing and we may (root or sudo): see scripts/_packages.sh.
# Extra arguments go to pytest (e.g. scripts/test.sh -k gateway -x).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv test

source scripts/_packages.sh
ensure_packages
source scripts/ensure-test-packages.sh
ensure_test_packages

echo "== ruff" && .venv/bin/ruff check .
echo "== mypy" && .venv/bin/mypy
echo "== pytest" && exec .venv/bin/python -m pytest -n "$(test_workers)" "$@"
