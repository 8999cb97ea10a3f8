# Sourced by scripts/test.sh: install the Debian packages the tests drive, when missing and we may.
# The real counterparts of the product's parts: Chromium (viewer), Prometheus and promtool (monitoring,
# alert rules), Node and npm (the JavaScript client). GStreamer's RTSP server: scripts/ensure-test-packages.sh.
# usage: ensure_packages
ensure_packages() {
  local want=(
    /usr/bin/chromium:chromium
    /usr/bin/prometheus:prometheus
    /usr/bin/promtool:prometheus
    /usr/bin/node:nodejs
    /usr/bin/npm:npm
  )
  local missing=() entry path pkg
  for entry in "${want[@]}"; do
    path=${entry%%:*} pkg=${entry##*:}
    if [ "$path" = /usr/bin/chromium ] && [ -n "${FRAMECAST_CHROMIUM:-}" ]; then path=$FRAMECAST_CHROMIUM; fi
    # A tool already on PATH (e.g. a newer node) is as good as Debian's.
    if [ ! -e "$path" ] && ! command -v "$(basename "$path")" >/dev/null 2>&1; then
      [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo
  if [ "$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo=sudo; else
    echo "framecast: the tests need these Debian packages: ${missing[*]}." \
         "Run 'sudo apt-get install ${missing[*]}' (FRAMECAST_CHROMIUM may point at another Chromium)." >&2
    return 1
  fi
  echo "framecast: installing Debian packages for the tests: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
