"""docker-compose.yml and the Dockerfiles, checked without a Docker Engine.

``compose-spec.json`` is the Compose Specification's JSON schema, vendored from
https://github.com/compose-spec/compose-spec/blob/a08f8d51631b7127ddac3d2c65537db429d0f1d0/schema/compose-spec.json
(Apache-2.0; the last change to that file as of 2025-10-28). Refresh it by copying that path anew.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from framecast.local import nginx
from gateway.config import GatewayConfig
from producer.config import Config as ProducerConfig
from tests.deploy._settings import default, unknown

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(__file__).parent / "compose-spec.json").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)  # the schema's own draft
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
GATEWAYS = ("gateway", "cluster-gateway")
PRODUCERS = ("producer", "cluster-producer")
LBS = {"lb": "gateway", "cluster-lb": "cluster-gateway"}


def test_compose_file_follows_the_compose_specification() -> None:
    VALIDATOR.validate(COMPOSE)


def test_the_schema_rejects_what_the_specification_forbids() -> None:
    """The vendored schema is the real one: an unknown service key fails."""
    broken = {"services": {"gateway": {"image": "x", "replicas_typo": 3}}}
    with pytest.raises(jsonschema.ValidationError, match="replicas_typo"):
        VALIDATOR.validate(broken)


def test_no_top_level_name_which_compose_1_29_rejects() -> None:
    assert "name" not in COMPOSE


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in SERVICES.items():
        if name == "cluster-init":  # a one-shot job; its dependants wait for it to complete
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in LBS:
        assert "/healthz" in " ".join(SERVICES[name]["healthcheck"]["test"])
    for name in GATEWAYS:
        assert "/readyz" in " ".join(SERVICES[name]["healthcheck"]["test"])


def test_nginx_waits_for_healthy_gateways() -> None:
    for lb, gateway in LBS.items():
        assert SERVICES[lb]["depends_on"][gateway]["condition"] == "service_healthy"


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"unexpected duration {duration!r}"
    return float(match[1])


def test_stop_grace_period_covers_the_drain() -> None:
    close_timeout = default(GatewayConfig, "close_timeout")
    assert isinstance(close_timeout, float)
    for name in GATEWAYS:
        service = SERVICES[name]
        drain = float(service["environment"]["FRAMECAST_DRAIN_TIMEOUT"])
        assert _seconds(service["stop_grace_period"]) > drain + close_timeout, name


def test_environment_names_only_real_settings() -> None:
    for name in GATEWAYS:
        assert not unknown(SERVICES[name]["environment"], GatewayConfig), name
    for name in PRODUCERS:
        assert not unknown(SERVICES[name]["environment"], ProducerConfig), name
    for name in ("cluster-gateway", "cluster-producer"):
        assert SERVICES[name]["environment"]["FRAMECAST_CLUSTER"] == "true"


def test_lb_open_files_limit_is_a_variable_with_a_default_under_common_hard_limits() -> None:
    for name in LBS:
        nofile = SERVICES[name]["ulimits"]["nofile"]
        match = re.fullmatch(r"\$\{FRAMECAST_LB_NOFILE:-(\d+)\}", str(nofile))
        assert match, nofile
        # This sandbox's hard limit is 20000; a container asking for more does not start.
        assert int(match[1]) <= 20000
        assert SERVICES[name]["environment"]["NGINX_OPEN_FILES"] == nofile


def _default(value: object, variable: str) -> int:
    match = re.fullmatch(r"\$\{" + variable + r":-(\d+)\}", str(value))
    assert match, value
    return int(match[1])


def test_the_default_replicas_fit_the_balancer_even_on_one_core() -> None:
    # The lb checks this at start (its command); the defaults must pass it for the three
    # replicas the README starts, with one nginx worker.
    per_gateway = _default(
        SERVICES["gateway"]["environment"]["FRAMECAST_MAX_CONNECTIONS"], "FRAMECAST_MAX_CONNECTIONS"
    )
    for name in LBS:
        env = SERVICES[name]["environment"]
        assert _default(env["FRAMECAST_MAX_CONNECTIONS"], "FRAMECAST_MAX_CONNECTIONS") == per_gateway, name
        per_worker = _default(env["NGINX_WORKER_CONNECTIONS"], "FRAMECAST_LB_NOFILE")
        assert 3 * per_gateway <= nginx.client_capacity(workers=1, worker_connections=per_worker), name
        assert env["GATEWAY_SERVICE"] in SERVICES, name
        assert f"server {env['GATEWAY_SERVICE']}:8000 " in env["UPSTREAM_SERVERS"], name


def test_envsubst_fills_exactly_the_templates_placeholders() -> None:
    template = (ROOT / "framecast/local/nginx.conf.template").read_text()
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", template))
    for name in LBS:
        command = " ".join(SERVICES[name]["command"])
        listed = set(re.findall(r"\$\$\{([A-Z_]+)\}", command))
        assert listed == placeholders, name
        assert placeholders <= set(SERVICES[name]["environment"]), name


def _stages(dockerfile: str) -> list[list[str]]:
    stages: list[list[str]] = []
    for line in (ROOT / "deploy" / dockerfile).read_text().splitlines():
        if line.startswith("FROM "):
            stages.append([])
        if stages and line and not line.startswith("#"):
            stages[-1].append(line)
    return stages


@pytest.mark.parametrize("dockerfile", ["gateway.Dockerfile", "producer.Dockerfile"])
def test_dockerfiles_are_multi_stage_pinned_and_non_root(dockerfile: str) -> None:
    text = (ROOT / "deploy" / dockerfile).read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base and re.fullmatch(r"python:\d+\.\d+-slim(@sha256:[0-9a-f]{64})?", base[1]), base
    stages = _stages(dockerfile)
    assert len(stages) >= 2
    final = stages[-1]
    assert any(line.startswith("COPY --from=build ") for line in final)
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1].isdigit() and users[-1] != "0"


@pytest.mark.parametrize(
    ("dockerfile", "locked"), [("gateway.Dockerfile", "gateway.txt"), ("producer.Dockerfile", "producer.txt")]
)
def test_dockerfiles_install_only_what_the_lock_pins_hash_checked(dockerfile: str, locked: str) -> None:
    """Every pip install takes the export of uv.lock with --require-hashes, or the wheel just built."""
    text = (ROOT / "deploy" / dockerfile).read_text().replace("\\\n", " ")
    installs = [
        command.strip()
        for line in text.splitlines()
        if line.startswith("RUN ")
        for command in line[4:].split("&&")
        if re.search(r"\bpip (install|wheel)\b", command)
    ]
    requirements = [re.search(r"-r /requirements/(\S+)", c) for c in installs]
    assert sorted(m[1] for m in requirements if m) == sorted(["build.txt", locked])
    for command, match in zip(installs, requirements, strict=True):
        assert "--no-deps" in command.split(), command
        if match:
            assert "--require-hashes" in command.split(), command
            assert (ROOT / "deploy" / "requirements" / match[1]).is_file(), command
        elif " install " in command:
            assert "--no-index" in command.split() and "/dist/" in command, command  # our own wheel
        else:
            assert "--no-build-isolation" in command.split(), command  # the locked setuptools builds it
    exported = (ROOT / "deploy" / "requirements" / locked).read_text()
    assert "--hash=sha256:" in exported and "websockets==" in exported
    assert ("opencv-python-headless==" in exported) == (locked == "producer.txt")


def test_dockerignore_keeps_the_context_to_the_sources() -> None:
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "**"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "README.md",
        "deploy/requirements",
        "framecast",
        "gateway",
        "producer",
        "clients/js/src",
    }
    # Each Dockerfile copies only what the context keeps.
    for dockerfile in ("gateway.Dockerfile", "producer.Dockerfile"):
        for line in (ROOT / "deploy" / dockerfile).read_text().splitlines():
            if line.startswith("COPY ") and "--from=" not in line:
                sources = line.split()[1:-1]
                assert set(sources) <= allowed, line
