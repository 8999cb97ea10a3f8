#!/usr/bin/env bash
# Prepare a Docker Engine for the `docker` tests (tests/docker/), as root on a Debian machine:
#   scripts/ci-docker.sh         install docker.io, docker-compose and debootstrap if missing, start
#                                dockerd if none answers, build (or load from cache) the stand-in
#                                base images (deploy/standins/build.sh)
#   scripts/ci-docker.sh stop    stop the dockerd this script started (no-op otherwise)
# then: .venv/bin/python -m pytest -m docker tests/docker
# Cache of the stand-in images: $FRAMECAST_DOCKER_CACHE (default ~/.cache/framecast-docker).
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir="${FRAMECAST_DOCKER_RUN:-/tmp/framecast-dockerd}"
pidfile="$run_dir/dockerd.pid"
# Debian's client talks to Debian's 20.10 daemon; a newer client elsewhere on PATH may not.
docker=/usr/bin/docker
[ -x "$docker" ] || docker=docker

if [ "${1:-}" = stop ]; then
    if [ -f "$pidfile" ]; then
        pid="$(cat "$pidfile")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        rm -f "$pidfile"
        echo "ci-docker: stopped dockerd $pid"
    fi
    exit 0
fi

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "ci-docker: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
fi

if ! "$docker" info >/dev/null 2>&1; then
    mkdir -p "$run_dir"
    echo "ci-docker: starting dockerd (log: $run_dir/dockerd.log)"
    dockerd >"$run_dir/dockerd.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 120); do "$docker" info >/dev/null 2>&1 && break; sleep 0.5; done
    "$docker" info >/dev/null 2>&1 || { tail -20 "$run_dir/dockerd.log" >&2; echo "ci-docker: dockerd did not start" >&2; exit 1; }
fi

DOCKER="$docker" deploy/standins/build.sh
