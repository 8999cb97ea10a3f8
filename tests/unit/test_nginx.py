"""One nginx template, one variable list: framecast up and docker compose render the same config."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from framecast.exceptions import ConfigError
from framecast.local import nginx
from framecast.local.embedded import nginx_binary
from tests.support.tls import self_signed

ROOT = Path(__file__).resolve().parents[2]
NAMES = [name for name, _ in nginx.VARIABLES]
VALUES = {
    "LISTEN": "127.0.0.1:18080",
    "UPSTREAM_SERVERS": "server 127.0.0.1:18001 max_fails=0;",
    "NGINX_RESOLVER": "resolver 127.0.0.1:5353 valid=1s;",
    "NGINX_RUNTIME_DIR": "/tmp/framecast-nginx-test",
    "NGINX_WORKERS": "1",
    "NGINX_WORKER_CONNECTIONS": "1024",
    "NGINX_LOG_LEVEL": "warn",
    "NGINX_OPEN_FILES": "2048",
    "NGINX_TLS": "listen 127.0.0.1:18443 ssl; ssl_certificate /c.pem; ssl_certificate_key /k.pem;",
    "NGINX_CLIENT_SNDBUF": "32k",
    "NGINX_PROXY_BUFFER": "8k",
    "NGINX_UPSTREAM_RCVBUF": "32k",
}


def test_the_variable_list_is_exactly_the_templates_placeholders() -> None:
    placeholders = set(re.findall(r"\$\{(\w+)\}", nginx.TEMPLATE.read_text()))
    assert placeholders == set(NAMES)
    assert set(VALUES) == set(NAMES)


def test_render_matches_envsubst_given_the_same_variable_list() -> None:
    # The compose service runs the real envsubst on the template: both must write the same file.
    env = {"PATH": "/usr/bin:/bin", **VALUES, "host": "not-nginx's-$host"}
    out = subprocess.run(
        ["envsubst", nginx.envsubst_list()],
        input=nginx.TEMPLATE.read_text(),
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=True,
    )
    rendered = nginx.render(env)
    assert rendered == out.stdout
    # nginx's own variables survive both.
    assert "$http_upgrade" in rendered and "$host" in rendered


def test_cli_prints_the_envsubst_list_and_renders_from_the_environment(tmp_path: Path) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "framecast.local.nginx", "vars"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert listed.stdout.split() == [f"${{{name}}}" for name in NAMES]

    # A real certificate: nginx -t loads it, so the TLS listener is checked too.
    cert, key = self_signed(tmp_path / "tls")
    tls = nginx.tls_directives("127.0.0.1:18443", cert, key)
    rendered = subprocess.run(
        [sys.executable, "-m", "framecast.local.nginx", "render"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **VALUES, "NGINX_RUNTIME_DIR": str(tmp_path), "NGINX_TLS": tls},
        timeout=30,
        check=True,
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text(rendered.stdout)
    # The real nginx accepts what was rendered.
    check = subprocess.run(
        [str(nginx_binary()), "-t", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_cli_render_without_upstreams_fails_in_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "framecast.local.nginx", "render"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=30,
        check=False,
    )
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert "UPSTREAM_SERVERS" in out.stderr


def test_missing_values_take_defaults_and_a_required_one_is_named() -> None:
    rendered = nginx.render({"UPSTREAM_SERVERS": "server a:1;"})
    assert "listen 8080 sndbuf=64k;" in rendered and "server a:1;" in rendered
    assert "proxy_socket_rcvbuf 64k;" in rendered and "proxy_buffer_size 8k;" in rendered
    with pytest.raises(ConfigError, match="UPSTREAM_SERVERS"):
        nginx.render({})


def test_compose_passes_envsubst_the_same_variable_list() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    calls = re.findall(r"envsubst\s+'([^']*)'", compose)
    assert len(calls) == 1, calls
    assert re.findall(r"\$\$\{(\w+)\}", calls[0]) == NAMES


def test_the_bound_for_a_stalled_client_follows_the_buffer_sizes() -> None:
    # Defaults: 2 x 64 KiB (client socket) + 8 KiB (proxy buffer) + 2 x 64 KiB (upstream socket).
    assert nginx.stalled_client_bound() == 264 * 1024
    assert nginx.stalled_client_bound(VALUES) == (2 * 32 + 8 + 2 * 32) * 1024
    assert [nginx.size_bytes(v) for v in ("4096", "64k", "1M")] == [4096, 65536, 1 << 20]
    with pytest.raises(ConfigError, match="size"):
        nginx.size_bytes("lots")
