#!/usr/bin/env bash
# The unit tests and the end-to-end subset on another CPython than the default one (CI: 3.12, 3.13).
# usage: scripts/test-python.sh VERSION [pytest args...]    e.g. scripts/test-python.sh 3.13 -x
# Syncs .venv-VERSION from uv.lock (the same pins as .venv, for that Python; atheris has no build
# for 3.13 and is left out there by its marker in pyproject.toml), then runs the tests in it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage: scripts/test-python.sh VERSION [pytest args...] (e.g. 3.12)" >&2
  exit 2
fi
version=$1
shift
source scripts/_venv.sh
source scripts/_subsets.sh
PYTHON=$(find_python "$version")
FRAMECAST_VENV=".venv-$version" PYTHON=$PYTHON ensure_venv test
echo "== $(".venv-$version/bin/python" --version) (.venv-$version): unit tests and the end-to-end subset" >&2
exec ".venv-$version/bin/python" -m pytest -p no:cacheprovider tests/unit "${E2E_TESTS[@]}" "$@"
