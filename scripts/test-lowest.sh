#!/usr/bin/env bash
# The fan-out, producer and end-to-end tests on the lowest version pyproject.toml allows of every
# direct dependency (uv's lowest-direct resolution, locked in scripts/lowest/uv.lock by
# scripts/lock.sh; CI runs it): every `>=` in pyproject.toml is a claim this run tests.
# usage: scripts/test-lowest.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
source scripts/_subsets.sh
venv=$PWD/.venv-lowest
venv_from_copy "$venv" scripts/lowest/uv.lock --resolution lowest-direct
uv=$PWD/.tools/bin/uv
echo "== lowest direct dependencies in .venv-lowest: $("$uv" pip list --python "$venv/bin/python" 2>/dev/null \
  | awk '$1 ~ /^(websockets|redis|prometheus-client|pyjwt|numpy|opencv-python-headless)$/ {printf "%s %s, ", $1, $2}')" >&2
exec "$venv/bin/python" -m pytest -p no:cacheprovider "${FANOUT_TESTS[@]}" "${PRODUCER_TESTS[@]}" "${E2E_TESTS[@]}" "$@"
