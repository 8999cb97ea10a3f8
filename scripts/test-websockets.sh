#!/usr/bin/env bash
# The fan-out and end-to-end tests against one websockets release, everything else as uv.lock pins
# it: how to try a release before moving pyproject.toml's websockets bound (e.g. 18, for the <18
# that gateway/_wsio.py's use of its internals holds). The lowest one, 17.0, runs in CI with every
# other lowest version (scripts/test-lowest.sh).
# usage: scripts/test-websockets.sh VERSION [pytest args...]   e.g. scripts/test-websockets.sh 18.0
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage: scripts/test-websockets.sh VERSION [pytest args...] (e.g. 18.0)" >&2
  exit 2
fi
version=$1
shift
source scripts/_venv.sh
source scripts/_subsets.sh
venv=".venv-ws-$version"
FRAMECAST_VENV=$venv ensure_venv test
# The one deliberate difference from the lock (uv resolves it against the locked rest, and refuses
# a release that does not fit them).
.tools/bin/uv pip install --quiet --python "$venv/bin/python" "websockets==$version"
installed=$("$venv/bin/python" -c 'import websockets.version as v; print(v.version)')
if [ "$installed" != "$version" ]; then
  echo "framecast: $venv has websockets $installed, not $version" >&2
  exit 1
fi
echo "== websockets $installed" >&2
exec "$venv/bin/python" -m pytest -p no:cacheprovider "${FANOUT_TESTS[@]}" \
  tests/integration/test_gateway_e2e.py "$@"
