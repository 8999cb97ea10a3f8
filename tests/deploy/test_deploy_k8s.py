"""deploy/k8s, checked offline: `kubectl kustomize` output parsed into the official client's models.

No cluster runs here. Each overlay is built with kubectl's own kustomize (installed from Debian's
kubernetes-client if missing); every object must round-trip through its `kubernetes` model
unchanged (an unknown or misspelt field is dropped by the model, so it shows), and the pieces
must fit together: selectors, probes, ports, grace periods, the settings the containers read.
"""

from __future__ import annotations

import base64
import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient

from gateway.config import GatewayConfig
from producer.config import Config as ProducerConfig
from tests.deploy._settings import default, unknown

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("standalone", "cluster")
_MODELS = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("apps/v1", "StatefulSet"): "V1StatefulSet",
    ("v1", "Service"): "V1Service",
    ("v1", "Secret"): "V1Secret",
    ("networking.k8s.io/v1", "Ingress"): "V1Ingress",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
}


@functools.cache
def _kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "kubernetes-client"], check=True, timeout=600)
        found = shutil.which("kubectl")
    assert found, "kubectl is needed to build the kustomizations (apt-get install kubernetes-client)"
    return found


@functools.cache
def build(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [_kubectl(), "kustomize", str(ROOT / "deploy/k8s/overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def _one(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _normal(value: Any) -> Any:
    """YAML as the API would hold it: ints stay ints, empty maps and nulls are the same."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_round_trips_through_the_official_models(overlay: str) -> None:
    api = ApiClient()
    objects = build(overlay)
    assert objects
    for obj in objects:
        model = _MODELS.get((obj["apiVersion"], obj["kind"]))
        assert model, f"no model for {obj['apiVersion']} {obj['kind']}"
        parsed = api._ApiClient__deserialize(obj, model)  # type: ignore[attr-defined]
        assert _normal(api.sanitize_for_serialization(parsed)) == _normal(obj), obj["metadata"]["name"]


def test_the_round_trip_catches_a_misspelt_field() -> None:
    api = ApiClient()
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"selectr": {"a": "b"}}}
    parsed = api._ApiClient__deserialize(obj, "V1Service")  # type: ignore[attr-defined]
    assert _normal(api.sanitize_for_serialization(parsed)) != _normal(obj)


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_find_their_pods_and_references_resolve(overlay: str) -> None:
    objects = build(overlay)
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    for w in workloads:
        assert _labels_match(
            w["spec"]["selector"]["matchLabels"], w["spec"]["template"]["metadata"]["labels"]
        )
    gateway = _one(objects, "Deployment", "framecast-gateway")
    pods = gateway["spec"]["template"]["metadata"]["labels"]
    service = _one(objects, "Service", "framecast-gateway")
    assert _labels_match(service["spec"]["selector"], pods)
    # The Service selects the gateways only (not the producer's pods).
    others = [w for w in workloads if w is not gateway]
    assert not any(
        _labels_match(service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        for w in others
    )
    pdb = _one(objects, "PodDisruptionBudget", "framecast-gateway")
    assert _labels_match(pdb["spec"]["selector"]["matchLabels"], pods)
    hpa = _one(objects, "HorizontalPodAutoscaler", "framecast-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": gateway["metadata"]["name"],
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    # A disruption may take one gateway while the autoscaler's minimum still serves.
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]
    ingress = _one(objects, "Ingress", "framecast")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    for svc in (o for o in objects if o["kind"] == "Service"):
        target = next(
            w
            for w in workloads
            if _labels_match(svc["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        )
        names = {p["name"] for c in target["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= names, svc["metadata"]["name"]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _port(container: dict[str, Any], name: str) -> int:
    return int(next(p["containerPort"] for p in container["ports"] if p["name"] == name))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_probes_ports_and_grace_match_its_settings(overlay: str) -> None:
    gateway = _one(build(overlay), "Deployment", "framecast-gateway")
    pod = gateway["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = _env(container)
    assert not unknown(env, GatewayConfig)
    ready, live = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert (ready["path"], live["path"]) == ("/readyz", "/healthz")
    assert _port(container, ready["port"]) == _port(container, live["port"]) == int(env["FRAMECAST_PORT"])
    assert env["FRAMECAST_HOST"] == "0.0.0.0"
    # preStop, then SIGTERM: the drain and the close handshakes must end before SIGKILL.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    close_timeout = default(GatewayConfig, "close_timeout")
    assert isinstance(close_timeout, float)
    needed = float(pre_stop[1]) + float(env["FRAMECAST_DRAIN_TIMEOUT"]) + close_timeout
    assert pod["terminationGracePeriodSeconds"] > needed
    assert env["REDIS_URL"]["secretKeyRef"] == {"name": "framecast-redis", "key": "url"}
    assert container["resources"]["requests"]["cpu"]  # the HPA's utilisation is relative to it


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_non_root_with_a_read_only_root(overlay: str) -> None:
    for w in (o for o in build(overlay) if o["kind"] in ("Deployment", "StatefulSet")):
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        for c in pod["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["resources"]["limits"]["memory"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_producer_per_camera_never_two_at_once(overlay: str) -> None:
    producers = [
        o for o in build(overlay) if o["kind"] == "Deployment" and "producer" in o["metadata"]["name"]
    ]
    assert producers
    for p in producers:
        assert p["spec"]["replicas"] == 1 and p["spec"]["strategy"]["type"] == "Recreate"
        (container,) = p["spec"]["template"]["spec"]["containers"]
        env = _env(container)
        assert not unknown(env, ProducerConfig)
        assert _port(container, container["livenessProbe"]["httpGet"]["port"]) == int(
            env["FRAMECAST_METRICS_PORT"]
        )


def test_standalone_runs_valkey_and_names_it_in_the_secret() -> None:
    objects = build("standalone")
    valkey = _one(objects, "StatefulSet", "valkey")
    service = _one(objects, "Service", "valkey")
    secret = _one(objects, "Secret", "framecast-redis")
    port = _port(valkey["spec"]["template"]["spec"]["containers"][0], "redis")
    assert secret["data"]["url"]  # base64 of the URL below
    url = base64.b64decode(secret["data"]["url"]).decode()
    assert url == f"redis://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/0"
    assert service["spec"]["ports"][0]["port"] == port


def test_cluster_overlay_runs_everything_with_cluster_and_brings_no_redis() -> None:
    objects = build("cluster")
    assert not [o for o in objects if o["kind"] in ("StatefulSet", "Secret")]
    for name in ("framecast-gateway", "framecast-producer-default"):
        (container,) = _one(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        assert _env(container)["FRAMECAST_CLUSTER"] == "true"
