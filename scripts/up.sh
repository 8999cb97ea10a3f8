#!/usr/bin/env bash
# Run the whole framecast topology on this machine: embedded valkey, producer, 2 gateways, nginx.
# Creates .venv on first use. Extra arguments go to `framecast up` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv --inexact producer local
exec .venv/bin/framecast up "$@"
