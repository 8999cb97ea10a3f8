#!/usr/bin/env bash
# The one command that updates the lock, after any change to pyproject.toml's dependencies:
#   scripts/lock.sh                      uv.lock from pyproject.toml (keeping every pin that still fits),
#                                        then every file made from it (below); commit them all
#   scripts/lock.sh --upgrade            the same, every package to the newest release allowed
#   scripts/lock.sh --upgrade-package redis   (any `uv lock` option is passed on)
#   scripts/lock.sh --check              change nothing; fail when any of them is out of date (CI)
#
# What it writes, all from pyproject.toml through uv (scripts/requirements-uv.txt pins uv itself):
#   uv.lock                          every environment of ours: .venv (scripts/test.sh, scripts/up.sh),
#                                    .venv-3.12/.venv-3.13 (scripts/test-python.sh), CI
#   deploy/requirements/*.txt        uv.lock exported with hashes for the Docker images (pip
#                                    --require-hashes): gateway.txt (base), producer.txt (+producer),
#                                    build.txt (the build backend, dependency group `build`)
#   scripts/lowest/uv.lock           the lowest versions pyproject.toml allows for each direct
#                                    dependency (uv's lowest-direct resolution), for scripts/test-lowest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_uv
uv=$PWD/.tools/bin/uv
export UV_PYTHON_DOWNLOADS=never

check=false
if [ "${1:-}" = --check ]; then
  check=true
  shift
fi

# The lowest-direct lock lives in a copy of the project's metadata (uv keeps one uv.lock per
# project); kept pins are reused there as in the main lock, so it changes only when the bounds do.
lowest_project() {
  local dir=$1
  mkdir -p "$dir"
  cp pyproject.toml README.md "$dir"/
  [ -f scripts/lowest/uv.lock ] && cp scripts/lowest/uv.lock "$dir"/
  return 0
}

export_all() {  # write every export of uv.lock into $1
  local out=$1 common=(export --frozen --quiet --no-emit-project --no-dev --hashes --no-header)
  mkdir -p "$out"
  "$uv" "${common[@]}" -o "$out/gateway.txt"
  "$uv" "${common[@]}" --extra producer -o "$out/producer.txt"
  "$uv" "${common[@]}" --only-group build -o "$out/build.txt"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if $check; then
  status=0
  "$uv" lock --check --quiet || { echo "framecast: uv.lock is out of date with pyproject.toml: run scripts/lock.sh and commit" >&2; status=1; }
  lowest_project "$tmp/lowest"
  (cd "$tmp/lowest" && "$uv" lock --check --quiet --resolution lowest-direct) \
    || { echo "framecast: scripts/lowest/uv.lock is out of date: run scripts/lock.sh and commit" >&2; status=1; }
  if [ $status = 0 ]; then
    export_all "$tmp/exports"
    for file in "$tmp"/exports/*.txt; do
      diff -u "deploy/requirements/$(basename "$file")" "$file" >&2 \
        || { echo "framecast: deploy/requirements/$(basename "$file") differs from uv.lock: run scripts/lock.sh and commit" >&2; status=1; }
    done
    extra=$(comm -23 <(ls deploy/requirements) <(ls "$tmp/exports"))
    [ -z "$extra" ] || { echo "framecast: deploy/requirements/ has files scripts/lock.sh does not make: $extra" >&2; status=1; }
  fi
  [ $status = 0 ] && echo "framecast: uv.lock, scripts/lowest/uv.lock and deploy/requirements/ are up to date"
  exit $status
fi

"$uv" lock "$@"
lowest_project "$tmp/lowest"
(cd "$tmp/lowest" && "$uv" lock --quiet --resolution lowest-direct "$@")
mkdir -p scripts/lowest
cp "$tmp/lowest/uv.lock" scripts/lowest/uv.lock
rm -rf deploy/requirements
export_all deploy/requirements
echo "framecast: wrote uv.lock, scripts/lowest/uv.lock and deploy/requirements/*.txt: commit them" >&2
