"""The nginx load balancer's configuration: one template, one variable list, one renderer.

``framecast up`` and the docker compose ``lb`` service fill in the same
``nginx.conf.template`` with the same variables, so the local tests exercise
the production configuration. :data:`VARIABLES` is the one list; :func:`render`
substitutes exactly those names, as ``envsubst "$(python -m framecast.local.nginx vars)"``
does, and leaves nginx's own ``$variables`` alone::

    python -m framecast.local.nginx vars     # ${LISTEN} ${UPSTREAM_SERVERS} ... (envsubst's list)
    python -m framecast.local.nginx render   # the config, from these variables in the environment
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from framecast.exceptions import ConfigError

__all__ = [
    "CONNECTION_MEMORY",
    "TEMPLATE",
    "VARIABLES",
    "client_capacity",
    "envsubst_list",
    "main",
    "render",
    "render_conf",
    "size_bytes",
    "stalled_client_bound",
    "tls_directives",
    "worker_connections_for",
]

TEMPLATE = Path(__file__).resolve().parent / "nginx.conf.template"

VARIABLES: tuple[tuple[str, str | None], ...] = (
    ("LISTEN", "8080"),
    ("UPSTREAM_SERVERS", None),
    ("NGINX_RESOLVER", ""),
    ("NGINX_RUNTIME_DIR", "/tmp/nginx"),
    ("NGINX_WORKERS", "auto"),
    ("NGINX_WORKER_CONNECTIONS", "16384"),
    ("NGINX_LOG_LEVEL", "warn"),
    ("NGINX_OPEN_FILES", "65536"),
    ("NGINX_CLIENT_SNDBUF", "64k"),
    ("NGINX_PROXY_BUFFER", "8k"),
    ("NGINX_UPSTREAM_RCVBUF", "64k"),
    ("NGINX_TLS", ""),
)
"""Every placeholder of the template with its default (None: it must be given).

``LISTEN`` is nginx's ``listen`` argument (``port`` or ``host:port``);
``UPSTREAM_SERVERS`` the ``server ...;`` lines of the gateways' upstream;
``NGINX_RESOLVER`` a ``resolver`` directive for upstreams named by DNS (or nothing);
``NGINX_TLS`` nothing, or a TLS listener beside the plain one (:func:`tls_directives`).
``NGINX_CLIENT_SNDBUF``, ``NGINX_PROXY_BUFFER`` and ``NGINX_UPSTREAM_RCVBUF`` bound what nginx
holds for one client that stops reading (:func:`stalled_client_bound`).
"""

_NAMES = tuple(name for name, _ in VARIABLES)
# envsubst replaces both $NAME and ${NAME}, and only the names it is given.
_PLACEHOLDER = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def envsubst_list() -> str:
    """The variable list for ``envsubst``: ``${LISTEN} ${UPSTREAM_SERVERS} ...``."""
    return " ".join(f"${{{name}}}" for name in _NAMES)


def render(values: Mapping[str, str], *, template: str | None = None) -> str:
    """Fill in the template's :data:`VARIABLES`, and nothing else.

    Args:
        values: A value per variable name; missing names take their default. Other keys
            are ignored, so ``os.environ`` can be passed as it is.
        template: The template text (default: ``framecast/local/nginx.conf.template``).

    Raises:
        ConfigError: A variable without a default has no value.
    """
    text = TEMPLATE.read_text() if template is None else template
    filled: dict[str, str] = {}
    for name, default in VARIABLES:
        value = values.get(name, default)
        if value is None:
            raise ConfigError(f"nginx template: {name} has no value: set {name} (e.g. 'server HOST:PORT;')")
        filled[name] = value

    def substitute(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        return filled.get(name, match.group(0))

    return _PLACEHOLDER.sub(substitute, text)


# Connections a worker keeps for itself (listeners, resolver, health checks through it).
_RESERVE = 64


def size_bytes(value: str) -> int:
    """An nginx size (``64k``, ``1m``, ``4096``) in bytes.

    Raises:
        ConfigError: Not an nginx size.
    """
    match = re.fullmatch(r"([0-9]+)([kKmM]?)", value.strip())
    if not match:
        raise ConfigError(f"nginx template: {value!r} is not a size like 64k, 1m or 4096")
    return int(match.group(1)) << {"": 0, "k": 10, "m": 20}[match.group(2).lower()]


CONNECTION_MEMORY = 32 * 1024
"""nginx's own memory per proxied WebSocket client (two connections, the request, the proxy
buffer): 25 KiB measured with 2,000 idle clients (docs/capacity.md), rounded up."""


def stalled_client_bound(values: Mapping[str, str] | None = None) -> int:
    """Most bytes nginx's sockets and buffer hold for one client that stops reading.

    Linux doubles a socket buffer size set with ``SO_SNDBUF``/``SO_RCVBUF`` (the other half is
    its bookkeeping), so: twice the client socket's send buffer, one proxy buffer, twice the
    upstream socket's receive buffer. nginx's own memory per connection comes on top
    (docs/capacity.md).
    """
    values = values or {}
    defaults = dict(VARIABLES)

    def size(name: str) -> int:
        value = values.get(name, defaults[name])
        assert value is not None
        return size_bytes(value)

    return 2 * size("NGINX_CLIENT_SNDBUF") + size("NGINX_PROXY_BUFFER") + 2 * size("NGINX_UPSTREAM_RCVBUF")


def worker_connections_for(open_files: int, wanted: int = 16384) -> int:
    """``worker_connections`` for a worker with ``open_files`` descriptors: never more than it can open."""
    return min(wanted, max(512, open_files - _RESERVE))


def client_capacity(*, workers: int, worker_connections: int) -> int:
    """WebSocket clients nginx can proxy at once: two connections each (client, upstream).

    The gateways behind it should accept no more in total (replicas x ``--max-connections``):
    past this nginx runs out of connections itself ("worker_connections are not enough") and
    drops clients, where a full gateway would have answered 503 with ``Retry-After``. The
    compose ``lb`` service checks the same rule at start in shell (docker-compose.yml).
    """
    return workers * (worker_connections - _RESERVE) // 2


def tls_directives(listen: str, cert: str | Path, key: str | Path) -> str:
    """A TLS listener on ``listen`` (``port`` or ``host:port``) with a certificate and its key.

    TLS 1.2 and 1.3 only; the plain listener stays (health checks, localhost), and both serve
    the same locations. Browsers give a page WebCodecs only in a secure context, so the viewer
    shows video to a remote browser only over HTTPS.
    """
    return (
        f"listen {listen} ssl; ssl_certificate {cert}; ssl_certificate_key {key}; "
        "ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:framecast_tls:1m;"
    )


def render_conf(
    *,
    listen: str,
    upstreams: Sequence[str],
    runtime_dir: str,
    workers: int = 1,
    worker_connections: int = 16384,
    log_level: str = "warn",
    resolver: str = "",
    open_files: int = 65536,
    tls: str = "",
) -> str:
    """The configuration ``framecast up`` runs: :func:`render` with values for a local stack.

    Args:
        listen: ``host:port`` nginx listens on.
        upstreams: ``host:port`` of each gateway.
        runtime_dir: Directory for nginx's pid file and temp paths.
        workers: nginx worker processes.
        worker_connections: Connections per worker (two per proxied client).
        log_level: nginx error_log level.
        resolver: A ``resolver`` directive, for upstreams named by DNS.
        open_files: Open-file limit of each worker (at most the hard limit nginx runs under).
        tls: :func:`tls_directives`, or nothing.
    """
    return render(
        {
            "LISTEN": listen,
            # max_fails=0: with proxy_next_upstream http_503 a gateway's 503 (full, unready) counts
            # as a failed attempt; one per gateway marked them all down and a connection storm got
            # nginx's own 502 ("no live upstreams") instead of the gateways' 503. Each request
            # still tries the next gateway on an error or a 503, and passes the last 503 on.
            "UPSTREAM_SERVERS": "\n        ".join(f"server {u} max_fails=0;" for u in upstreams),
            "NGINX_RUNTIME_DIR": runtime_dir,
            "NGINX_WORKERS": str(workers),
            "NGINX_LOG_LEVEL": log_level,
            "NGINX_RESOLVER": resolver,
            "NGINX_OPEN_FILES": str(open_files),
            "NGINX_TLS": tls,
            # Never more connections than descriptors: two per proxied client, plus a margin.
            "NGINX_WORKER_CONNECTIONS": str(worker_connections_for(open_files, worker_connections)),
        }
    )


_USAGE = "usage: python -m framecast.local.nginx {vars|render}"


def main(argv: Sequence[str] | None = None) -> int:
    """``vars``: print envsubst's variable list; ``render``: print the config from the environment."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["vars"]:
        print(envsubst_list())
        return 0
    if args == ["render"]:
        try:
            sys.stdout.write(render(os.environ))
        except ConfigError as exc:
            print(f"python -m framecast.local.nginx: error: {exc}", file=sys.stderr)
            return 2
        return 0
    print(f"{_USAGE}: pass 'vars' or 'render'", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
