# Sourced by scripts/up.sh and scripts/test.sh: make .venv with the given extras, once per pyproject change.
# usage: ensure_venv EXTRAS
ensure_venv() {
  local extras=$1
  local python=${PYTHON:-python3}
  local stamp=".venv/.framecast-${extras//,/-}"
  local want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ ! -x .venv/bin/python ]; then
    echo "framecast: creating .venv with $($python --version 2>&1)" >&2
    "$python" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "framecast: installing framecast[$extras] into .venv" >&2
    .venv/bin/python -m pip install -q -e ".[$extras]"
    echo "$want" > "$stamp"
  fi
}
