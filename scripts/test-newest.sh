#!/usr/bin/env bash
# Lint, types and the unit tests on the newest release pyproject.toml allows of every package,
# resolved today, without touching uv.lock. Run it before raising a bound or refreshing the lock
# (scripts/lock.sh --upgrade): an upstream release that breaks us shows here, in a command, rather
# than in a newcomer's first run.
# usage: scripts/test-newest.sh [pytest args...]
# Prints the packages it took newer than uv.lock pins; leaves .venv-newest behind for a closer look.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
venv=$PWD/.venv-newest
venv_from_copy "$venv" ""
uv=$PWD/.tools/bin/uv
# What uv.lock pins for this Python (markers evaluated by the venv's interpreter) against what came.
newer=$("$uv" export --frozen --quiet --no-hashes --no-header --no-annotate --no-emit-project --extra test \
  | "$venv/bin/python" -c '
import sys
from importlib.metadata import distributions
from packaging.requirements import Requirement
installed = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in distributions()}
for line in sys.stdin:
    line = line.strip()
    if not line or line.startswith(("#", "-")):
        continue
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate():
        continue
    pinned = str(req.specifier).removeprefix("==")
    now = installed.get(req.name.lower().replace("_", "-"))
    if now != pinned:
        print(f"  {req.name} {pinned} -> {now}")
')
echo "== newest versions pyproject.toml allows (.venv-newest); where they differ from uv.lock:" >&2
echo "${newer:-  nowhere: uv.lock pins the newest of everything}" >&2
status=0
echo "== ruff" >&2 && "$venv/bin/ruff" check . || status=1
echo "== mypy" >&2 && "$venv/bin/mypy" || status=1
echo "== pytest tests/unit" >&2 && "$venv/bin/python" -m pytest -p no:cacheprovider tests/unit "$@" || status=1
exit $status
