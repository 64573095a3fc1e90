"""Kubernetes + KEDA manifests: they parse, set only known variables, refer to each other
(KEDA -> Deployment -> ConfigMap -> Secret), and match the Kubernetes schema (when
kubernetes-validate is installed)."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from core.config import load_settings
from scripts.config_table import known_variables
from tests.fixtures_deploy import (
    AZURE_QUEUE_TRIGGER_PARAMETERS,
    K8S_DIR,
    SHUTDOWN_MARGIN_S,
    k8s_documents,
    k8s_object,
    k8s_objects,
    only_container,
)


def test_k8s_files_parse_and_kustomization_lists_them_all() -> None:
    documents = k8s_documents()
    assert documents
    for path, doc in documents:
        assert {"apiVersion", "kind"} <= set(doc), f"{path.name}: a document without apiVersion/kind"
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"], path.name
    kustomization = k8s_objects("Kustomization")[0]
    files = {path.name for path in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_k8s_sets_only_known_variables_with_valid_values() -> None:
    config = k8s_object("ConfigMap", "cattlecounter-config")["data"]
    secret = k8s_object("Secret", "cattlecounter-secrets")["stringData"]
    names = set(config) | set(secret)
    for deployment in k8s_objects("Deployment"):
        names |= {item["name"] for item in only_container(deployment).get("env", [])}
    assert names - known_variables() == set(), f"unknown variables: {names - known_variables()}"
    settings = load_settings({**config, **secret}, env_file=None)
    assert settings.storage_backend.value == "azure"


def test_k8s_deployments_reference_existing_config_secret_and_service_account() -> None:
    service_accounts = {doc["metadata"]["name"] for doc in k8s_objects("ServiceAccount")}
    for deployment in k8s_objects("Deployment"):
        pod = deployment["spec"]["template"]
        assert pod["spec"]["serviceAccountName"] in service_accounts
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        for source in only_container(deployment)["envFrom"]:
            if "configMapRef" in source:
                k8s_object("ConfigMap", source["configMapRef"]["name"])
            else:
                k8s_object("Secret", source["secretRef"]["name"])


def _probe(container: dict[str, Any], kind: str) -> tuple[str, Any]:
    probe = container[kind]["httpGet"]
    return probe["path"], probe["port"]


def _port_names(container: dict[str, Any]) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container["ports"]}


def test_k8s_api_probes_and_service() -> None:
    deployment = k8s_object("Deployment", "cattlecounter-api")
    container = only_container(deployment)
    ports = _port_names(container)
    assert _probe(container, "readinessProbe") == ("/ready", "http")
    assert _probe(container, "livenessProbe") == ("/health", "http")
    assert ports["http"] == 8000
    service = k8s_object("Service", "cattlecounter-api")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert all(port["targetPort"] in ports for port in service["spec"]["ports"])


def test_k8s_worker_gpu_probes_metrics_port_and_mounts() -> None:
    deployment = k8s_object("Deployment", "cattlecounter-worker")
    container = only_container(deployment)
    config = k8s_object("ConfigMap", "cattlecounter-config")["data"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    metrics_port = _port_names(container)["metrics"]
    assert metrics_port == int(config["WORKER_METRICS_PORT"])
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(metrics_port)
    assert _probe(container, "livenessProbe") == ("/health", "metrics")
    assert _probe(container, "startupProbe") == ("/health", "metrics")
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert {"/models", config["WORK_DIR"]} <= mounts  # HF_HOME of Dockerfile.worker, and scratch
    assert "replicas" not in deployment["spec"], "KEDA owns the worker's replica count"


@pytest.mark.parametrize("name", ["cattlecounter-worker", "cattlecounter-stream-worker", "cattlecounter-api"])
def test_k8s_grace_period_outlasts_shutdown_grace(name: str) -> None:
    """Every process hands its work back within SHUTDOWN_GRACE_S plus a margin after SIGTERM,
    which Kubernetes sends once the preStop hook has run; SIGKILL must not come first."""
    deployment = k8s_object("Deployment", name)
    config = k8s_object("ConfigMap", "cattlecounter-config")["data"]
    overrides = {item["name"]: item.get("value") for item in only_container(deployment).get("env", [])}
    shutdown_grace = load_settings({**config, **overrides, "AZURE_STORAGE_CONNECTION_STRING": "x"},
                                   env_file=None).shutdown_grace_s
    grace_period = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace_period > _pre_stop_sleep_s(only_container(deployment)) + shutdown_grace + SHUTDOWN_MARGIN_S


def _pre_stop_sleep_s(container: dict[str, Any]) -> float:
    """How long a ``sleep N`` preStop hook holds the SIGTERM back (it counts against the grace period)."""
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    return float(command[1]) if command[:1] == ["sleep"] else 0.0


def _container_env(deployment: dict[str, Any]) -> dict[str, str]:
    config = k8s_object("ConfigMap", "cattlecounter-config")["data"]
    overrides = {item["name"]: item.get("value") for item in only_container(deployment).get("env", [])}
    return {**config, **overrides}


def test_keda_scales_each_worker_on_its_own_queue() -> None:
    """File workers on the job queue, one job per pod; stream workers on the stream queue,
    STREAM_CONCURRENCY streams per pod: each kind scales on its own queue."""
    scaled = {doc["metadata"]["name"]: doc["spec"] for doc in k8s_objects("ScaledObject")}
    assert set(scaled) == {"cattlecounter-worker", "cattlecounter-stream-worker"}
    for spec in scaled.values():
        target = spec["scaleTargetRef"]
        assert target.get("kind", "Deployment") == "Deployment"
        env = _container_env(k8s_object("Deployment", target["name"]))
        settings = load_settings({**env, "AZURE_STORAGE_CONNECTION_STRING": "x"}, env_file=None)
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "azure-queue"
        parameters = trigger["metadata"]
        assert set(parameters) <= AZURE_QUEUE_TRIGGER_PARAMETERS, "KEDA ignores misspelt parameters silently"
        assert parameters["queueLengthStrategy"] == "all"
        assert "activationQueueLength" in parameters
        assert spec["minReplicaCount"] == 0 and spec["maxReplicaCount"] >= 1
        if settings.stream_concurrency:  # a stream worker: no file jobs, scaled on the stream queue
            assert settings.worker_concurrency == 0
            assert parameters["queueName"] == settings.stream_queue
            assert parameters["queueLength"] == str(settings.stream_concurrency)
        else:
            assert parameters["queueName"] == settings.queue_name
            assert parameters["queueLength"] == "1" and settings.worker_concurrency == 1


def test_keda_authentication_reads_an_existing_secret_key() -> None:
    for scaled in k8s_objects("ScaledObject"):
        (trigger,) = scaled["spec"]["triggers"]
        auth = k8s_object("TriggerAuthentication", trigger["authenticationRef"]["name"])
        (reference,) = auth["spec"]["secretTargetRef"]
        assert reference["parameter"] == "connection"
        secret = k8s_object("Secret", reference["name"])
        assert reference["key"] in secret["stringData"]


def test_kustomization_images_match_the_deployments() -> None:
    images = {image["name"] for image in k8s_objects("Kustomization")[0]["images"]}
    used = {only_container(deployment)["image"].split(":")[0] for deployment in k8s_objects("Deployment")}
    assert used == images


def _core_documents() -> Iterator[Any]:
    """Built-in kinds (v1, apps/v1, networking.k8s.io/v1): KEDA's CRDs and the Kustomization
    have no schema there."""
    for path, doc in k8s_documents():
        group = doc["apiVersion"].rpartition("/")[0]
        if group in ("", "apps", "networking.k8s.io"):
            yield pytest.param(doc, id=f"{path.name}:{doc['kind']}")


@pytest.mark.parametrize("document", list(_core_documents()))
def test_k8s_core_objects_match_the_kubernetes_schema(document: dict[str, Any]) -> None:
    validator = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    try:  # strict: unknown fields (typos) fail, as kubectl's server-side validation would
        validator.validate(document, "1.30.0", strict=True)
    except validator.ValidationError as exc:
        pytest.fail(f"{document['kind']} {document['metadata']['name']}: {exc.message}")


# --- the stream workers' egress NetworkPolicy ------------------------------------------------


def _egress_allows(policy: dict[str, Any], address: str) -> bool:
    """Whether an ipBlock rule of ``policy`` lets the pods reach ``address`` (any port)."""
    target = ip_address(address)
    for rule in policy["spec"]["egress"]:
        for peer in rule.get("to", []):
            block = peer.get("ipBlock")
            if block is None or target.version != ip_network(block["cidr"]).version:
                continue
            if target in ip_network(block["cidr"]) and not any(target in ip_network(c) for c in block.get("except", [])):
                return True
    return False


def test_the_stream_worker_egress_policy_selects_the_stream_workers_only() -> None:
    policy = k8s_object("NetworkPolicy", "cattlecounter-stream-worker-egress")
    pods = k8s_object("Deployment", "cattlecounter-stream-worker")["spec"]["template"]["metadata"]["labels"]
    file_pods = k8s_object("Deployment", "cattlecounter-worker")["spec"]["template"]["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pods.items() and not selector.items() <= file_pods.items()
    assert policy["spec"]["policyTypes"] == ["Egress"]


@pytest.mark.parametrize(("address", "allowed"), [
    ("169.254.169.254", False),  # the cloud's instance metadata (tokens)
    ("10.0.0.1", False), ("10.244.1.7", False), ("172.16.0.10", False), ("192.168.1.20", False),  # cluster CIDRs
    ("100.64.0.1", False), ("127.0.0.1", False), ("fe80::1", False), ("fd00::1", False),
    ("20.60.1.4", True), ("8.8.8.8", True), ("2001:4860::8888", True),  # storage, public cameras
    ("192.0.2.10", True),  # the STREAM_ALLOWED_NETWORKS placeholder
])
def test_the_stream_worker_egress_policy_refuses_metadata_and_cluster_networks(address: str, allowed: bool) -> None:
    policy = k8s_object("NetworkPolicy", "cattlecounter-stream-worker-egress")
    assert _egress_allows(policy, address) is allowed


def test_the_stream_worker_egress_policy_lets_dns_through_to_the_cluster_resolver_only() -> None:
    policy = k8s_object("NetworkPolicy", "cattlecounter-stream-worker-egress")
    dns = [rule for rule in policy["spec"]["egress"] if any(port["port"] == 53 for port in rule.get("ports", []))]
    assert len(dns) == 1 and {port["protocol"] for port in dns[0]["ports"]} == {"UDP", "TCP"}
    assert dns[0]["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}]
