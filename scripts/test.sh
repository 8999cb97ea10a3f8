#!/usr/bin/env bash
# Lint, type-check and run every test against real servers and a real headless Chromium.
# Creates .venv on first use; installs Debian's chromium if it is missing and we may (root or sudo).
# Extra arguments go to pytest (e.g. scripts/test.sh -k gateway -x).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv test

chromium=${FRAMECAST_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  if [ "$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo=sudo; else
    echo "framecast: the browser tests need Debian's chromium at $chromium: run 'sudo apt-get install chromium'" \
         "or set FRAMECAST_CHROMIUM to a Chromium binary" >&2
    exit 1
  fi
  echo "framecast: installing Debian's chromium for the browser tests" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

echo "== ruff" && .venv/bin/ruff check .
echo "== mypy" && .venv/bin/mypy
echo "== pytest" && exec .venv/bin/python -m pytest "$@"
