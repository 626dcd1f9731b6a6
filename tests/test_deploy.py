"""deploy/: the Kubernetes kustomization, the compose file and its reverse proxy, the Dockerfile.

Always: every manifest parses, has the kinds it needs, and makes sense together (probes, selectors, ports,
environment, mounts, grace periods against what the code waits for). When kubectl is on the machine,
`kubectl kustomize deploy/k8s` renders it and the rendered objects pass the same checks.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli.serve import settle_bound_s
from app.runtime.settings import Settings, load_settings
from app.runtime.settings.load import _fields

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
KINDS = {"ConfigMap", "Job", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Ingress"}
PRE_STOP_MAX_S = 15


def _variables() -> set[str]:
    """Every environment variable worldgate reads (and a key file's _FILE), with the services' plain names."""
    names = set()
    for _path, _info, where in _fields(Settings):
        names |= {where.env, *where.also}
        if where.secret:
            names.add(f"{where.env}_FILE")
    return names


def _by_kind(documents: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        assert {"apiVersion", "kind", "metadata"} <= document.keys(), document
        assert document["metadata"].get("name"), document
        found.setdefault(document["kind"], []).append(document)
    return found


def _source_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk  # nothing written and left out, nothing listed and missing
    return [d for name in listed for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def _check(documents: list[dict[str, Any]]) -> None:
    """What the manifests must say, rendered or not."""
    kinds = _by_kind(documents)
    assert set(kinds) == KINDS and all(len(v) == 1 for v in kinds.values()), sorted(kinds)
    [config] = kinds["ConfigMap"]
    [deployment] = kinds["Deployment"]
    [job] = kinds["Job"]
    [service] = kinds["Service"]
    known = _variables()

    # the gateway: probes, environment, mounts, resources, shutdown
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [gateway] = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    readiness, liveness = gateway["readinessProbe"]["httpGet"], gateway["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/v1/health" and liveness["path"] == "/v1/health/live"  # never the database
    assert readiness["path"] != liveness["path"]
    assert {readiness["port"], liveness["port"], gateway["startupProbe"]["httpGet"]["port"]} <= ports.keys()
    env = _env(gateway)
    assert set(env) <= known, sorted(set(env) - known)
    assert set(config["data"]) <= known | {"OTEL_EXPORTER_OTLP_ENDPOINT"}, sorted(set(config["data"]) - known)
    trusted = env["WORLDGATE_TRUSTED_PROXIES"]["value"].split(",")
    assert trusted and all(ipaddress.ip_network(t.strip(), strict=False) for t in trusted)
    assert gateway["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["name"]: m for m in gateway["volumeMounts"]}
    assert mounts.keys() <= volumes.keys()
    for name in ("WORLDGATE_EVM_RELAYER_KEY_FILE", "WORLDGATE_SVM_FEE_PAYER_KEY_FILE"):
        key_dir = str(Path(env[name]["value"]).parent)
        [holder] = [m for m in mounts.values() if m["mountPath"] == key_dir]
        assert holder["readOnly"] is True and "secret" in volumes[holder["name"]]
    [state_dir] = re.findall(r"WORLDGATE_STATE_DIR=(\S+)", (ROOT / "deploy" / "Dockerfile").read_text())
    assert any(m["mountPath"] == state_dir for m in mounts.values())  # writable under a read-only root
    resources = gateway["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]
    assert _mebibytes(resources["limits"]["memory"]) >= _mebibytes(resources["requests"]["memory"])
    assert gateway["securityContext"]["readOnlyRootFilesystem"] is True
    # SIGTERM to SIGKILL: the preStop pause, the grace period, then a settlement under way, with room to close
    pre_stop = gateway["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep" and 0 < int(pre_stop[1]) <= PRE_STOP_MAX_S
    configured = load_settings(config["data"], keys=False)
    needed = int(pre_stop[1]) + configured.production.shutdown_grace_s + settle_bound_s(configured)
    assert pod["spec"]["terminationGracePeriodSeconds"] >= needed + 5, needed

    # the migration Job: the database, and no key of any kind
    job_pod = job["spec"]["template"]["spec"]
    [migrate] = job_pod["containers"]
    assert migrate["command"] == ["worldgate", "migrate"]
    assert "volumes" not in job_pod and "volumeMounts" not in migrate and "envFrom" not in migrate
    assert set(_env(migrate)) == {"DATABASE_URL"}
    assert "worldgate-keys" not in yaml.safe_dump(job)  # the keys' secret is named nowhere in the Job

    # the Service, the budget, the autoscaler and the ingress point at the gateway
    assert service["spec"]["selector"].items() <= labels.items()
    [service_port] = service["spec"]["ports"]
    assert service_port["targetPort"] in ports
    [budget] = kinds["PodDisruptionBudget"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items() and budget["spec"]["minAvailable"] == 1
    [scaler] = kinds["HorizontalPodAutoscaler"]
    target = scaler["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    [metric] = scaler["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and 0 < metric["resource"]["target"]["averageUtilization"] <= 90
    assert 2 <= scaler["spec"]["minReplicas"] < scaler["spec"]["maxReplicas"]
    [ingress] = kinds["Ingress"]
    backends = [p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert backends == [{"name": service["metadata"]["name"], "port": {"name": service_port["name"]}}]


def _mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return float(number) * (1024 if unit == "Gi" else 1)


def test_the_manifests_parse_and_make_sense() -> None:
    _check(_source_documents())


def test_the_configmap_is_a_valid_configuration() -> None:
    """The ConfigMap's values load as worldgate's settings (the keys come from the secrets)."""
    [config] = [d for d in _source_documents() if d["kind"] == "ConfigMap"]
    settings = load_settings(config["data"], keys=False)
    assert settings.auto_migrate is False and settings.evm is not None and settings.svm is not None
    assert settings.production.access_log == "on"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed: the YAML checks above ran")
def test_kubectl_kustomize_renders_what_the_checks_expect() -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=120, check=False
    )
    assert rendered.returncode == 0, rendered.stderr
    documents = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    _check(documents)
    [deployment] = [d for d in documents if d["kind"] == "Deployment"]
    assert deployment["metadata"]["labels"]["app.kubernetes.io/name"] == "worldgate"


def test_compose_runs_two_gateways_behind_the_proxy_they_trust() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    gateways = {name: s for name, s in services.items() if name.startswith("gateway")}
    assert len(gateways) == 2 and {"proxy", "postgres", "redis", "migrate"} <= services.keys()
    for service in services.values():
        assert set(service.get("depends_on", {})) <= services.keys()
    proxy_address = services["proxy"]["networks"]["internal"]["ipv4_address"]
    subnet = ipaddress.ip_network(compose["networks"]["internal"]["ipam"]["config"][0]["subnet"])
    assert ipaddress.ip_address(proxy_address) in subnet
    known = _variables()
    for gateway in gateways.values():
        env = gateway["environment"]
        assert set(env) <= known, sorted(set(env) - known)
        assert env["WORLDGATE_TRUSTED_PROXIES"] == proxy_address  # the proxy, and nothing else, names the client
        assert env["WORLDGATE_AUTO_MIGRATE"] == "false" and gateway["secrets"] == ["relayer_key"]
        grace = float(env["WORLDGATE_SHUTDOWN_GRACE_S"])
        assert int(gateway["stop_grace_period"].removesuffix("s")) >= grace + 60
        assert gateway["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "secrets" not in services["migrate"] and set(services["migrate"]["environment"]) == {"DATABASE_URL"}
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    upstreams = re.findall(r"server (gateway-\d):8402", nginx)
    assert sorted(upstreams) == sorted(gateways)
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in nginx and "X-Forwarded-Proto $scheme" in nginx
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in services["proxy"]["volumes"]


def test_the_image_runs_as_a_numeric_non_root_user_with_tracing_available() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    [user] = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert user.isdigit() and int(user) > 0  # runAsNonRoot can only check a number
    assert "--extra otel" in dockerfile and dockerfile.rstrip().endswith('CMD ["worldgate", "serve"]')
