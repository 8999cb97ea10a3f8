#!/bin/sh
# What the official valkey image's entrypoint does that framecast relies on: a server started
# without a config file listens on every interface with protected mode off (the container's own
# network is the boundary), and it drops root.
set -e
if [ "${1#-}" != "$1" ]; then
    set -- valkey-server "$@"
fi
if [ "$1" = "valkey-server" ]; then
    case " $* " in
        *" --protected-mode "*) ;;
        *) set -- "$@" --protected-mode no ;;
    esac
    if [ "$(id -u)" = "0" ]; then
        exec setpriv --reuid=valkey --regid=valkey --clear-groups "$@"
    fi
fi
exec "$@"
