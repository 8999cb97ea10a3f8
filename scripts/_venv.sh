# Sourced by the scripts that need a virtualenv: make one hold exactly what a lock pins.
# uv itself comes hash-checked from scripts/requirements-uv.txt into .tools/ (once).
#   ensure_venv [--inexact] EXTRA...   .venv (FRAMECAST_VENV) from uv.lock with these extras,
#                                       e.g. ensure_venv test; PYTHON picks the interpreter
#   find_python VERSION                 the path of CPython VERSION (3.12): pyenv, then PATH
#   venv_from_copy VENV LOCK [OPTION...] VENV (test extra) from another lock of this project
# Exact by default: a package the lock does not list for these extras is removed, so nothing
# stray decides a test. --inexact adds what is missing and leaves the rest (scripts/up.sh: the
# stack does not need the test tools, and removing them under a test run would break it).
ensure_uv() {
  local python=${PYTHON:-python3}
  if [ ! -x .tools/bin/uv ] || ! .tools/bin/uv --version 2>/dev/null | grep -q "^uv $(sed -n 's/^uv==\([^ ]*\).*/\1/p' scripts/requirements-uv.txt)\b"; then
    echo "framecast: installing uv into .tools (scripts/requirements-uv.txt)" >&2
    rm -rf .tools
    "$python" -m venv .tools
    .tools/bin/python -m pip install -q --require-hashes --no-deps -r scripts/requirements-uv.txt
  fi
}

ensure_venv() {
  ensure_uv
  local python=${PYTHON:-python3}
  local args=() extra
  if [ "${1:-}" = --inexact ]; then
    args+=(--inexact)
    shift
  fi
  for extra in "$@"; do args+=(--extra "$extra"); done
  # --locked: fail, rather than re-resolve, when uv.lock is out of date with pyproject.toml.
  # Never download an interpreter: the machine's own Pythons are the ones we test.
  UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT="${FRAMECAST_VENV:-.venv}" \
    .tools/bin/uv sync --quiet --locked --python "$python" "${args[@]}"
}

find_python() {
  local version=$1 candidate
  # pyenv's own builds first: its shims on PATH answer only for the versions selected.
  for candidate in "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/"$version"*/bin/python"$version" \
                   "$(command -v "python$version" 2>/dev/null)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import sys' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "framecast: no CPython $version found (under pyenv, or on PATH as python$version)" >&2
  return 1
}

# uv keeps one lock per project: another lock of this project (the lowest versions, the newest) is
# synced from a throwaway copy of its metadata. LOCK is copied in and synced --locked; "" resolves
# the copy afresh (newest first). OPTIONs go to `uv lock`/`uv sync` (--resolution lowest-direct).
# framecast itself goes in editable, built by the locked setuptools the test extra brought (no build
# isolation: nothing resolved on the day).
venv_from_copy() {
  local venv=$1 lock=$2 uv=$PWD/.tools/bin/uv python=${PYTHON:-python3} project
  shift 2
  ensure_uv
  project=$(mktemp -d)
  cp pyproject.toml README.md "$project"/
  [ -z "$lock" ] || cp "$lock" "$project/uv.lock"
  (cd "$project" \
    && { [ -n "$lock" ] || UV_PYTHON_DOWNLOADS=never "$uv" lock --quiet --python "$python" "$@"; } \
    && UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=$venv \
       "$uv" sync --quiet --locked --no-install-project --python "$python" --extra test "$@") \
    || { rm -rf "$project"; return 1; }
  rm -rf "$project"
  "$uv" pip install --quiet --python "$venv/bin/python" --no-deps --no-build-isolation -e .
}
