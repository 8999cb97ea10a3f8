# Sourced by scripts/up.sh and scripts/test.sh: make .venv hold exactly what uv.lock pins.
# uv itself comes hash-checked from scripts/requirements-uv.txt into .tools/ (once).
# usage: ensure_venv EXTRA [EXTRA ...]     e.g. ensure_venv test
# PYTHON picks the interpreter (default python3); FRAMECAST_VENV the folder (default .venv).
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
  for extra in "$@"; do args+=(--extra "$extra"); done
  # --locked: fail, rather than re-resolve, when uv.lock is out of date with pyproject.toml.
  # Never download an interpreter: the machine's own Pythons are the ones we test.
  UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT="${FRAMECAST_VENV:-.venv}" \
    .tools/bin/uv sync --quiet --locked --python "$python" "${args[@]}"
}
