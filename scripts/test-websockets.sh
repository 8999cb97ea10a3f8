#!/usr/bin/env bash
# Run the fan-out and end-to-end tests against one websockets release (CI calls it for the floor, 17.0; the main suite runs the newest).
# usage: scripts/test-websockets.sh VERSION [pytest args...]   e.g. scripts/test-websockets.sh 14.2
# Creates .venv-ws-VERSION once (framecast[test] with websockets==VERSION), then runs the tests in it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage: scripts/test-websockets.sh VERSION [pytest args...] (e.g. 14.2)" >&2
  exit 2
fi
version=$1
shift
venv=".venv-ws-$version"
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  echo "framecast: creating $venv with websockets==$version" >&2
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q -e ".[test]" "websockets==$version"
installed=$("$venv/bin/python" -c 'import websockets.version as v; print(v.version)')
if [ "$installed" != "$version" ]; then
  echo "framecast: $venv has websockets $installed, not $version" >&2
  exit 1
fi
echo "== websockets $installed" >&2
exec "$venv/bin/python" -m pytest -p no:cacheprovider \
  tests/unit/test_fanout.py tests/unit/test_policy.py tests/unit/test_policy_properties.py \
  tests/integration/test_gateway_slow.py tests/integration/test_gateway_e2e.py "$@"
