"""The deployment files parse and agree with the code: settings names, commands, probes, GPUs."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pacs_node.config import ENV_PREFIX, SETTING_NAMES
from worker.main import ML_COMMANDS

yaml = pytest.importorskip("yaml")

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
NODE_COMMANDS = {"serve", "db", *ML_COMMANDS}
SPOOL = "/var/lib/pacs-node/spool"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _assert_settings(names: object, where: str) -> None:
    unknown = {
        n
        for n in names  # type: ignore[attr-defined]
        if n.startswith(ENV_PREFIX) and n[len(ENV_PREFIX) :].lower() not in SETTING_NAMES
    }
    assert not unknown, f"{where}: unknown settings {unknown}"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (document,) = _documents(DEPLOY / "compose.yaml")
    return document


@pytest.fixture(scope="module")
def kube() -> dict[tuple[str, str], dict[str, Any]]:
    """Every resource listed by the kustomization, by (kind, name)."""
    (kustomization,) = _documents(KUBERNETES / "kustomization.yaml")
    resources = {}
    for file in kustomization["resources"]:
        for document in _documents(KUBERNETES / file):
            resources[(document["kind"], document["metadata"]["name"])] = document
    return resources


def test_compose_services_and_start_up_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "edge", "worker-gpu", "worker-io"}
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("edge", "worker-gpu", "worker-io"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
        assert services[name]["command"][0] in NODE_COMMANDS
        assert f"spool:{SPOOL}" in services[name]["volumes"]
        environment = services[name]["environment"]
        _assert_settings(environment, name)
        assert environment["PACS_NODE_BROKER_URL"].startswith("redis://")
        assert environment["PACS_NODE_DATABASE_URL"].startswith("postgresql+psycopg2://")
        assert environment["PACS_NODE_LOG_FORMAT"] == "json"
    assert {p.split(":")[-1] for p in services["edge"]["ports"]} == {"11112", "8080"}
    assert set(compose["volumes"]) >= {"spool", "postgres", "redis"}


def test_compose_gpu_worker_reserves_an_nvidia_gpu(compose: dict[str, Any]) -> None:
    gpu = compose["services"]["worker-gpu"]
    assert gpu["command"][:3] == ["worker", "--queues", "gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert compose["services"]["worker-io"]["command"][:3] == ["worker", "--queues", "io"]


def test_compose_env_example_names_every_required_variable(compose: dict[str, Any]) -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    example = {
        line.split("=", 1)[0]
        for line in (DEPLOY / "compose.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert required and required <= example


def _pod(resource: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = resource["spec"]["template"]["spec"]
    return spec


def test_kubernetes_deployments_select_their_pods(kube: dict[tuple[str, str], Any]) -> None:
    deployments = {name: r for (kind, name), r in kube.items() if kind == "Deployment"}
    assert set(deployments) == {"pacs-node-edge", "pacs-node-worker-gpu", "pacs-node-worker-io"}
    for resource in deployments.values():
        labels = resource["spec"]["template"]["metadata"]["labels"]
        assert resource["spec"]["selector"]["matchLabels"].items() <= labels.items()
        for container in [*_pod(resource).get("initContainers", []), *_pod(resource)["containers"]]:
            assert container["args"][0] in NODE_COMMANDS
            _assert_settings([e["name"] for e in container.get("env", [])], container["name"])
    edge_labels = deployments["pacs-node-edge"]["spec"]["template"]["metadata"]["labels"]
    services = {name: r for (kind, name), r in kube.items() if kind == "Service"}
    ports = set()
    for service in services.values():
        assert service["spec"]["selector"].items() <= edge_labels.items()
        ports |= {p["port"] for p in service["spec"]["ports"]}
    assert ports == {11112, 8080}


def test_kubernetes_edge_upgrades_first_and_has_probes(kube: dict[tuple[str, str], Any]) -> None:
    pod = _pod(kube[("Deployment", "pacs-node-edge")])
    (init,) = pod["initContainers"]
    assert init["args"] == ["db", "upgrade"]
    (edge,) = pod["containers"]
    assert edge["args"] == ["serve"]
    assert edge["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert edge["readinessProbe"]["httpGet"]["path"] == "/readyz"
    named = {p["name"]: p["containerPort"] for p in edge["ports"]}
    assert named == {"dicom": 11112, "http": 8080}
    assert edge["livenessProbe"]["httpGet"]["port"] in named


def test_kubernetes_gpu_worker_requests_a_gpu(kube: dict[tuple[str, str], Any]) -> None:
    (worker,) = _pod(kube[("Deployment", "pacs-node-worker-gpu")])["containers"]
    assert worker["args"][:3] == ["worker", "--queues", "gpu"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_kubernetes_references_resolve(kube: dict[tuple[str, str], Any]) -> None:
    secrets = {
        (d["metadata"]["name"], key)
        for d in _documents(KUBERNETES / "secrets.example.yaml")
        for key in d["stringData"]
    }
    assert ("pacs-node-api-tokens", "metrics-token") in secrets
    config_maps = {name for kind, name in kube if kind == "ConfigMap"}
    claims = {name for kind, name in kube if kind == "PersistentVolumeClaim"}
    for (kind, _), resource in kube.items():
        if kind != "Deployment":
            continue
        pod = _pod(resource)
        assert {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]} <= claims
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            assert {s["configMapRef"]["name"] for s in container["envFrom"]} <= config_maps
            for env in container.get("env", []):
                if "valueFrom" in env:
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert (ref["name"], ref["key"]) in secrets
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert container["name"] == "db-upgrade" or SPOOL in mounts
    (config_map,) = (r for (kind, _), r in kube.items() if kind == "ConfigMap")
    _assert_settings(config_map["data"], "configmap")
    assert config_map["data"]["PACS_NODE_SPOOL_DIR"] == SPOOL


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES)], capture_output=True, text=True, timeout=60
    )
    assert built.returncode == 0, built.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(built.stdout) if d]
    assert kinds.count("Deployment") == 3


@pytest.mark.parametrize("unit", ["pacs-node.service", "pacs-node-worker@.service"])
def test_systemd_units(unit: str) -> None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / "systemd" / unit).read_text())
    assert set(parser.sections()) == {"Unit", "Service", "Install"}
    service = parser["Service"]
    commands = [
        service["ExecStart"],
        *([service["ExecStartPre"]] if "ExecStartPre" in service else []),
    ]
    for command in commands:
        words = command.split()
        assert words[0].endswith("/.venv/bin/pacs-node")
        assert next(w for w in words[1:] if not w.startswith("-") and "/" not in w) in NODE_COMMANDS
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"


def test_edge_unit_upgrades_the_database_before_serving() -> None:
    text = (DEPLOY / "systemd" / "pacs-node.service").read_text()
    assert re.search(r"^ExecStartPre=.* db upgrade$", text, flags=re.MULTILINE)
    assert re.search(r"^ExecStart=.* serve$", text, flags=re.MULTILINE)


def test_containerfile_installs_with_scripts_setup() -> None:
    lines = [
        line.strip()
        for line in (DEPLOY / "Containerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    runs = [line for line in lines if line.startswith("RUN ")]
    assert "RUN scripts/setup" in runs
    assert lines.index("COPY . .") < lines.index("RUN scripts/setup")
    assert 'ENTRYPOINT ["pacs-node"]' in lines and 'CMD ["serve"]' in lines
    assert "PACS_NODE_LOG_FORMAT=json" in (DEPLOY / "Containerfile").read_text()
    ignored = (DEPLOY / "Containerfile.dockerignore").read_text().split()
    assert {".venv", ".git", "var"} <= set(ignored)
