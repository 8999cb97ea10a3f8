#!/usr/bin/env bash
# The fan-out, producer and end-to-end tests on the lowest version pyproject.toml allows of every
# direct dependency (uv's lowest-direct resolution, locked in scripts/lowest/uv.lock by
# scripts/lock.sh; CI runs it): every `>=` in pyproject.toml is a claim this run tests.
# usage: scripts/test-lowest.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
source scripts/_subsets.sh
ensure_uv
uv=$PWD/.tools/bin/uv
venv=$PWD/.venv-lowest
python=${PYTHON:-python3}
# uv keeps one lock per project: the lowest one is synced from a copy of the project's metadata.
project=$(mktemp -d)
trap 'rm -rf "$project"' EXIT
cp pyproject.toml README.md scripts/lowest/uv.lock "$project"/
(cd "$project" && UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=$venv \
   "$uv" sync --quiet --locked --resolution lowest-direct --no-install-project --python "$python" --extra test)
# framecast itself, editable, built by the locked setuptools now in the venv (no build isolation:
# nothing resolved on the day).
"$uv" pip install --quiet --python "$venv/bin/python" --no-deps --no-build-isolation -e .
echo "== lowest direct dependencies in .venv-lowest: $("$uv" pip list --python "$venv/bin/python" 2>/dev/null \
  | awk '$1 ~ /^(websockets|redis|prometheus-client|pyjwt|numpy|opencv-python-headless)$/ {printf "%s %s, ", $1, $2}')" >&2
exec "$venv/bin/python" -m pytest -p no:cacheprovider "${FANOUT_TESTS[@]}" "${PRODUCER_TESTS[@]}" "${E2E_TESTS[@]}" "$@"
